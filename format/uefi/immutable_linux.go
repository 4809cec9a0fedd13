//go:build linux

package uefi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL, include/uapi/linux/fs.h.
const fsImmutableFL = 0x10

// ClearImmutable clears, with FS_IOC_SETFLAGS, the immutable inode flag
// of the efivarfs file path if it exists and has it: efivarfs sets the
// flag on every variable but the few it knows to be safe to remove
// (Boot####, BootOrder and others; fs/efivarfs/inode.c), and a variable
// must lose it before it can be written.
func ClearImmutable(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("reading inode flags: %w", err)
	}
	if flags&fsImmutableFL == 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL)); err != nil {
		return fmt.Errorf("clearing the immutable flag: %w", err)
	}
	return nil
}
