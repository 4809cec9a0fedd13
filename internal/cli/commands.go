package cli

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/ubootenv"
	kcmdline "github.com/keelboot/keel/format/cmdline"
)

// statusJSON is the stable JSON form of `keel status --json`.
type statusJSON struct {
	Active     *string `json:"active"`
	Trial      *string `json:"trial"`
	Generation uint64  `json:"generation"`
	Recovery   *string `json:"recovery"`
	// FactoryReset: the pending recovery (a request, or a reinstall
	// under way) erases the data partition (keel_factory_reset=1).
	FactoryReset bool `json:"factory_reset"`
	// Reinstalling is the slot recovery is rewriting (a reinstall cut by
	// a power loss resumes at the next boot).
	Reinstalling *string `json:"reinstalling"`
	// Installing is the slot an update is writing (an install cut by a
	// power loss completes when run again).
	Installing   *string                 `json:"installing"`
	LastRecovery *string                 `json:"last_recovery"`
	StartedOver  *string                 `json:"started_over"`
	Transient    int                     `json:"environmental_errors"`
	LastBoot     bootenv.Outcome         `json:"last_boot"`
	NextBoot     bootenv.Decision        `json:"next_boot"`
	Order        []string                `json:"slot_order"`
	Slots        map[string]bootenv.Slot `json:"slots"`
	Store        bootenv.Info            `json:"store"`
	// LastFallback is the last boot that fell back (null: none recorded).
	LastFallback *bootenv.Fallback `json:"last_fallback"`
	// LastEnd is how the last boot keel-init handed over ended (null:
	// not known): docs/DESIGN.md section 3.1.
	LastEnd *bootenv.End `json:"last_end"`
	// Booted is what the running system was booted as; left out offline
	// (a disk image, or a store given for another system).
	Booted *bootedJSON `json:"booted,omitempty"`
	// Data is what stage 2 told the running system about the data
	// partition (cli/data.go); left out offline and without a report.
	Data *dataJSON `json:"data,omitempty"`
}

// bootedJSON is the running system as keel-init booted it: keel.slot=,
// keel.mode=, keel.secver= and keel.tpm= on the kernel command line
// (keel-init measured it into PCR 8), and the slot's version from the
// record. ByKeel false: the command line has no keel.slot=; Error set:
// it has keel parameters that cannot be read.
type bootedJSON struct {
	ByKeel  bool   `json:"by_keel"`
	Slot    string `json:"slot,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Version string `json:"version,omitempty"`
	// SecurityVersion is keel.secver= (nil: not given, an older keel-init).
	SecurityVersion *uint64 `json:"security_version,omitempty"`
	// Measured: keel-init measured the boot (no keel.tpm=unmeasured).
	Measured *bool `json:"measured,omitempty"`
	// Error says why the command line could not be read (a keel.*
	// parameter given twice, a slot name that is none).
	Error string `json:"error,omitempty"`
}

// booted reads how the running system was booted, for status: nil with
// --image (a disk image is not the running system), and with -c or
// --efivars unless the command line names a keel slot (the store given
// may be another system's).
func (c *command) booted(r bootenv.Record) *bootedJSON {
	if c.g.image != "" {
		return nil
	}
	line, err := c.deps.Cmdline()
	if err != nil {
		line = ""
	}
	var b bootedJSON
	fail := func(err error) *bootedJSON {
		b.ByKeel, b.Error = true, fmt.Sprintf("the kernel command line: %v", err)
		return &b
	}
	slot, ok, err := kcmdline.Lookup(line, kcmdline.KeySlot)
	switch {
	case err != nil:
		return fail(err)
	case !ok && c.g != (globals{}):
		return nil
	case !ok:
		return &b
	}
	b.ByKeel = true
	if !bootenv.ValidSlotName(slot) {
		return fail(fmt.Errorf("%s=%q is not a slot name", kcmdline.KeySlot, slot))
	}
	b.Slot = slot
	if b.Mode, _, err = kcmdline.Lookup(line, kcmdline.KeyMode); err != nil {
		return fail(err)
	}
	if v, ok, err := kcmdline.Lookup(line, kcmdline.KeySecurityVersion); err != nil {
		return fail(err)
	} else if ok {
		sv, err := kcmdline.ParseSecurityVersion(v)
		if err != nil {
			return fail(err)
		}
		b.SecurityVersion = &sv
	}
	t, _, err := kcmdline.Lookup(line, kcmdline.KeyTPM)
	if err != nil {
		return fail(err)
	}
	measured := t != "unmeasured"
	b.Measured = &measured
	if s, ok := r.Slot(slot); ok {
		b.Version = s.Version
	}
	return &b
}

// text is the booted line of the text status.
func (b *bootedJSON) text() string {
	switch {
	case b.Error != "":
		return "unknown: " + b.Error
	case !b.ByKeel:
		return "not a keel boot (no keel.slot= on the kernel command line)"
	}
	line := fmt.Sprintf("slot %s (%s)", b.Slot, orValue(printable(b.Mode), "mode not given"))
	if b.Version != "" {
		line += ", version " + printable(b.Version)
	}
	if b.SecurityVersion != nil {
		line += fmt.Sprintf(", security version %d", *b.SecurityVersion)
	}
	if b.Measured != nil && !*b.Measured {
		line += ", unmeasured (no TPM)"
	}
	return line
}

// fallbackText is the last fallback line of the text status.
func fallbackText(f bootenv.Fallback) string {
	to := "recovery"
	if f.Slot != "" {
		to = "slot " + f.Slot
	}
	return fmt.Sprintf("slot %s failed, %s to %s (generation %d): %s", f.Failed, printable(string(f.Mode)), to, f.Generation, printable(f.Reason))
}

// factoryResetText is the factory reset line of the text status: what
// the next boot erases, and how to stop it while it is only a request.
func factoryResetText(r bootenv.Record) string {
	if r.Reinstalling != "" {
		return fmt.Sprintf("PENDING: the next boot resumes reinstalling slot %s and ERASES the data partition", r.Reinstalling)
	}
	return "PENDING: the next boot's recovery ERASES the data partition (keel recover --cancel withdraws it)"
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (c *command) status(args []string) error {
	var asJSON bool
	fs, err := c.flags("status", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("status takes no arguments")
	}
	r, info, err := c.view()
	if err != nil {
		return err
	}
	next, _ := bootenv.Select(r)
	booted := c.booted(r)
	data := c.dataStatus(booted)
	if asJSON {
		out := statusJSON{
			Active: strOrNil(r.Active), Trial: strOrNil(r.Trial), Generation: r.Generation,
			Recovery: strOrNil(r.Recovery), FactoryReset: r.FactoryReset, LastBoot: r.Last, NextBoot: next,
			Reinstalling: strOrNil(r.Reinstalling), Installing: strOrNil(r.Installing), LastRecovery: strOrNil(r.LastRecovery),
			StartedOver: strOrNil(r.StartedOver), Transient: r.Transient,
			Order: r.SlotNames(), Slots: map[string]bootenv.Slot{}, Store: info,
			Booted: booted, Data: data,
		}
		if !r.LastFallback.IsZero() {
			out.LastFallback = &r.LastFallback
		}
		if !r.LastEnd.IsZero() {
			out.LastEnd = &r.LastEnd
		}
		for _, s := range r.Slots {
			out.Slots[s.Name] = s
		}
		return printJSON(c.stdout, out)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	safety := "power-safe"
	if !info.PowerSafe {
		safety = "NOT power-safe"
	}
	fmt.Fprintf(w, "store:\t%s %s (%s)\n", info.Backend, info.Location, safety)
	if booted != nil {
		fmt.Fprintf(w, "booted:\t%s\n", booted.text())
	}
	dataText(w, data)
	fmt.Fprintf(w, "generation:\t%d\n", r.Generation)
	fmt.Fprintf(w, "active:\t%s\n", orNone(r.Active))
	fmt.Fprintf(w, "trial:\t%s\n", trialText(r))
	fmt.Fprintf(w, "recovery:\t%s\n", orValue(printable(r.Recovery), "not requested"))
	if r.FactoryReset {
		fmt.Fprintf(w, "factory reset:\t%s\n", factoryResetText(r))
	}
	if r.Reinstalling != "" {
		fmt.Fprintf(w, "reinstalling:\tslot %s (resumes at the next boot)\n", r.Reinstalling)
	}
	if r.Installing != "" {
		fmt.Fprintf(w, "installing:\tslot %s is being written by an update (run keel install again to complete it)\n", r.Installing)
	}
	if r.LastRecovery != "" {
		fmt.Fprintf(w, "last recovery:\t%s\n", printable(r.LastRecovery))
	}
	if r.StartedOver != "" {
		fmt.Fprintf(w, "started over:\t%s\n", printable(r.StartedOver))
	}
	if r.Transient > 0 {
		fmt.Fprintf(w, "environmental errors:\t%d boots in a row (retried; no slot marked bad)\n", r.Transient)
	}
	if r.Last.Mode != bootenv.ModeNone {
		fmt.Fprintf(w, "last boot:\t%s (%s): %s\n", printable(string(r.Last.Mode)), orValue(r.Last.Slot, "no slot"), printable(r.Last.Reason))
	} else {
		fmt.Fprintf(w, "last boot:\tnone yet\n")
	}
	fmt.Fprintf(w, "last end:\t%s\n", endText(r.LastEnd))
	if !r.LastFallback.IsZero() {
		fmt.Fprintf(w, "last fallback:\t%s\n", fallbackText(r.LastFallback))
	} else {
		fmt.Fprintf(w, "last fallback:\tnone recorded\n")
	}
	fmt.Fprintf(w, "next boot:\t%s (%s): %s\n", next, next.Mode, printable(next.Reason))
	fmt.Fprintf(w, "slots:\n")
	for _, s := range r.Slots {
		line := fmt.Sprintf("  %s\t%s", s.Name, s.State)
		if s.State == bootenv.StateTrial {
			line += fmt.Sprintf("\t%d tries left", s.TriesLeft)
		} else {
			line += "\t"
		}
		line += fmt.Sprintf("\tversion %s\tsecurity %d", orValue(printable(s.Version), "-"), s.SecurityVersion)
		if s.Reason != "" {
			line += "\t" + printable(s.Reason)
		}
		fmt.Fprintln(w, line)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if info.Note != "" {
		fmt.Fprintf(c.stdout, "warning: %s\n", printable(info.Note))
	}
	return nil
}

func orNone(s string) string { return orValue(s, "none") }

func orValue(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (c *command) init(args []string) error {
	var slots, active string
	var force bool
	fs, err := c.flags("init", args, func(fs *flag.FlagSet) {
		fs.StringVar(&slots, "slots", "a,b", "comma-separated slot names")
		fs.StringVar(&active, "active", "", "the slot that is installed and good (default: the first slot)")
		fs.BoolVar(&force, "force", false, "replace existing or corrupt state")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("init takes no arguments (did you mean --active %s?)", fs.Arg(0))
	}
	names := strings.Split(slots, ",")
	if active == "" {
		active = names[0]
	}
	for _, n := range names {
		if !bootenv.ValidSlotName(n) {
			return usagef("slot name %q: use 1-16 characters a-z, 0-9", n)
		}
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	prev, _, err := loadReplaceable(t, force, "add --force to replace it", "add --force to overwrite it with a new state")
	if err != nil {
		return err
	}
	r, err := bootenv.InitFrom(prev, names, active)
	if err != nil {
		return err
	}
	if err := t.Commit(r); err != nil {
		return fmt.Errorf("%s: %w", t.Info.Location, err)
	}
	fmt.Fprintf(c.stdout, "initialised slots %s, active %s (generation %d)\n", strings.Join(names, ","), active, r.Generation)
	return nil
}

func (c *command) try(args []string) error {
	var tries int
	var version string
	var secver uint64
	var setInfo bool
	fs, err := c.flags("try", args, func(fs *flag.FlagSet) {
		fs.IntVar(&tries, "tries", 3, "boots the trial may take before it counts as failed")
		fs.StringVar(&version, "version", "", "record the version installed in the slot")
		fs.Uint64Var(&secver, "security-version", 0, "record the security version installed in the slot")
	})
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { setInfo = setInfo || f.Name == "version" || f.Name == "security-version" })
	if fs.NArg() != 1 {
		return usagef("usage: keel try SLOT [--tries N]")
	}
	slot := fs.Arg(0)
	// A new trial is named by a new id: its first boot starts from a copy
	// of the running slot's data area (the same trial keeps its id).
	id := bootenv.NewID()
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) {
		if setInfo {
			s, ok := r.Slot(slot)
			if ok {
				v, sv := s.Version, s.SecurityVersion
				fs.Visit(func(f *flag.Flag) {
					switch f.Name {
					case "version":
						v = version
					case "security-version":
						sv = secver
					}
				})
				var err error
				if r, err = bootenv.SetSlotInfo(r, slot, v, sv); err != nil {
					return r, err
				}
			}
		}
		return bootenv.Try(r, slot, tries, id)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "slot %s is on trial for %d boots (generation %d); it must run `keel mark-good` or the device falls back to %s\n",
		slot, tries, r.Generation, orNone(r.Active))
	return nil
}

func (c *command) selectCmd(args []string) error {
	var commit, asJSON bool
	fs, err := c.flags("select", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&commit, "commit", false, "commit the decision (count the trial), as keel-init does")
		fs.BoolVar(&asJSON, "json", false, "print the decision as JSON")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("select takes no arguments")
	}
	var d bootenv.Decision
	if commit {
		if _, err := c.update(func(r bootenv.Record) (bootenv.Record, error) {
			var n bootenv.Record
			d, n = bootenv.Select(r)
			return n, nil
		}); err != nil {
			return err
		}
	} else {
		r, _, err := c.view()
		if err != nil {
			return err
		}
		d, _ = bootenv.Select(r)
	}
	if asJSON {
		return printJSONLine(c.stdout, d)
	}
	fmt.Fprintln(c.stdout, d)
	fmt.Fprintf(c.stderr, "%s: %s\n", d.Mode, printable(d.Reason))
	return nil
}

// ownSlot is the slot a device command acts on: on a system keel booted
// (no -c, --efivars or --image, and keel.slot= on the kernel command line)
// only the booted slot, and a --slot naming another is refused; offline
// the --slot given, or "" (the caller picks from the record).
func (c *command) ownSlot(slot, verb string) (string, bootLine, error) {
	var boot bootLine
	if c.g != (globals{}) {
		return slot, boot, nil
	}
	boot, err := c.bootLine()
	if err != nil {
		return "", boot, err
	}
	if boot.slot == "" {
		return slot, boot, nil
	}
	if slot != "" && slot != boot.slot {
		return "", boot, usagef("this system booted slot %s (keel.slot= on the kernel command line): it can %s only that slot, not %s (to edit a record offline, give -c, --efivars or --image)", boot.slot, verb, slot)
	}
	return boot.slot, boot, nil
}

func (c *command) markGood(args []string) error {
	var slot string
	fs, err := c.flags("mark-good", args, func(fs *flag.FlagSet) {
		fs.StringVar(&slot, "slot", "", "slot to mark good (default: the booted slot; on a system keel booted, only that slot)")
	})
	if err != nil {
		return err
	}
	switch {
	case fs.NArg() == 1 && slot == "":
		slot = fs.Arg(0)
	case fs.NArg() != 0:
		return usagef("usage: keel mark-good [--slot SLOT]")
	}
	// Offline (-c, --efivars, --image) mark-good only edits a record: any
	// slot, and never the watchdog or the TPM. On a system keel booted
	// (keel.slot= on the kernel command line) it marks the booted slot
	// good, and nothing else.
	chosen, boot, err := c.ownSlot(slot, "mark good")
	if err != nil {
		return err
	}
	chosen, r, err := c.updateSlot(chosen, "no trial, no active slot", bootenv.MarkGood)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "slot %s is good and active (generation %d)\n", chosen, r.Generation)
	if boot.slot == "" {
		return nil
	}
	// On a device keel booted, keel-init armed the watchdog for the slot
	// to prove itself: it has, so stop it (an OS with its own watchdog
	// daemon takes the device over instead).
	if err := c.deps.DisarmWatchdog(); err != nil {
		fmt.Fprintf(c.stderr, "keel: warning: %v\n", err)
	}
	// The slot proved itself: from its next boot (a normal boot of the
	// committed slot) keel-init advances the TPM's anti-rollback counter to
	// the security version it verifies in the slot's signed manifest, before
	// it write-locks the counter for the OS (package tpm): the commit in the
	// record is the request, and nothing here touches the TPM. keel.secver=
	// is what keel-init verified for this boot; the record's copy is
	// unauthenticated.
	if !boot.hasSecver {
		fmt.Fprintf(c.stderr, "keel: warning: the kernel command line has no %s= (a keel-init that does not pass the verified security version)\n", kcmdline.KeySecurityVersion)
		return nil
	}
	if s, ok := r.Slot(chosen); ok && s.SecurityVersion != boot.secver {
		fmt.Fprintf(c.stderr, "keel: note: the boot record says slot %s has security version %d; keel-init follows the verified manifest's %d (%s=)\n", chosen, s.SecurityVersion, boot.secver, kcmdline.KeySecurityVersion)
	}
	if boot.unmeasured {
		// No TPM at boot (a board without one): no anti-rollback
		// counter to raise.
		return nil
	}
	fmt.Fprintf(c.stdout, "anti-rollback counter: keel-init raises it to %d (slot %s's security version) on every normal boot of slot %s: this commit is the request\n", boot.secver, chosen, chosen)
	return nil
}

// bootLine is what keel-init's measured command line says about the
// running system.
type bootLine struct {
	slot       string // keel.slot=: "" when keel did not boot this system
	secver     uint64 // keel.secver=, when hasSecver
	hasSecver  bool
	unmeasured bool // keel.tpm=unmeasured: keel-init had no TPM (no counter either)
}

// bootLine reads keel.slot= and keel.secver= from the kernel command line.
// Either given twice, or a security version that is not a number, is an
// error: keel-init writes each once.
func (c *command) bootLine() (bootLine, error) {
	var b bootLine
	line, err := c.deps.Cmdline()
	if err != nil {
		return b, nil // no command line: not a system keel booted
	}
	if b.slot, _, err = kcmdline.Lookup(line, kcmdline.KeySlot); err != nil {
		return b, fmt.Errorf("the kernel command line: %w", err)
	}
	if b.slot == "" {
		return b, nil
	}
	v, ok, err := kcmdline.Lookup(line, kcmdline.KeySecurityVersion)
	if err == nil && ok {
		b.secver, err = kcmdline.ParseSecurityVersion(v)
		b.hasSecver = err == nil
	}
	if err != nil {
		return b, fmt.Errorf("the kernel command line: %w", err)
	}
	t, _, err := kcmdline.Lookup(line, kcmdline.KeyTPM)
	if err != nil {
		return b, fmt.Errorf("the kernel command line: %w", err)
	}
	b.unmeasured = t == "unmeasured"
	return b, nil
}

// bootedSlot is the slot this system runs: keel.slot= on the command line
// (keel-init passes it), else the last boot's slot.
func (c *command) bootedSlot(r bootenv.Record) string {
	if s := c.cmdlineParam("keel.slot"); s != "" {
		return s
	}
	if r.Last.Slot != "" {
		return r.Last.Slot
	}
	return r.Active
}

func (c *command) markBad(args []string) error {
	var reason string
	fs, err := c.flags("mark-bad", args, func(fs *flag.FlagSet) {
		fs.StringVar(&reason, "reason", "marked bad by `keel mark-bad`", "why the slot is bad (shown by status)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: keel mark-bad SLOT [--reason TEXT]")
	}
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) { return bootenv.MarkBad(r, fs.Arg(0), reason) })
	if err != nil {
		return err
	}
	d, _ := bootenv.Select(r)
	fmt.Fprintf(c.stdout, "slot %s is bad (generation %d); the next boot takes %s\n", fs.Arg(0), r.Generation, d)
	return nil
}

func (c *command) setActive(args []string) error {
	fs, err := c.flags("set-active", args, func(*flag.FlagSet) {})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: keel set-active SLOT")
	}
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) { return c.activate(r, fs.Arg(0)) })
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "slot %s is active (generation %d)\n", fs.Arg(0), r.Generation)
	return nil
}

func (c *command) recover(args []string) error {
	var reason string
	var cancel, factory bool
	fs, err := c.flags("recover", args, func(fs *flag.FlagSet) {
		fs.StringVar(&reason, "reason", "requested with `keel recover`", "why (recorded in the state)")
		fs.BoolVar(&cancel, "cancel", false, "withdraw a pending request")
		fs.BoolVar(&factory, "factory-reset", false, "also wipe the data partition (re-create an empty filesystem)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("recover takes no arguments")
	}
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) {
		if cancel {
			return bootenv.CancelRecovery(r)
		}
		if factory {
			return bootenv.RequestFactoryReset(r, reason)
		}
		return bootenv.RequestRecovery(r, reason)
	})
	if err != nil {
		return err
	}
	if cancel {
		fmt.Fprintf(c.stdout, "recovery request withdrawn (generation %d)\n", r.Generation)
	} else {
		what := "the next boot goes to recovery: a slot that is not good (never the last good one) is reinstalled from the seed, data is kept"
		if factory {
			what = "the next boot goes to recovery: a slot that is not good (never the last good one) is reinstalled from the seed and DATA IS WIPED"
		}
		fmt.Fprintf(c.stdout, "%s (generation %d)\n", what, r.Generation)
	}
	return nil
}

const envUsage = `usage: keel env print [-n] [NAME...]
       keel env set NAME=VALUE...
       keel env import --from rauc|mender [--slots A=a,B=b | --parts 2=a,3=b] [--force]
       keel env export --to rauc|mender [--slots A=a,B=b | --parts 2=a,3=b] [--bootlimit 1]

The U-Boot environment that holds the boot record (-c FW_ENV_CONFIG, or
--image DISK.img for its bootstate partition):
  print    print the variables (or the NAMEs) like fw_printenv; -n prints
           one value alone; values are printed as they are, like fw_printenv
  set      set variables in one commit; NAME= deletes; a change to keel_*
           variables must leave a valid boot record
  import   turn a RAUC or Mender boot-count env into keel's record in one
           commit (--force replaces an existing or corrupt record)
  export   write keel's next decision back in that layout (--bootlimit: the
           boots Mender's bootlimit allows)
`

func (c *command) env(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, envUsage)
		return usagef("env: no subcommand given (want print, set, import or export)")
	}
	if args[0] == "help" || slices.ContainsFunc(args, isHelpArg) {
		fmt.Fprint(c.stderr, envUsage)
		return flag.ErrHelp
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "print":
		return c.envPrint(rest)
	case "set":
		return c.envSet(rest)
	case "import":
		return c.envImport(rest) // legacy.go
	case "export":
		return c.envExport(rest)
	}
	return usagef("unknown env command %q (want print, set, import or export)", sub)
}

func (c *command) envTarget() (*target, error) {
	t, err := c.open()
	if err != nil {
		return nil, err
	}
	if t.Env == nil {
		t.Close()
		return nil, usagef("env commands need a U-Boot environment (-c FW_ENV_CONFIG or --image); %s is %s", t.Info.Location, t.Info.Backend)
	}
	return t, nil
}

func (c *command) envPrint(args []string) error {
	var valueOnly bool
	fs, err := c.flags("env print", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&valueOnly, "n", false, "print the value only (one NAME)")
	})
	if err != nil {
		return err
	}
	if valueOnly && fs.NArg() != 1 {
		return usagef("-n takes exactly one NAME")
	}
	t, err := c.envTarget()
	if err != nil {
		return err
	}
	defer t.Close()
	e, err := t.Env.Read()
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		for _, v := range e.Vars() {
			fmt.Fprintf(c.stdout, "%s=%s\n", v.Name, v.Value)
		}
		return nil
	}
	var missing []string
	for _, name := range fs.Args() {
		v, ok := e.Get(name)
		switch {
		case !ok:
			missing = append(missing, name)
		case valueOnly:
			fmt.Fprintln(c.stdout, v)
		default:
			fmt.Fprintf(c.stdout, "%s=%s\n", name, v)
		}
	}
	if len(missing) > 0 {
		return usagef("not defined: %s", strings.Join(missing, ", "))
	}
	return nil
}

func (c *command) envSet(args []string) error {
	if len(args) == 0 {
		return usagef("usage: keel env set NAME=VALUE... (NAME= deletes)")
	}
	type change struct{ name, value string }
	var changes []change
	touchesRecord := false
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return usagef("%q is not NAME=VALUE", a)
		}
		changes = append(changes, change{name, value})
		touchesRecord = touchesRecord || bootenv.IsRecordVar(name)
	}
	t, err := c.envTarget()
	if err != nil {
		return err
	}
	defer t.Close()
	e, err := t.Env.Read()
	switch {
	case errors.Is(err, ubootenv.ErrBlank):
		e = &ubootenv.Env{}
	case err != nil:
		return err
	}
	for _, ch := range changes {
		if ch.value == "" {
			e.Delete(ch.name)
			continue
		}
		if err := e.Set(ch.name, ch.value); err != nil {
			return usageError{err.Error()}
		}
	}
	if touchesRecord {
		m := map[string]string{}
		for _, v := range e.Vars() {
			m[v.Name] = v.Value
		}
		if _, err := bootenv.Decode(m); err != nil && !errors.Is(err, bootenv.ErrNoState) {
			return usagef("refused: this change would leave keel's record unreadable (%v); use keel's commands (try, mark-good, ...) to change the state", err)
		}
	}
	if err := t.Env.Write(e); err != nil {
		return err
	}
	return nil
}

// updateSlot applies change to the slot chosen, or to the booted slot when
// none was chosen (bootedSlot), in one update of the record; unknown says
// what the record lacked when no slot can be told.
func (c *command) updateSlot(chosen, unknown string, change func(bootenv.Record, string) (bootenv.Record, error)) (string, bootenv.Record, error) {
	r, err := c.update(func(r bootenv.Record) (bootenv.Record, error) {
		if chosen == "" {
			chosen = c.bootedSlot(r)
		}
		if chosen == "" {
			return r, usagef("cannot tell which slot is booted (no keel.slot= on the kernel command line, %s); give --slot", unknown)
		}
		return change(r, chosen)
	})
	return chosen, r, err
}

// loadReplaceable loads the record t holds before a command replaces it:
// an existing record (held true) or a corrupt one is replaced only with
// force, and the refusal ends with the hint for each case; no record at
// all is the zero record.
func loadReplaceable(t *target, force bool, existing, corrupt string) (prev bootenv.Record, held bool, err error) {
	prev, lerr := t.Load()
	switch {
	case lerr == nil && !force:
		return prev, true, usagef("%s already holds keel state (generation %d, active %s); %s", t.Info.Location, prev.Generation, orNone(prev.Active), existing)
	case lerr != nil && !errors.Is(lerr, bootenv.ErrNoState) && !force:
		return prev, false, fmt.Errorf("%w; %s", lerr, corrupt)
	}
	return prev, lerr == nil, nil
}
