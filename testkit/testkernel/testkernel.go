// Package testkernel finds the Debian kernel that `make kernel`
// (scripts/fetch-kernel.sh) fetched, for tests that need a real kernel or
// its modules. It is test support: no product code imports it.
package testkernel

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the folder with vmlinuz and modules for the Debian
// architecture arch: $KEEL_KERNEL_DIR if set, else build/kernel/<arch>
// under the module root. A missing kernel fails the test (make test fetches
// it; run make kernel), except with -short, where the test is skipped:
// the inner loop (make unit) runs without downloads.
func Dir(t testing.TB, arch string) string {
	t.Helper()
	dir := os.Getenv("KEEL_KERNEL_DIR")
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "build", "kernel", arch)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz")); err != nil {
		msg := fmt.Sprintf("no Debian %s kernel in %s (%v): run `make kernel` (make test does), or set KEEL_KERNEL_DIR", arch, dir, err)
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return dir
}

// ModuleRoot is the folder with go.mod at or above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testkernel: no go.mod above the working directory")
		}
		dir = parent
	}
}
