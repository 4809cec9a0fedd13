package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/legacy"
	"github.com/keelboot/keel/bootenv/ubootenv"
)

// legacyLayout is RAUC's or Mender's boot counting in a U-Boot env, with
// the slot mapping the command line gave (package bootenv/legacy).
type legacyLayout struct {
	name  string   // "RAUC" or "Mender"
	vars  []string // the variables it reads and writes
	from  func(map[string]string) (bootenv.Record, error)
	to    func(bootenv.Record) map[string]string
	check func(bootenv.Record) error
}

// legacyFlags are the flags env import and env export share.
type legacyFlags struct {
	slots, parts string
	bootlimit    int
}

func (lf *legacyFlags) define(fs *flag.FlagSet, export bool) {
	fs.StringVar(&lf.slots, "slots", "A=a,B=b", "RAUC: bootname=keel slot, comma-separated")
	fs.StringVar(&lf.parts, "parts", "2=a,3=b", "Mender: root partition number=keel slot, comma-separated")
	lf.bootlimit = legacy.MenderBootlimit
	if export {
		fs.IntVar(&lf.bootlimit, "bootlimit", legacy.MenderBootlimit, "Mender: the bootlimit to write (raised when a trial has more tries)")
	}
}

// layout builds the layout named which ("rauc" or "mender") from the flags
// set on fs; a flag of the other layout is a mistake.
func (lf *legacyFlags) layout(fs *flag.FlagSet, which, verb string) (*legacyLayout, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch which {
	case "rauc":
		if set["parts"] || set["bootlimit"] {
			return nil, usagef("--parts and --bootlimit are for Mender; RAUC's slots are mapped with --slots")
		}
		m, err := legacy.ParseRAUCSlots(lf.slots)
		if err != nil {
			return nil, usagef("--slots %s: %v", lf.slots, err)
		}
		vars := []string{legacy.RAUCBootOrder}
		for _, name := range sortedKeys(m) {
			vars = append(vars, legacy.RAUCLeft(name))
		}
		return &legacyLayout{name: "RAUC", vars: vars,
			from:  func(v map[string]string) (bootenv.Record, error) { return legacy.FromRAUC(v, m) },
			to:    func(r bootenv.Record) map[string]string { return legacy.ToRAUC(r, m) },
			check: func(r bootenv.Record) error { return legacy.CheckRAUC(r, m) },
		}, nil
	case "mender":
		if set["slots"] {
			return nil, usagef("--slots is for RAUC; Mender's partitions are mapped with --parts")
		}
		if lf.bootlimit < 1 || lf.bootlimit > bootenv.MaxTries {
			return nil, usagef("--bootlimit %d: give 1..%d (Mender uses %d)", lf.bootlimit, bootenv.MaxTries, legacy.MenderBootlimit)
		}
		p, err := legacy.ParseMenderParts(lf.parts)
		if err != nil {
			return nil, usagef("--parts %s: %v", lf.parts, err)
		}
		limit := lf.bootlimit
		return &legacyLayout{name: "Mender",
			vars: []string{legacy.MenderBootPart, legacy.MenderBootPartHex, legacy.MenderUpgradeAvailable, legacy.MenderBootcount, legacy.MenderBootlimitVar},
			from: func(v map[string]string) (bootenv.Record, error) { return legacy.FromMender(v, p) },
			to:   func(r bootenv.Record) map[string]string { return legacy.ToMender(r, p, limit) },
			check: func(r bootenv.Record) error {
				return legacy.CheckMender(r, p, limit)
			},
		}, nil
	case "":
		flagName := "--from"
		if verb == "export" {
			flagName = "--to"
		}
		return nil, usagef("env %s needs %s rauc or %s mender", verb, flagName, flagName)
	}
	return nil, usagef("unknown layout %q (want rauc or mender)", which)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// legacyRefused makes an error of package legacy exit 1: the env's
// variables or the record, not the storage, are the problem.
func legacyRefused(err error) error {
	if errors.Is(err, legacy.ErrMapping) {
		return usageError{err.Error()}
	}
	return fmt.Errorf("%w: %w", bootenv.ErrRefused, err)
}

// legacyEnv parses the flags of `keel env import` (verb "import": --from)
// or `keel env export` (verb "export": --to), the layout's flags and those
// extra defines, opens the env and reads it once. The caller closes the
// target.
func (c *command) legacyEnv(args []string, verb, usage string, extra func(*flag.FlagSet)) (*legacyLayout, *target, *ubootenv.Env, error) {
	var which string
	var lf legacyFlags
	export := verb == "export"
	fs, err := c.flags("env "+verb, args, func(fs *flag.FlagSet) {
		if export {
			fs.StringVar(&which, "to", "", "the layout to write: rauc or mender")
		} else {
			fs.StringVar(&which, "from", "", "the layout the env holds: rauc or mender")
		}
		lf.define(fs, export)
		if extra != nil {
			extra(fs)
		}
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if fs.NArg() != 0 {
		return nil, nil, nil, usagef("%s", usage)
	}
	lay, err := lf.layout(fs, which, verb)
	if err != nil {
		return nil, nil, nil, err
	}
	t, err := c.envTarget()
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := t.Env.Read()
	switch {
	case errors.Is(err, ubootenv.ErrBlank) && export:
		err = fmt.Errorf("%s: %w: the env is blank; run `keel init` or `keel env import` first", t.Info.Location, bootenv.ErrNoState)
	case errors.Is(err, ubootenv.ErrBlank):
		err = fmt.Errorf("%s: the env is blank: there is no %s state to import (keel init starts a new record)", t.Info.Location, lay.name)
	}
	if err != nil {
		t.Close()
		return nil, nil, nil, err
	}
	return lay, t, e, nil
}

// envImport runs `keel env import --from rauc|mender`: it reads RAUC's or
// Mender's boot variables from the env, builds the equivalent keel record
// and commits it in one write next to the env's other variables, which stay
// as they are (the legacy ones too). An existing keel record is replaced
// only with --force.
func (c *command) envImport(args []string) error {
	var force bool
	lay, t, e, err := c.legacyEnv(args, "import", "usage: keel env import --from rauc|mender [--slots A=a,B=b | --parts 2=a,3=b] [--force]", func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "replace an existing (or corrupt) keel record")
	})
	if err != nil {
		return err
	}
	defer t.Close()
	prev, held, err := loadReplaceable(t, force, "the import would replace it: add --force", "add --force to replace it with the imported state")
	if err != nil {
		return err
	}
	vars := make(map[string]string, e.Len())
	for _, v := range e.Vars() {
		vars[v.Name] = v.Value
	}
	r, err := lay.from(vars)
	if err != nil {
		return legacyRefused(err)
	}
	if held {
		r.Generation = prev.Generation + 1
	}
	if err := t.Commit(r); err != nil {
		return fmt.Errorf("%s: %w", t.Info.Location, err)
	}
	var read []string
	for _, name := range lay.vars {
		if v, ok := e.Get(name); ok {
			read = append(read, name+"="+v)
		}
	}
	fmt.Fprintf(c.stdout, "imported %s's boot state (%s) as generation %d:\n", lay.name, strings.Join(read, ", "), r.Generation)
	printSlots(c.stdout, r)
	d, _ := bootenv.Select(r)
	fmt.Fprintf(c.stdout, "next boot: %s (%s): %s\n", d, d.Mode, printable(d.Reason))
	fmt.Fprintf(c.stdout, "the %s variables stay in the env, unread by keel: from now on keel decides what boots; the OS confirms boots with `keel mark-good` (a trial) or `keel boot-ok`\n", lay.name)
	if t.Info.Note != "" {
		fmt.Fprintf(c.stdout, "warning: %s\n", printable(t.Info.Note))
	}
	return nil
}

// envExport runs `keel env export --to rauc|mender`: it writes keel's next
// boot decision as RAUC's or Mender's variables, in one commit; the keel
// record and every other variable stay as they are. A record whose next
// boot the layout cannot express (recovery, say) is refused.
func (c *command) envExport(args []string) error {
	// One read: the record exported is the one in the env written back.
	lay, t, e, err := c.legacyEnv(args, "export", "usage: keel env export --to rauc|mender [--slots A=a,B=b | --parts 2=a,3=b] [--bootlimit N]", nil)
	if err != nil {
		return err
	}
	defer t.Close()
	var all []bootenv.Var
	for _, v := range e.Vars() {
		all = append(all, bootenv.Var{Name: v.Name, Value: v.Value})
	}
	for _, name := range e.Duplicates() {
		if bootenv.IsRecordVar(name) {
			return fmt.Errorf("%s: %w: %s is set twice in the env", t.Info.Location, bootenv.ErrCorrupt, name)
		}
	}
	r, err := bootenv.DecodeVars(all)
	if errors.Is(err, bootenv.ErrNoState) {
		return fmt.Errorf("%s: %w: nothing to export; run `keel init` or `keel env import` first", t.Info.Location, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", t.Info.Location, err)
	}
	if err := lay.check(r); err != nil {
		return legacyRefused(err)
	}
	out := lay.to(r)
	var wrote []string
	for _, name := range lay.vars {
		v, ok := out[name]
		if !ok {
			continue
		}
		if err := e.Set(name, v); err != nil {
			return err
		}
		wrote = append(wrote, name+"="+v)
	}
	if err := t.Env.Write(e); err != nil {
		return err
	}
	d, _ := bootenv.Select(r)
	fmt.Fprintf(c.stdout, "wrote %s's boot variables: %s\n", lay.name, strings.Join(wrote, ", "))
	fmt.Fprintf(c.stdout, "%s's boot script takes slot %s next, as keel's next boot does (%s: %s)\n", lay.name, d.Slot, d.Mode, printable(d.Reason))
	return nil
}

// printSlots lists the record's slots, as keel status does.
func printSlots(w io.Writer, r bootenv.Record) {
	for _, s := range r.Slots {
		line := fmt.Sprintf("  %s  %s", s.Name, s.State)
		switch {
		case s.Name == r.Active:
			line += " (active)"
		case s.State == bootenv.StateTrial:
			line += fmt.Sprintf(" (%d tries left)", s.TriesLeft)
		}
		if s.Unconfirmed > 0 {
			line += fmt.Sprintf(", %d unconfirmed boot(s)", s.Unconfirmed)
		}
		if s.Reason != "" {
			line += ": " + s.Reason
		}
		fmt.Fprintln(w, line)
	}
}
