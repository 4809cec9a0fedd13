package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/layout"
)

// How the last boot ended (docs/DESIGN.md section 3.1): keel
// note-shutdown, which keel's systemd-shutdown hook runs, notes how the
// running boot ends; keel status shows how the last one ended and a
// trial's ends that did not use its try; keel events shows the first
// lines of the last boot's crash report keel-init handed over.

// noteShutdown runs `keel note-shutdown VERB`: on a system keel booted, it
// notes in the record that the booted slot's OS is ending this boot
// (reboot, poweroff, halt or kexec, the verb systemd-shutdown passes its
// hooks), so that the next keel-init tells it from a power loss. A
// reboot without a commit uses a trial's try; a kexec does not.
func (c *command) noteShutdown(args []string) error {
	set, err := c.flags("note-shutdown", args, func(*flag.FlagSet) {})
	if err != nil {
		return err
	}
	if set.NArg() != 1 {
		return usagef("usage: keel note-shutdown reboot|poweroff|halt|kexec (what systemd-shutdown passes its hooks)")
	}
	verb := set.Arg(0)
	switch verb {
	case bootenv.NoteReboot, bootenv.NotePowerOff, bootenv.NoteHalt, bootenv.NoteKexec:
	default:
		return usagef("note-shutdown %.40q: want reboot, poweroff, halt or kexec (what systemd-shutdown passes its hooks)", verb)
	}
	slot, _, err := c.ownSlot("", "note the end of")
	if err != nil {
		return err
	}
	switch {
	case c.g != (globals{}):
		return usagef("note-shutdown notes the end of the running system's boot: it takes no -c, --efivars or --image")
	case slot == "":
		// A system keel did not boot: no boot of keel's to describe.
		// The hook runs at every shutdown; this is no error.
		fmt.Fprintf(c.stdout, "not booted by keel (no keel.slot= on the kernel command line): nothing to note\n")
		return nil
	}
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) {
		return bootenv.NoteShutdown(r, slot, verb)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "noted: slot %s's OS ends this boot with %s (generation %d)\n", slot, verb, r.Generation)
	return nil
}

// endText is the text status's line for how the last boot ended.
func endText(e bootenv.End) string {
	if e.IsZero() {
		return "not known (no boot settled yet, or an older keel-init)"
	}
	return fmt.Sprintf("%s (slot %s, %s): %s", printable(string(e.How)), e.Slot, printable(string(e.Mode)), printable(e.Detail))
}

// trialText is the text status's trial line.
func trialText(r bootenv.Record) string {
	if r.Trial == "" {
		return "none"
	}
	s, _ := r.Slot(r.Trial)
	line := fmt.Sprintf("%s (%d tries left", r.Trial, s.TriesLeft)
	if s.Uncounted > 0 {
		line += fmt.Sprintf("; its last %d boots ended without using a try (power loss or kexec)", s.Uncounted)
	}
	return line + ")"
}

// maxCrashLines bounds what keel events shows of the crash report.
const maxCrashLines = 40

// crashEvents writes, when keel-init handed over a crash of the last
// boot (layout.CrashLogPath in Deps.RunDir), its first lines: keel-init
// read them from pstore and cleared it, so this is where they are left.
func (c *command) crashEvents(w io.Writer) {
	file := filepath.Join(c.deps.RunDir, path.Base(layout.CrashLogPath))
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		fmt.Fprintf(w, "the last boot's crash report: %v\n", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(w, "the last boot's kernel crashed; the first lines of its report, which pstore kept (keel-init read and cleared it: %s):\n", file)
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for n := 0; sc.Scan() && n < maxCrashLines; n++ {
		fmt.Fprintf(w, "  %s\n", printable(strings.TrimRight(sc.Text(), "\r")))
	}
}
