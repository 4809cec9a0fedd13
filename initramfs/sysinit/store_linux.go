//go:build linux

package sysinit

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/bootenv/ubootenv"
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

// OpenEFIVarsStore mounts efivarfs and opens the record's UEFI variable
// (package bootenv/efivars).
func OpenEFIVarsStore() (bootenv.Store, error) {
	if err := MountEFIVars(); err != nil {
		return nil, err
	}
	return efivars.Open(uefi.EfivarfsDir)
}

// OpenBootstateStore opens the record in the redundant U-Boot env on the
// partition bootstate, the block device dev (ubootenv.BootstateConfig).
func OpenBootstateStore(dev string) (*ubootenv.Store, error) {
	size, err := blockdev.Size(dev)
	if err != nil {
		return nil, err
	}
	cfg, err := ubootenv.BootstateConfig(dev, 0, size)
	if err != nil {
		return nil, err
	}
	st, err := ubootenv.Open(cfg)
	if err != nil {
		return nil, err
	}
	return ubootenv.NewStore(st, dev), nil
}
