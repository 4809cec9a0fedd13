//go:build linux

package stage1

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/hw/blockdev"
	"github.com/keelboot/keel/initramfs/sysinit"
)

const (
	efivarsDir = uefi.EfivarfsDir
	// fwEnvConfig is the fw_env.config keel-init writes for the OS's
	// tools on U-Boot boards.
	fwEnvConfig = "/run/keel-fw_env.config"
)

// openStore opens the board's boot state store (sysinit.OpenStore) and
// returns it with the keel.store= value that names it for stage 2 and the
// OS; on a U-Boot board it writes the matching fw_env.config for the OS's
// tools.
func openStore(b boards.Board, disks *bootDisks) (bootenv.Store, cmdline.Store, error) {
	st, l, err := sysinit.OpenStore(b.Store, func() (*blockdev.Disk, error) { return disks.get(nil) })
	switch {
	case err != nil:
		return nil, cmdline.Store{}, err
	case l.EFIVars != "":
		return st, cmdline.Store{Kind: cmdline.StoreEFIVars}, nil
	}
	_ = os.WriteFile(fwEnvConfig, ubootenv.BootstateFWEnvConfig(l.Bootstate), 0o644)
	return st, cmdline.Store{Kind: cmdline.StoreUBoot, Path: fwEnvConfig}, nil
}

// bootDisks finds the disk keel booted from, once: stage 1 looks up every
// partition it reads or writes (bootstate, slot-<x>, root-<x>, recovery,
// data) on it and never on another disk, so that a USB stick with a
// partition named like keel's is never reinstalled or wiped.
type bootDisks struct {
	board boards.Board
	mu    sync.Mutex
	disk  *blockdev.Disk
	// pending holds console lines from finding the disk until a caller
	// with a logger prints them (openStore has none).
	pending []string
}

// get returns the boot disk (package hw/blockdev): the disk holding the
// partition the firmware loaded keel from, when a UEFI firmware says
// (LoaderDevicePartUUID, set by systemd's stub in keel's UKI), else the
// disk with every partition of the board's layout but data
// (boards.Board.DiskNames: a missing data partition must not stop the
// boot). Other disks with any of those names are named on the console. It waits up to 10 s for the disk
// on the first call. logf may be nil: the lines wait for the next caller.
func (bd *bootDisks) get(logf Logf) (*blockdev.Disk, error) {
	bd.mu.Lock()
	defer bd.mu.Unlock()
	say := func(format string, args ...any) {
		bd.pending = append(bd.pending, fmt.Sprintf(format, args...))
	}
	defer func() {
		if logf != nil {
			for _, l := range bd.pending {
				logf("%s", l)
			}
			bd.pending = nil
		}
	}()
	if bd.disk != nil {
		return bd.disk, nil
	}
	names := bd.board.DiskNames()
	opts := blockdev.Options{Warnf: func(format string, args ...any) { say("warning: "+format, args...) }}
	if bd.board.Firmware == boards.FirmwareUEFI {
		opts.BootPartUUID = firmwareBootPartition(say)
	}
	d, err := blockdev.OpenDisk(names, 10*time.Second, opts)
	if err != nil {
		return nil, err
	}
	say("boot disk %s", d)
	bd.disk = d
	return d, nil
}

// firmwareBootPartition is the unique GUID of the partition the firmware
// loaded keel from, "" when it does not say.
func firmwareBootPartition(say Logf) string {
	err := sysinit.MountEFIVars()
	var g string
	if err == nil {
		g, err = blockdev.LoaderDevicePartUUID(efivarsDir)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		say("the firmware does not say which partition it loaded keel from (no LoaderDevicePartUUID): the boot disk is the one with all of the board's partitions (data aside)")
	case err != nil:
		say("warning: which partition the firmware loaded keel from: %v", err)
	default:
		say("the firmware loaded keel from partition %s", g)
	}
	return g
}
