package bootenv

import (
	"fmt"
	"slices"
	"strings"
)

// The two slot choices a command makes from the record alone: where an
// update goes (InstallTarget) and where a rollback goes (RollbackTarget).
// Like the transitions they do no I/O; TestModel checks them on every
// reachable state.

// InstallTarget is the slot an update goes to: the first of r's slots
// that is neither active, on trial, nor running (the slot the running
// system booted from, "" offline). It refuses (ErrRefused) when every
// slot is one of those. Whether the install may begin there is
// BeginInstall's to say.
func InstallTarget(r Record, running string) (string, error) {
	for _, s := range r.Slots {
		if s.Name != r.Active && s.Name != r.Trial && s.Name != running {
			return s.Name, nil
		}
	}
	return "", fmt.Errorf("%w: every slot is active, on trial or running (%s): no slot to install into", ErrRefused, strings.Join(r.SlotNames(), ", "))
}

// RollbackTarget is the slot a rollback (`keel rollback`) makes active:
// the one good slot besides the active one. It refuses (ErrRefused)
// during a trial, with no active slot, and with no or several candidates,
// saying what to do instead. SetActive accepts the slot it returns.
func RollbackTarget(r Record) (string, error) {
	if r.Trial != "" {
		return "", fmt.Errorf("%w: slot %s is on trial: `keel mark-bad %s` ends the trial, and the next boot falls back to slot %s", ErrRefused, r.Trial, r.Trial, r.Active)
	}
	if r.Active == "" {
		return "", fmt.Errorf("%w: no slot is active, so there is none to roll back from; `keel status` shows the slots", ErrRefused)
	}
	var good []string
	for _, s := range r.Slots {
		if s.Name != r.Active && s.State == StateGood {
			good = append(good, s.Name)
		}
	}
	switch len(good) {
	case 0:
		return "", fmt.Errorf("%w: no good slot besides the active slot %s to roll back to; `keel status` shows why", ErrRefused, r.Active)
	case 1:
		return good[0], nil
	}
	slices.Sort(good)
	return "", fmt.Errorf("%w: several good slots besides the active slot %s (%v): `keel set-active SLOT` names one", ErrRefused, r.Active, good)
}
