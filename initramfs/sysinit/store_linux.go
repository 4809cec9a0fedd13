//go:build linux

package sysinit

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv/bootstore"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/hw/blockdev"
)

// MountEFIVars mounts efivarfs read-write on uefi.EfivarfsDir (already
// mounted is fine).
func MountEFIVars() error {
	if err := unix.Mount("efivarfs", uefi.EfivarfsDir, "efivarfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount efivarfs on %s (UEFI firmware? efivarfs module loaded?): %w", uefi.EfivarfsDir, err)
	}
	return nil
}

// OpenStore opens the boot record's store of the kind a board keeps
// (boards.Board.Store) through package bootenv/bootstore, as stage 1 and
// stage 2 both do: keel's UEFI variable, efivarfs mounted first; or the
// redundant U-Boot env on the partition bootstate of the boot disk, which
// disk returns (called only then). It returns the location it opened.
func OpenStore(kind boards.StoreKind, disk func() (*blockdev.Disk, error)) (*bootstore.Store, bootstore.Location, error) {
	var l bootstore.Location
	switch kind {
	case boards.StoreEFIVars:
		if err := MountEFIVars(); err != nil {
			return nil, l, err
		}
		l.EFIVars = uefi.EfivarfsDir
	case boards.StoreUBootEnv:
		d, err := disk()
		if err != nil {
			return nil, l, err
		}
		if l.Bootstate, err = d.Partition(layout.Bootstate); err != nil {
			return nil, l, err
		}
	default:
		return nil, l, fmt.Errorf("unknown store %q: want %q or %q", kind, boards.StoreEFIVars, boards.StoreUBootEnv)
	}
	s, err := bootstore.Open(l)
	if err != nil {
		return nil, l, err
	}
	return s, l, nil
}
