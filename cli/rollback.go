package cli

import (
	"flag"
	"fmt"
	"slices"

	"github.com/keelboot/keel/bootenv"
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
		if to, err = rollbackTarget(r); err != nil {
			return bootenv.Record{}, err
		}
		return bootenv.SetActive(r, to)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "rolled back from slot %s to slot %s (generation %d): the next boot takes slot %s with its data area as it was; reboot to boot it\n",
		from, to, r.Generation, to)
	return nil
}

// rollbackTarget is the slot a rollback makes active: the one good slot
// besides the active one. It refuses (bootenv.ErrRefused) during a trial,
// with no active slot, and with no or several candidates, saying what to
// do instead.
func rollbackTarget(r bootenv.Record) (string, error) {
	if r.Trial != "" {
		return "", fmt.Errorf("%w: slot %s is on trial: `keel mark-bad %s` ends the trial, and the next boot falls back to slot %s", bootenv.ErrRefused, r.Trial, r.Trial, r.Active)
	}
	if r.Active == "" {
		return "", fmt.Errorf("%w: no slot is active, so there is none to roll back from; `keel status` shows the slots", bootenv.ErrRefused)
	}
	var good []string
	for _, s := range r.Slots {
		if s.Name != r.Active && s.State == bootenv.StateGood {
			good = append(good, s.Name)
		}
	}
	switch len(good) {
	case 0:
		return "", fmt.Errorf("%w: no good slot besides the active slot %s to roll back to; `keel status` shows why", bootenv.ErrRefused, r.Active)
	case 1:
		return good[0], nil
	}
	slices.Sort(good)
	return "", fmt.Errorf("%w: several good slots besides the active slot %s (%v): `keel set-active SLOT` names one", bootenv.ErrRefused, r.Active, good)
}
