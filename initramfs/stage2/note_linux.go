//go:build linux

package stage2

import (
	"fmt"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/hw/blockdev"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// noteFailure records, before keel-init restarts the machine after stage
// 2 failed, that keel-init ended this boot (bootenv.NoteKeelInit): the
// next keel-init counts it as a reboot, which uses a trial's try, as a
// failed stage 2 always has. Without the note the boot's end would look
// like a power loss (docs/DESIGN.md section 3.1), and a slot that cannot
// even reach its init would be retried K times per try. It is best
// effort: when the store cannot be opened (the failure may be the disk
// itself) the end stays unexplained.
func noteFailure(line string, logf Logf) {
	h, err := cmdline.ParseHandoff(line)
	if err != nil {
		return // Run said why
	}
	store, err := openStore(h.Store, logf)
	if err == nil {
		err = note(store, h.Slot)
	}
	if err != nil {
		logf("warning: noting the failed boot in the record: %v: the next boot cannot tell it from a power loss", err)
		return
	}
	logf("noted in the record: keel-init ends this boot of slot %s (the next boot counts it as a reboot)", h.Slot)
}

// note commits the note for slot's boot.
func note(store bootenv.Store, slot string) error {
	r, err := store.Load()
	if err != nil {
		return err
	}
	n, err := bootenv.NoteShutdown(r, slot, bootenv.NoteKeelInit)
	if err != nil {
		return err
	}
	return store.Commit(n)
}

// openStore opens the store keel.store= names (sysinit.OpenStore): the
// UEFI variable, or the U-Boot env on the boot disk's bootstate partition.
func openStore(s cmdline.Store, logf Logf) (bootenv.Store, error) {
	switch s.Kind {
	case cmdline.StoreEFIVars:
		return openKind(boards.StoreEFIVars, nil)
	case cmdline.StoreUBoot:
		b, err := sysinit.ReadBoard()
		if err != nil {
			return nil, err
		}
		if b.Store != boards.StoreUBootEnv {
			return nil, fmt.Errorf("keel.store=%s, but board %s keeps its state in %s", s, b.Name, b.Store)
		}
		return openKind(b.Store, func() (*blockdev.Disk, error) { return bootDisk(b, logf) })
	}
	return nil, fmt.Errorf("keel.store= names no store")
}

// openKind is sysinit.OpenStore's store, nil on an error.
func openKind(kind boards.StoreKind, disk func() (*blockdev.Disk, error)) (bootenv.Store, error) {
	st, _, err := sysinit.OpenStore(kind, disk)
	if err != nil {
		return nil, err
	}
	return st, nil
}
