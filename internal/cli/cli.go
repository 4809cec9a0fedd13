package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	kcmdline "github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/uefi"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/hw/watchdog"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/update"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitUsage   = 1
	ExitStorage = 2
)

// Deps are what the CLI reads from the running system; tests replace them.
type Deps struct {
	// Cmdline returns the kernel command line (default: /proc/cmdline).
	Cmdline func() (string, error)
	// EFIVarsDir is the efivarfs mount (default /sys/firmware/efi/efivars).
	EFIVarsDir string
	// FWEnvConfig is the default fw_env.config (default /etc/fw_env.config).
	FWEnvConfig string
	// DisarmWatchdog stops the watchdog keel-init armed (default: the
	// magic close of /dev/watchdog0). mark-good calls it on a keel-booted
	// device.
	DisarmWatchdog func() error
	// OpenTPM opens the TPM whose anti-rollback counter install reads
	// (only keel-init writes it) on a keel-booted device (default:
	// tpm.Open(tpm.DefaultDevice)).
	OpenTPM func() (transport.TPMCloser, error)
	// RunDir is where keel-init's hand-over lands in the running OS: the
	// event log and the trusted keys (default layout.RunDir).
	RunDir string
	// Stdin is what `keel install -` reads (default os.Stdin).
	Stdin io.Reader
	// OpenPartition opens the partition named name on the boot disk (the
	// disk holding all of names) for reading and writing, with its size
	// (default: by GPT name through sysfs, package hw/blockdev).
	OpenPartition func(name string, names []string) (*os.File, int64, error)
	// Reboot restarts the device (`keel install --reboot`).
	Reboot func() error
}

func (d Deps) withDefaults() Deps {
	if d.Cmdline == nil {
		d.Cmdline = func() (string, error) {
			b, err := os.ReadFile("/proc/cmdline")
			return string(b), err
		}
	}
	if d.EFIVarsDir == "" {
		d.EFIVarsDir = uefi.EfivarfsDir
	}
	if d.FWEnvConfig == "" {
		d.FWEnvConfig = "/etc/fw_env.config"
	}
	if d.DisarmWatchdog == nil {
		d.DisarmWatchdog = func() error { return watchdog.Disarm(watchdog.Device) }
	}
	if d.OpenTPM == nil {
		d.OpenTPM = func() (transport.TPMCloser, error) { return tpm.Open(tpm.DefaultDevice) }
	}
	if d.RunDir == "" {
		d.RunDir = layout.RunDir
	}
	if d.Stdin == nil {
		d.Stdin = os.Stdin
	}
	if d.OpenPartition == nil {
		d.OpenPartition = func(name string, names []string) (*os.File, int64, error) {
			return openBootPartition(d.EFIVarsDir, name, names)
		}
	}
	if d.Reboot == nil {
		d.Reboot = reboot
	}
	return d
}

// usageError is a mistake in the command line (exit 1).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// ExitCode maps an error from Run to the process exit code.
func ExitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK // help was asked for, and printed
	case errors.As(err, &u),
		errors.Is(err, bootenv.ErrRefused), errors.Is(err, bootenv.ErrUnknownSlot), errors.Is(err, update.ErrRequest):
		return ExitUsage
	}
	return ExitStorage
}

// Main runs the command and returns its exit code, printing any error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, deps Deps) int {
	err := Run(ctx, args, stdout, stderr, deps)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "keel: %v\n", err)
	}
	return ExitCode(err)
}

const usageText = `usage: keel [-c FW_ENV_CONFIG | --efivars DIR | --image DISK.img] COMMAND [ARGS]

Where the boot state lives (default: keel.store= on the kernel command line,
else the efivarfs variable if present, else /etc/fw_env.config):
  -c FILE          a libubootenv fw_env.config (one line: single copy, two: redundant)
  --efivars DIR    the efivarfs mount or a directory laid out like one
  --image DISK     a disk image: the redundant env in its GPT partition "bootstate"

Commands:
  status [--json]                      show the boot state (and the booted slot and mode)
  events [--json] [EVENTLOG]           this boot's measurement event log (/run/keel/eventlog.jsonl), one line per event
  init [--slots a,b] --active a [--force]
                                       write a new state (--force over existing or corrupt state)
  try SLOT [--tries 3] [--version V] [--security-version N]
                                       boot SLOT on trial for exactly N boots
  select [--commit] [--json]           print the slot the next boot takes, or "recovery"
  mark-good [--slot S]                 mark the booted (or given) slot good and active
  boot-ok [--slot S]                   confirm the booted good slot came up (ends its unconfirmed-boot count)
  note-shutdown reboot|poweroff|halt|kexec
                                       note how the OS ends this boot (keel's systemd-shutdown hook runs it)
  mark-bad SLOT [--reason TEXT]        mark SLOT bad
  set-active SLOT                      make a good SLOT the one normal boots take
  rollback                             make the other good slot active again (its data area as it was)
  recover [--reason TEXT] [--factory-reset] [--cancel]
                                       request (or cancel) recovery at the next boot
  secret keygen|sign-policy|seal|unseal
                                       a secret sealed to signed PCR policies (PolicyAuthorize;
                                       PCR 7 required unless --no-secure-boot)
  env print [-n] [NAME...]             print U-Boot env variables, like fw_printenv
  env set NAME=VALUE...                set variables in one commit; NAME= deletes
  env import --from rauc|mender        turn a RAUC or Mender boot-count env into keel's record (one commit)
  env export --to rauc|mender          write keel's next decision back in that layout
  image build --board B --out DISK --spec SPEC.json   write a bootable disk image (keel image help)
  initramfs build --board B --stage 1|2 --kernel-dir DIR --keys K.pub [--keel-init PATH] -o OUT
                                       write keel's initramfs (1) or the slots' initrd (2) (keel initramfs help)
  pcr predict [--slot S] [--mode M] [--secure-boot DIR] [MANIFEST]
                                       print the PCR 8/9 values keel-init leaves, and PCR 7 of a
                                       Secure Boot firmware with DIR's keys enrolled (keel pcr help)
  pcr replay EVENTLOG | pcr read [--tpm DEV] [--pcr N,...]   PCRs from keel's event log or a TPM
  pcr log [--pcr N] [--replay]         the firmware's TCG event log, decoded
  keygen --out NAME [--comment TEXT]   make a manifest signing key: NAME.key (private, 0600), NAME.pub
  sign --key NAME.key MANIFEST [--out MANIFEST.sig]
                                       sign a slot manifest (--key repeats; adds to an existing .sig)
  install [--keys K] [--no-try] [--reboot] SOURCE
                                       install an update bundle (file, block device, - or URL)
                                       into the inactive slot and put it on trial (keel install -h)
  bundle build|info|verify|delta       make and inspect update bundles (keel bundle help)
  channel init|publish|refresh|rotate|status
                                       an update channel (TUF) on any static server (keel channel help)
  update check [--json] | update apply [--reboot]
                                       find the device's update in its channel; install it (keel update help)
  seed verify --keys TRUSTED [--board B] IMAGE
                                       check a recovery seed as keel-init does (keel seed help)
  verify --keys TRUSTED MANIFEST [MANIFEST.sig]
                                       check a manifest's signature against trusted public keys
  secureboot keygen|sign|enrolment|enroll|ovmf-vars|status
                                       UEFI Secure Boot keys, signed UKIs, enrolment (keel secureboot help)
`

type globals struct {
	config, efivars, image string
}

// groups are the commands with subcommands: `keel GROUP help` asks for
// the group's usage.
var groups = map[string]bool{"env": true, "secret": true, "image": true, "initramfs": true, "pcr": true,
	"bundle": true, "seed": true, "secureboot": true, "channel": true, "update": true}

// isHelpArg reports whether a is a request for help.
func isHelpArg(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// helpRequested reports whether args ask for help rather than for work:
// -h, -help or --help before a "--", `keel help`, or `keel GROUP help`.
// Help is printed on standard output and exits 0 (a usage error prints
// the usage on standard error and exits 1).
func helpRequested(args []string) bool {
	var words []string
	for _, a := range args {
		if a == "--" {
			break
		}
		if isHelpArg(a) {
			return true
		}
		if !strings.HasPrefix(a, "-") {
			words = append(words, a)
		}
	}
	return len(words) > 0 && words[0] == "help" || len(words) > 1 && groups[words[0]] && words[1] == "help"
}

// Run executes one keel command.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, deps Deps) error {
	deps = deps.withDefaults()
	if helpRequested(args) {
		// Every usage text is written to the command's stderr: asked
		// for, it goes to standard output.
		stderr = stdout
	}
	fs := flag.NewFlagSet("keel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText) }
	var g globals
	fs.StringVar(&g.config, "c", "", "fw_env.config file")
	fs.StringVar(&g.config, "config", "", "fw_env.config file")
	fs.StringVar(&g.efivars, "efivars", "", "efivarfs directory")
	fs.StringVar(&g.image, "image", "", "disk image with a bootstate partition")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	n := 0
	for _, s := range []string{g.config, g.efivars, g.image} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return usagef("give only one of -c, --efivars and --image")
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usageText)
		return usagef("no command given")
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	c := &command{ctx: ctx, g: g, deps: deps, stdout: stdout, stderr: stderr}
	if run, ok := c.commands()[cmd]; ok {
		return run(rest)
	}
	fmt.Fprint(stderr, usageText)
	return usagef("unknown command %q", cmd)
}

// commands is the dispatch table: every command `keel help` lists.
func (c *command) commands() map[string]func([]string) error {
	return map[string]func([]string) error{
		"status": c.status, "init": c.init, "try": c.try, "select": c.selectCmd,
		"mark-good": c.markGood, "boot-ok": c.bootOK, "note-shutdown": c.noteShutdown, "mark-bad": c.markBad, "set-active": c.setActive, "rollback": c.rollback,
		"secret": c.secret, "recover": c.recover, "env": c.env, "image": c.image, "initramfs": c.initramfs, "pcr": c.pcr,
		"keygen": c.keygen, "sign": c.sign, "verify": c.verify, "seed": c.seed,
		"bundle": c.bundleCmd, "install": c.install, "channel": c.channelCmd, "update": c.updateCmd, "secureboot": c.secureBoot, "events": c.events,
		"help": c.help,
	}
}

// help is `keel help [COMMAND]`: the usage of keel, or of one command (as
// `keel COMMAND --help` prints it).
func (c *command) help(args []string) error {
	if len(args) > 0 && args[0] != "help" {
		if run, ok := c.commands()[args[0]]; ok {
			return run([]string{"--help"})
		}
		fmt.Fprint(c.stderr, usageText)
		return usagef("help: unknown command %q", args[0])
	}
	_, err := fmt.Fprint(c.stdout, usageText)
	return err
}

type command struct {
	ctx            context.Context
	g              globals
	deps           Deps
	stdout, stderr io.Writer
}

// flags makes a FlagSet for a subcommand and parses args (flags may follow
// positional arguments).
func (c *command) flags(name string, args []string, define func(*flag.FlagSet)) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("keel "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { commandUsage(c.stderr, fs, name) }
	define(fs)
	if err := fs.Parse(permute(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{fmt.Sprintf("%s: %v", name, err)}
	}
	return fs, nil
}

// update loads the record, applies a transition and commits the result if
// it changed anything.
func (c *command) update(f func(bootenv.Record) (bootenv.Record, error)) (bootenv.Record, error) {
	t, err := c.open()
	if err != nil {
		return bootenv.Record{}, err
	}
	defer t.Close()
	r, err := t.LoadRecord()
	if err != nil {
		return bootenv.Record{}, err
	}
	n, err := f(r)
	if err != nil {
		return bootenv.Record{}, err
	}
	if n.SameState(r) {
		return r, nil
	}
	if err := t.Commit(n); err != nil {
		return bootenv.Record{}, fmt.Errorf("%s: %w", t.Info.Location, err)
	}
	return n, nil
}

// view loads the record without changing it.
func (c *command) view() (bootenv.Record, bootenv.Info, error) {
	t, err := c.open()
	if err != nil {
		return bootenv.Record{}, bootenv.Info{}, err
	}
	defer t.Close()
	r, err := t.LoadRecord()
	return r, t.Info, err
}

// cmdlineParam returns the value of key= on the kernel command line ("" when
// it is missing or given twice).
func (c *command) cmdlineParam(key string) string {
	line, err := c.deps.Cmdline()
	if err != nil {
		return ""
	}
	return kcmdline.Value(line, key)
}

// commandUsage prints the usage of a command that has no text of its own:
// its lines in keel's usage (usageText) and its flags.
func commandUsage(w io.Writer, fs *flag.FlagSet, name string) {
	fmt.Fprintf(w, "usage: keel %s\n", strings.TrimPrefix(synopsis(name), "  "))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
}

// synopsis is name's entry in usageText's command list (with its
// continuation lines), or name alone when it has none.
func synopsis(name string) string {
	var out []string
	in := false
	for _, l := range strings.Split(usageText, "\n") {
		switch {
		case strings.HasPrefix(l, "  "+name+" ") || l == "  "+name:
			in = true
			out = append(out, l)
		case in && strings.HasPrefix(l, strings.Repeat(" ", 39)):
			out = append(out, l)
		default:
			in = false
		}
	}
	if len(out) == 0 {
		return name
	}
	return strings.Join(out, "\n")
}
