package cli

import (
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/update"
)

// rollback is `keel rollback`: a person or an agent returns to the
// previous good slot on purpose (Ubuntu Core's `snap revert`). It makes the
// other good slot active in one commit (bootenv.SetActive); the next boot
// takes it with its data area as it was when it last ran (package
// initramfs/dataarea: only a trial's first boot replaces an area).
func (c *command) rollback(args []string) error {
	fs, err := c.flags("rollback", args, func(*flag.FlagSet) {})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("usage: keel rollback (it takes no arguments; `keel set-active SLOT` names a slot)")
	}
	var from, to string
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) {
		from = r.Active
		if to, err = bootenv.RollbackTarget(r); err != nil {
			return bootenv.Record{}, err
		}
		return c.activate(r, to)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "rolled back from slot %s to slot %s (generation %d): the next boot takes slot %s with its data area as it was; reboot to boot it\n",
		from, to, r.Generation, to)
	return nil
}

// activate is bootenv.SetActive(r, slot), refused on a keel-booted device
// when the slot's verified security version is below the TPM's
// anti-rollback floor (checkFloor): `keel rollback` and `keel set-active`.
func (c *command) activate(r bootenv.Record, slot string) (bootenv.Record, error) {
	n, err := bootenv.SetActive(r, slot)
	if err != nil {
		return bootenv.Record{}, err
	}
	if err := c.checkFloor(slot); err != nil {
		return bootenv.Record{}, err
	}
	return n, nil
}

// checkFloor refuses (bootenv.ErrRefused) a slot whose signed security
// version is below the anti-rollback floor: keel-init would refuse to boot
// it, mark it bad and fall back (the rule install's policy applies to a
// bundle, and keel-init to every slot: a version below the floor that
// tpm.ReadCounter returns). The version is the one in the slot's manifest,
// verified with the keys keel-init handed over, as keel-init reads it; the
// record's copy is unauthenticated. It checks only on a system keel booted
// with a TPM: offline (-c, --efivars, --image) the TPM here is not that
// device's, and with keel.tpm=unmeasured there is no counter.
func (c *command) checkFloor(slot string) error {
	if c.g != (globals{}) {
		return nil
	}
	boot, err := c.bootLine()
	if err != nil || boot.slot == "" || boot.unmeasured {
		return err
	}
	floor, err := c.antiRollbackFloor(fmt.Sprintf("slot %s's security version", slot))
	if err != nil || floor <= 0 {
		return err // no TPM, or a floor nothing is below
	}
	trusted, err := c.trustedKeys("")
	if err != nil {
		return err
	}
	name := layout.SlotPartition(slot)
	fh, size, err := c.deps.OpenPartition(name, []string{layout.SlotPartition(boot.slot), name})
	if err != nil {
		return fmt.Errorf("checking slot %s against the anti-rollback counter: partition %s: %w", slot, name, err)
	}
	defer fh.Close()
	m, err := update.SlotManifest(fh, size, trusted, manifest.AnyBoard)
	if err != nil {
		return fmt.Errorf("%w: slot %s does not verify with the trusted keys, so keel-init would not boot it: %w", bootenv.ErrRefused, slot, err)
	}
	if m.SecurityVersion < uint64(floor) {
		return fmt.Errorf("%w: slot %s holds version %s with security version %d, below this device's anti-rollback counter %d: keel-init would refuse to boot it and mark it bad; install an update with security version %d or more instead",
			bootenv.ErrRefused, slot, m.Version, m.SecurityVersion, floor, floor)
	}
	return nil
}

// antiRollbackFloor reads the TPM's anti-rollback floor (tpm.ReadCounter:
// the lowest security version keel-init boots) for a check of what
// against it: -1, with a warning, when the device has no TPM (keel-init
// checks at boot); 0 when the counter was never defined (nothing was
// marked good yet).
func (c *command) antiRollbackFloor(what string) (int64, error) {
	tp, err := c.deps.OpenTPM()
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		fmt.Fprintf(c.stderr, "keel: warning: no TPM (%v): %s is not checked against the anti-rollback counter here (keel-init checks it at boot)\n", err, what)
		return -1, nil
	case err != nil:
		return 0, fmt.Errorf("opening the TPM to read the anti-rollback counter: %w", err)
	}
	defer tp.Close()
	v, err := tpm.ReadCounter(tp, tpm.CounterIndex)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return 0, nil // not defined yet: nothing was marked good
	case err != nil:
		return 0, fmt.Errorf("reading the anti-rollback counter: %w", err)
	}
	return int64(v), nil
}
