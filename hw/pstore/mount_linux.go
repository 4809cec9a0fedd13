//go:build linux

package pstore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Mount mounts the pstore file system on dir (Dir); one already mounted
// there is fine.
func Mount(dir string) error {
	if err := unix.Mount("pstore", dir, "pstore", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("pstore: mount on %s (a kernel with pstore?): %w", dir, err)
	}
	return nil
}
