//go:build linux

package uefi

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestClearImmutable: a file with FS_IMMUTABLE_FL (as efivarfs sets it)
// cannot be written, even by root, until ClearImmutable clears the flag;
// other flags stay; a missing file is no error. Setting the flag needs
// root (CAP_LINUX_IMMUTABLE) and a file system with inode flags (the
// temporary directory's).
func TestClearImmutable(t *testing.T) {
	if os.Geteuid() != 0 && testing.Short() {
		t.Skip("needs root to set the immutable flag (run without -short as root)")
	}
	p := filepath.Join(t.TempDir(), "KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390")
	if err := os.WriteFile(p, []byte{7, 0, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsImmutableFL))
	}
	f.Close()
	if err != nil {
		t.Fatalf("setting FS_IMMUTABLE_FL on %s (root, and a file system with inode flags, such as ext4): %v", p, err)
	}
	if err := os.WriteFile(p, []byte{7, 0, 0, 0, 1}, 0o644); err == nil {
		t.Fatal("an immutable file was written")
	}
	if err := ClearImmutable(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte{7, 0, 0, 0, 1}, 0o644); err != nil {
		t.Fatalf("after ClearImmutable: %v", err)
	}
	f, err = os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS); err != nil || got != flags {
		t.Errorf("flags %#x after ClearImmutable, %v; want %#x", got, err, flags)
	}
	if err := ClearImmutable(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("missing file: %v", err)
	}
}
