package sysinit

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKexecLoaded: boot parameters Debian's 6.1 kernel showed in QEMU
// (testdata, from BootParamsPath): started by OVMF through the kernel's
// EFI stub (type_of_loader 0x21, and no boot flag) and by kexec_file_load
// from that kernel (0xD0).
func TestKexecLoaded(t *testing.T) {
	for name, want := range map[string]bool{"boot_params-ovmf": false, "boot_params-kexec": true} {
		got, err := StartedByKexec(filepath.Join("testdata", name))
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", name, got, err, want)
		}
	}
	data, err := os.ReadFile(filepath.Join("testdata", "boot_params-kexec"))
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string][]byte{
		"empty": nil,
		"short": data[:offTypeOfLoader],
	} {
		if _, err := KexecLoaded(d); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := StartedByKexec(filepath.Join(t.TempDir(), "none")); !NoBootParams(err) {
		t.Errorf("no boot parameters (arm64): %v", err)
	}
}
