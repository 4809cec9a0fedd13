package cli

import (
	"flag"
	"fmt"

	"github.com/keelboot/keel/bootenv"
)

// bootOK runs `keel boot-ok [--slot S]`: the OS confirms that the boot of
// the good slot it runs came up (a lighter mark-good: no trial is
// committed, the watchdog and the TPM are left alone). It ends the count of
// unconfirmed boots keel-init keeps for that slot (bootenv.Confirm); after
// the board's limit of unconfirmed boots in a row keel-init falls back to
// the other good slot. A slot on trial is committed with mark-good.
func (c *command) bootOK(args []string) error {
	var slot string
	fs, err := c.flags("boot-ok", args, func(fs *flag.FlagSet) {
		fs.StringVar(&slot, "slot", "", "the slot whose boot to confirm (default: the booted slot; on a system keel booted, only that slot)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("usage: keel boot-ok [--slot SLOT]")
	}
	chosen, _, err := c.ownSlot(slot, "confirm the boot of")
	if err != nil {
		return err
	}
	chosen, r, err := c.updateSlot(chosen, "no active slot", bootenv.Confirm)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "boot of slot %s confirmed (generation %d)\n", chosen, r.Generation)
	return nil
}
