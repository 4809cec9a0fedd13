package watchdog

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBootStatusFile reads the attribute as the kernel lays it out: the
// device node's name under the class folder.
func TestBootStatusFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "watchdog0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "watchdog0", "bootstatus"), []byte("32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := BootStatus(dir, Device); err != nil || v&CardReset == 0 {
		t.Errorf("BootStatus = %#x, %v", v, err)
	}
	if _, err := BootStatus(dir, "/dev/watchdog1"); err == nil {
		t.Errorf("BootStatus of a watchdog without the attribute: no error")
	}
}
