//go:build linux

package efivars

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// ClearImmutable clears the immutable inode flag efivarfs sets on
// variables (FS_IOC_SETFLAGS) of the file path, if it exists and has it:
// a variable must lose it before it can be written.
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
