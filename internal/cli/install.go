package cli

import (
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/update"
	"github.com/keelboot/keel/update/source"
)

const installUsage = `usage: keel install [flags] SOURCE
       keel --image DISK.img install --keys TRUSTED [flags] SOURCE

Installs an update bundle (keel bundle help) into the slot that is neither
active nor on trial, then puts it on trial for the board's tries: the next
boot starts it, and unless it marks itself good (keel mark-good) the device
falls back. SOURCE is a file, a block device (a USB stick), - (standard
input) or an http(s):// URL (streamed with Range requests: no copy of the
bundle is kept). Only the blocks the device does not already have are
fetched; a cut install is completed by running it again. One install runs
at a time: a second one says which runs (pid, source, progress) and stops,
or waits with --wait. From - (a pipe), standard input is read to its end
after a successful install (at most 1 MiB past the bundle's end, until no
byte comes for 30 s), so that the writer (curl) does not die of SIGPIPE
and fail a pipefail pipeline.

  --keys FILE          trusted public keys (default on a device: the keys
                       keel-init verified the running slot with,
                       /run/keel/trusted-keys)
  --allow-downgrade    install a version older than the running one
  --no-try             install only; start it later with keel try SLOT
  --tries N            boots the trial may take (default: the board's)
  --reboot             reboot when the install is done
  --wait               when another install runs (on this device, or into
                       this image), wait for it to finish instead of
                       refusing at once
  --progress STYLE     auto (bar on a terminal, lines otherwise), bar,
                       lines, json (one event per line), none
  --json               print the result as JSON (progress as json events
                       on standard error unless --progress says otherwise)
  --ca FILE            more CA certificates for https (PEM)
  --header 'K: V'      an HTTP header for every request (repeat); redirects
                       to another host, port or scheme do not get it (nor
                       Authorization or Cookie), and a redirect from https
                       to http is refused
  --no-delta           fetch every block (do not look for them on the device)
  --timeout D          give up after D (2h, 30m; default 0: no limit): the
                       download, the writing and the read-back together
  --min-rate N         fail an http(s) download that receives fewer than N
                       bytes/s over --min-rate-window (default 512: below
                       the slowest cellular links, GPRS at ~1.1 kB/s; 0: no
                       minimum); time spent writing does not count
  --min-rate-window D  the window of --min-rate (default 10m: a link may
                       drop out for minutes; shorter gaps are retried)
  --board NAME         (offline) the board, when no slot names it
  --slot S             (offline, image without a boot record) the target slot
`

// installResult is `keel install --json`.
type installResult struct {
	Slot            string                `json:"slot"`
	Version         string                `json:"version"`
	SecurityVersion uint64                `json:"security_version"`
	Board           string                `json:"board"`
	Trial           int                   `json:"trial_tries"`
	Fetched         int64                 `json:"fetched_bytes"`
	BundleSize      int64                 `json:"bundle_bytes"`
	Blocks          slotwrite.BlockCounts `json:"blocks"`
	LocalContainer  int64                 `json:"kernel_initrd_local_bytes"`
	Seconds         float64               `json:"seconds"`
	Record          bool                  `json:"boot_record_updated"`
	// Channel is keel update apply's decision (what the channel offered
	// and why this was chosen); left out by keel install.
	Channel any `json:"channel,omitempty"`
}

type installFlags struct {
	keys, board, slot, style, ca string
	headers                      listFlag
	allowDowngrade, noTry        bool
	reboot, asJSON, noDelta      bool
	wait                         bool
	tries                        int
	limits                       installLimits
	hdr                          http.Header
}

func (c *command) install(args []string) error {
	var f installFlags
	fs, err := c.flags("install", args, func(fs *flag.FlagSet) {
		f.define(fs)
		fs.StringVar(&f.slot, "slot", "", "target slot (offline, image without a boot record)")
		fs.BoolVar(&f.allowDowngrade, "allow-downgrade", false, "install an older version")
		fs.BoolVar(&f.noDelta, "no-delta", false, "fetch every block")
		fs.Usage = func() { fmt.Fprint(c.stderr, installUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprint(c.stderr, installUsage)
		return usagef("install takes one SOURCE (a file, a block device, - or a URL), got %d arguments", fs.NArg())
	}
	if err := c.checkInstallFlags("install", &f); err != nil {
		return err
	}
	defer c.limitInstall(f.limits)()
	// One install at a time, from the plan to the last commit.
	lock, err := c.lockFor(f, fs.Arg(0))
	if err != nil {
		return err
	}
	defer lock.Release()
	// The plan (target, keys, board, policy, boot record) before the
	// source is opened: a refusal costs no download.
	p, err := c.plan(f)
	if err != nil {
		return err
	}
	defer p.Close()
	return c.installFrom(f, lock, p, fs.Arg(0), nil, nil)
}

// define defines the flags keel install shares with keel update apply.
func (f *installFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.keys, "keys", "", "trusted public keys file")
	fs.StringVar(&f.board, "board", "", "board (offline)")
	fs.StringVar(&f.style, "progress", progressAuto, "progress: auto, bar, lines, json, none")
	fs.StringVar(&f.ca, "ca", "", "CA certificates for https (PEM)")
	fs.Var(&f.headers, "header", "HTTP header 'Name: value' (repeat)")
	fs.BoolVar(&f.noTry, "no-try", false, "do not put the slot on trial")
	fs.BoolVar(&f.reboot, "reboot", false, "reboot when done")
	fs.BoolVar(&f.wait, "wait", false, "wait for a running install instead of refusing")
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	fs.IntVar(&f.tries, "tries", 0, "boots the trial may take (default: the board's)")
	f.limits.define(fs)
}

// checkInstallFlags checks the flags an install takes and reads its
// --header values.
func (c *command) checkInstallFlags(name string, f *installFlags) error {
	if f.tries < 0 || f.tries > bootenv.MaxTries {
		return usagef("%s: --tries %d: give 1..%d", name, f.tries, bootenv.MaxTries)
	}
	if c.g.config != "" || c.g.efivars != "" {
		return usagef("%s writes the slot's partitions: run it on the device, or offline with --image DISK.img (not -c or --efivars)", name)
	}
	if err := f.limits.check(); err != nil {
		return err
	}
	f.hdr = http.Header{}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return usagef("%s: --header %q: want 'Name: value'", name, h)
		}
		f.hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return nil
}

// plan plans an install on this device, or into the disk image.
func (c *command) plan(f installFlags) (*update.Plan, error) {
	if c.g.image != "" {
		return c.planOffline(f)
	}
	return c.planDevice(f)
}

// installGuard wraps an install's source and returns a check of the
// opened bundle that runs before anything is written (keel update apply:
// the channel's metadata pins the file).
type installGuard func(source.Source) (source.Source, func(*bundle.Bundle) error)

// installFrom installs the bundle at arg (a file, a block device, - or a
// URL) as p planned, holding lock, and arms the trial; extra is printed
// in the JSON result (keel update apply's decision).
func (c *command) installFrom(f installFlags, lock *update.Lock, p *update.Plan, arg string, guard installGuard, extra any) error {
	style := f.style
	if f.asJSON && style == progressAuto {
		style = progressJSON
	}
	prog, err := newProgress(c.stderr, style, time.Now)
	if err != nil {
		return err
	}
	for _, n := range p.Notes {
		fmt.Fprintf(c.stderr, "keel: note: %s\n", n)
	}
	lock.SetTarget(lock.Status().Target + ", slot " + p.Slot)
	ho := source.HTTPOptions{CAFile: f.ca, Headers: f.hdr, Log: func(s string) { fmt.Fprintf(c.stderr, "keel: %s\n", s) }}
	f.limits.http(&ho)
	src, err := source.Open(c.ctx, arg, c.deps.Stdin, ho)
	if err != nil {
		return f.limits.explain(c.ctx, err)
	}
	defer src.Close()
	var in source.Source = src
	if guard != nil {
		var pin func(*bundle.Bundle) error
		in, pin = guard(src)
		check := p.Check
		p.Check = func(b *bundle.Bundle) error {
			if err := pin(b); err != nil {
				return err
			}
			return check(b)
		}
	}
	start := time.Now()
	res, err := p.Install(c.ctx, in, f.noDelta, func(e slotwrite.Event) { prog.event(e); lock.Progress(e) })
	err = f.limits.explain(c.ctx, err)
	if err != nil {
		if p.Begun() {
			return fmt.Errorf("%w\n%s", err, p.SlotState(""))
		}
		return err
	}
	h := res.Bundle.Header
	tries := 0
	if !f.noTry {
		tries = p.TrialTries(f.tries)
	}
	recorded, err := p.Finish(h, tries)
	if err != nil {
		return err
	}
	out := installResult{Slot: p.Slot, Version: h.Version, SecurityVersion: h.SecurityVersion, Board: p.Board.Name, Trial: tries,
		Fetched: res.Fetched, BundleSize: h.Size(), Blocks: res.Blocks, LocalContainer: res.LocalContainer,
		Seconds: time.Since(start).Seconds(), Record: recorded, Channel: extra}
	if f.asJSON {
		if err := printJSON(c.stdout, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "installed version %s (security version %d) into slot %s in %.1fs: fetched %s of a %s bundle (blocks: %v)\n",
			h.Version, h.SecurityVersion, p.Slot, out.Seconds, sizeText(res.Fetched), sizeText(h.Size()), res.Blocks)
		switch {
		case !recorded:
			fmt.Fprintf(c.stdout, "%s\n", p.Unrecorded)
		case tries > 0:
			fmt.Fprintf(c.stdout, "slot %s is on trial for %d boots: the next boot starts it; it must run keel mark-good, or the device falls back to slot %s\n", p.Slot, tries, p.Active)
		default:
			fmt.Fprintf(c.stdout, "slot %s holds the update; start it with: keel try %s\n", p.Slot, p.Slot)
		}
	}
	c.drainInput(src, h.Size())
	if f.reboot && recorded && tries > 0 {
		fmt.Fprintln(c.stderr, "keel: rebooting")
		return c.deps.Reboot()
	}
	return nil
}

// planDevice plans an install on the running device (update.PlanDevice):
// keys from keel-init, partitions on the boot disk, the boot record from
// the store keel-init named, the anti-rollback counter from the TPM.
func (c *command) planDevice(f installFlags) (*update.Plan, error) {
	boot, err := c.bootLine()
	if err != nil {
		return nil, err
	}
	if boot.slot == "" {
		return nil, usagef("install: this system was not booted by keel (no keel.slot= on the kernel command line); to write a disk image give --image DISK.img")
	}
	trusted, err := c.trustedKeys(f.keys)
	if err != nil {
		return nil, err
	}
	t, err := c.open()
	if err != nil {
		return nil, err
	}
	return update.PlanDevice(update.Device{Running: boot.slot, Trusted: trusted, Store: t, OpenPartition: c.deps.OpenPartition,
		Board: f.board, AllowDowngrade: f.allowDowngrade,
		Floor: func() (int64, error) { return c.antiRollbackFloor("the bundle's security version") }})
}

// planOffline plans an install into a disk image (update.PlanImage).
func (c *command) planOffline(f installFlags) (*update.Plan, error) {
	if f.keys == "" {
		return nil, usagef("install --image: --keys TRUSTED required (offline there are no keys handed over by keel-init)")
	}
	trusted, err := readTrusted([]string{f.keys})
	if err != nil {
		return nil, err
	}
	return update.PlanImage(update.Image{Path: c.g.image, Trusted: trusted, Board: f.board, Slot: f.slot, AllowDowngrade: f.allowDowngrade})
}
