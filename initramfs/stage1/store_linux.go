//go:build linux

package stage1

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/hw/blockdev"
)

const (
	efivarsDir = "/sys/firmware/efi/efivars"
	// fwEnvConfig is the fw_env.config keel-init writes for the OS's
	// tools on U-Boot boards.
	fwEnvConfig = "/run/keel-fw_env.config"
)

// openStore opens the board's boot state store and returns it with the
// keel.store= value that names it for stage 2 and the OS.
func openStore(b boards.Board) (bootenv.Store, string, error) {
	switch b.Store {
	case boards.StoreEFIVars:
		if err := unix.Mount("efivarfs", efivarsDir, "efivarfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return nil, "", fmt.Errorf("mount efivarfs on %s (UEFI firmware? efivarfs module loaded?): %w", efivarsDir, err)
		}
		s, err := efivars.Open(efivarsDir)
		return s, "efivars", err
	case boards.StoreUBootEnv:
		dev, err := blockdev.FindPartition(layout.Bootstate, 10*time.Second)
		if err != nil {
			return nil, "", err
		}
		size, err := blockdev.Size(dev)
		if err != nil {
			return nil, "", err
		}
		cfg, err := ubootenv.BootstateConfig(dev, 0, size)
		if err != nil {
			return nil, "", err
		}
		st, err := ubootenv.Open(cfg)
		if err != nil {
			return nil, "", err
		}
		// Write the matching fw_env.config for the OS's tools.
		conf := fmt.Sprintf("%s 0x0 %#x\n%s %#x %#x\n", dev, ubootenv.BootstateEnvSize, dev, ubootenv.BootstateEnvSize, ubootenv.BootstateEnvSize)
		_ = os.WriteFile(fwEnvConfig, []byte(conf), 0o644)
		return ubootenv.NewStore(st, dev), "uboot:" + fwEnvConfig, nil
	}
	return nil, "", fmt.Errorf("board %s: unknown store %q", b.Name, b.Store)
}
