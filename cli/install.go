package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
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
	defer lock.release()
	// The plan (target, keys, board, policy, boot record) before the
	// source is opened: a refusal costs no download.
	p, err := c.plan(f)
	if err != nil {
		return err
	}
	defer p.close()
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
func (c *command) plan(f installFlags) (*installPlan, error) {
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
func (c *command) installFrom(f installFlags, lock *installLock, p *installPlan, arg string, guard installGuard, extra any) error {
	style := f.style
	if f.asJSON && style == progressAuto {
		style = progressJSON
	}
	prog, err := newProgress(c.stderr, style, time.Now)
	if err != nil {
		return err
	}
	lock.setTarget(lock.status.Target + ", slot " + p.slot)
	ho := source.HTTPOptions{CAFile: f.ca, Headers: f.hdr, Log: func(s string) { fmt.Fprintf(c.stderr, "keel: %s\n", s) }}
	f.limits.http(&ho)
	src, err := source.Open(c.ctx, arg, c.deps.Stdin, ho)
	if err != nil {
		return f.limits.explain(c.ctx, err)
	}
	defer src.Close()
	check := p.check
	var in source.Source = src
	if guard != nil {
		var pin func(*bundle.Bundle) error
		in, pin = guard(src)
		check = func(b *bundle.Bundle) error {
			if err := pin(b); err != nil {
				return err
			}
			return p.check(b)
		}
	}
	start := time.Now()
	o := update.Options{Trusted: p.trusted, Board: p.board.Name, Target: p.target, Active: p.active, NoLocal: f.noDelta,
		Check: check, Begin: p.begin, Progress: func(e slotwrite.Event) { prog.event(e); lock.progress(e) }}
	res, err := update.Install(c.ctx, in, o)
	err = f.limits.explain(c.ctx, err)
	if err != nil {
		if p.begun {
			return fmt.Errorf("%w\n%s", err, p.slotState(""))
		}
		return err
	}
	h := res.Bundle.Header
	tries := 0
	if !f.noTry {
		tries = f.tries
		if tries == 0 {
			tries = p.board.TrialTries()
		}
	}
	recorded, err := p.finish(h, tries)
	if err != nil {
		return fmt.Errorf("the boot record was not updated: %w\n%s", err, p.slotState(h.Version))
	}
	out := installResult{Slot: p.slot, Version: h.Version, SecurityVersion: h.SecurityVersion, Board: p.board.Name, Trial: tries,
		Fetched: res.Fetched, BundleSize: h.Size(), Blocks: res.Blocks, LocalContainer: res.LocalContainer,
		Seconds: time.Since(start).Seconds(), Record: recorded, Channel: extra}
	if f.asJSON {
		if err := printJSON(c.stdout, out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "installed version %s (security version %d) into slot %s in %.1fs: fetched %s of a %s bundle (blocks: %v)\n",
			h.Version, h.SecurityVersion, p.slot, out.Seconds, sizeText(res.Fetched), sizeText(h.Size()), res.Blocks)
		switch {
		case !recorded:
			fmt.Fprintf(c.stdout, "%s\n", p.note)
		case tries > 0:
			fmt.Fprintf(c.stdout, "slot %s is on trial for %d boots: the next boot starts it; it must run keel mark-good, or the device falls back to slot %s\n", p.slot, tries, p.activeName)
		default:
			fmt.Fprintf(c.stdout, "slot %s holds the update; start it with: keel try %s\n", p.slot, p.slot)
		}
	}
	c.drainInput(src, h.Size())
	if f.reboot && recorded && tries > 0 {
		fmt.Fprintln(c.stderr, "keel: rebooting")
		return c.deps.Reboot()
	}
	return nil
}

// installPlan is where an install goes and what it may install.
type installPlan struct {
	trusted    []manifest.PublicKey
	board      boards.Board
	slot       string // the target slot
	activeName string
	target     slotwrite.Target
	active     *slotwrite.Active
	// check refuses a bundle (downgrade, anti-rollback counter).
	check func(*bundle.Bundle) error
	// begin and finish update the boot record (nil store: an image
	// without one), as the run named token (bootenv.BeginInstall).
	store  *target
	token  string
	begun  bool
	note   string // printed when there is no record to update
	closer []func() error
	// running is the running (offline: the active) slot's manifest (nil:
	// none), counter the anti-rollback counter (-1: not known), diskID
	// the image's GPT disk GUID (offline only).
	running *manifest.Manifest
	counter int64
	diskID  string
}

func (p *installPlan) close() {
	for _, f := range p.closer {
		f()
	}
	if p.store != nil {
		p.store.Close()
	}
}

func (p *installPlan) begin(b *bundle.Bundle) error {
	if p.store == nil {
		return nil
	}
	if err := p.commit(func(r bootenv.Record) (bootenv.Record, error) {
		return bootenv.BeginInstall(r, p.slot, b.Header.Version, p.token)
	}); err != nil {
		return err
	}
	p.begun = true
	return nil
}

func (p *installPlan) finish(h *bundle.Header, tries int) (bool, error) {
	if p.store == nil {
		return false, nil
	}
	trial := bootenv.NewID()
	return true, p.commit(func(r bootenv.Record) (bootenv.Record, error) {
		return bootenv.FinishInstall(r, p.slot, bootenv.Finish{Token: p.token, Version: h.Version, SecurityVersion: h.SecurityVersion,
			Tries: tries, TrialID: trial})
	})
}

// slotState says, after the install failed once it had begun writing
// (written: the version it wrote and verified, "" if it did not), what
// the target slot is now, from the boot record read again: another run
// may have taken the slot over or finished it meanwhile, and "left
// unbootable" is said only when it is.
func (p *installPlan) slotState(written string) string {
	r, err := p.store.load()
	if err != nil {
		return fmt.Sprintf("the boot record cannot be read to say what slot %s holds (%v); `keel status` says it", p.slot, err)
	}
	s, _ := r.Slot(p.slot)
	switch {
	case r.Installing == p.slot && r.InstallToken == p.token && written != "":
		return fmt.Sprintf("slot %s holds version %s, verified, but stays unbootable until the record says so (the running slot keeps booting); run the install again to complete it", p.slot, written)
	case r.Installing == p.slot && r.InstallToken == p.token:
		return fmt.Sprintf("slot %s is left unbootable (the running slot keeps booting); run the install again to complete it", p.slot)
	case r.Installing == p.slot:
		return fmt.Sprintf("slot %s is being written by another install, which began after this one (the running slot keeps booting): it completes the install, this one stopped; see `keel status`", p.slot)
	case r.Trial == p.slot:
		return fmt.Sprintf("slot %s is on trial with version %q, armed by another install; this one stopped", p.slot, s.Version)
	}
	return fmt.Sprintf("the boot record changed during the install: slot %s is %s (version %q), installing %q; see `keel status`", p.slot, s.State, s.Version, r.Installing)
}

func (p *installPlan) commit(f func(bootenv.Record) (bootenv.Record, error)) error {
	r, err := p.store.load()
	if err != nil {
		return err
	}
	n, err := f(r)
	if err != nil {
		return err
	}
	if err := p.store.store.Commit(n); err != nil {
		return fmt.Errorf("%s: %w", p.store.info.Location, err)
	}
	return nil
}

// policy is the check every install makes: no downgrade without
// allowDowngrade (a lower version or security version than the running
// slot's), the board's compatible, and the anti-rollback counter when
// counter >= 0.
func policy(running *manifest.Manifest, allowDowngrade bool, counter int64) func(*bundle.Bundle) error {
	return func(b *bundle.Bundle) error {
		h := b.Header
		if counter >= 0 && h.SecurityVersion < uint64(counter) {
			return fmt.Errorf("%w: version %s has security version %d, below this device's anti-rollback counter %d: keel-init would refuse to boot it; ship a build with security version %d or more",
				bootenv.ErrRefused, h.Version, h.SecurityVersion, counter, counter)
		}
		if running == nil || allowDowngrade {
			return nil
		}
		if manifest.CompareVersions(h.Version, running.Version) < 0 || h.SecurityVersion < running.SecurityVersion {
			return fmt.Errorf("%w: version %s (security version %d) is older than the running version %s (security version %d); give --allow-downgrade to install it anyway",
				bootenv.ErrRefused, h.Version, h.SecurityVersion, running.Version, running.SecurityVersion)
		}
		return nil
	}
}

// slotManifest reads and verifies the manifest of the slot container in r.
func slotManifest(r io.ReaderAt, size int64, trusted []manifest.PublicKey, board string) (*manifest.Manifest, error) {
	h, err := slotimg.ReadHeader(r, size)
	if err != nil {
		return nil, err
	}
	mb, sig, err := h.ReadManifest(r, slotimg.EntryManifest)
	if err != nil {
		return nil, err
	}
	return manifest.VerifyFor(mb, sig, trusted, manifest.Expect{Compatible: board, Role: manifest.RoleSlot})
}

// pickTarget is the slot an update goes to: the first of the record's
// slots that is neither active, on trial, nor running.
func pickTarget(r bootenv.Record, running string) (string, error) {
	for _, s := range r.Slots {
		if s.Name != r.Active && s.Name != r.Trial && s.Name != running {
			return s.Name, nil
		}
	}
	return "", fmt.Errorf("%w: every slot is active, on trial or running (%s): no slot to install into", bootenv.ErrRefused, strings.Join(r.SlotNames(), ", "))
}

// planDevice plans an install on the running device: keys from keel-init,
// partitions on the boot disk, the boot record from the store keel-init
// named, the anti-rollback counter from the TPM.
func (c *command) planDevice(f installFlags) (*installPlan, error) {
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
	p := &installPlan{trusted: trusted, store: t, token: bootenv.NewID()}
	fail := func(err error) (*installPlan, error) { p.close(); return nil, err }
	r, err := t.load()
	if err != nil {
		return fail(err)
	}
	if p.slot, err = pickTarget(r, boot.slot); err != nil {
		return fail(err)
	}
	// Refused now rather than after the download.
	if _, err := bootenv.BeginInstall(r, p.slot, "check", p.token); err != nil {
		return fail(err)
	}
	p.activeName = boot.slot
	names := []string{layout.SlotPartition(boot.slot), layout.RootPartition(boot.slot), layout.SlotPartition(p.slot), layout.RootPartition(p.slot)}
	open := func(name string) (*os.File, int64, error) {
		fh, size, err := c.deps.OpenPartition(name, names)
		if err != nil {
			return nil, 0, fmt.Errorf("install: partition %s: %w", name, err)
		}
		p.closer = append(p.closer, fh.Close)
		return fh, size, nil
	}
	as, asz, err := open(names[0])
	if err != nil {
		return fail(err)
	}
	ar, arz, err := open(names[1])
	if err != nil {
		return fail(err)
	}
	ts, tsz, err := open(names[2])
	if err != nil {
		return fail(err)
	}
	tr, trz, err := open(names[3])
	if err != nil {
		return fail(err)
	}
	p.target = slotwrite.Target{Slot: ts, SlotSize: tsz, Root: tr, RootSize: trz}
	p.active = &slotwrite.Active{Slot: as, SlotSize: asz, Root: ar, RootSize: arz}
	running, err := slotManifest(as, asz, trusted, manifest.AnyBoard)
	if err != nil {
		return fail(fmt.Errorf("install: the running slot %s does not verify with the trusted keys: %w", boot.slot, err))
	}
	if f.board != "" && f.board != running.Compatible {
		return fail(usagef("install: --board %s, but the running slot is for %s", f.board, running.Compatible))
	}
	p.board = boardByName(running.Compatible)
	counter, err := c.antiRollbackFloor("the bundle's security version")
	if err != nil {
		return fail(fmt.Errorf("install: %w", err))
	}
	p.check = policy(running, f.allowDowngrade, counter)
	p.running, p.counter = running, counter
	return p, nil
}

// boardByName is the named board, or a board of that name with the
// defaults when this keel does not know it.
func boardByName(name string) boards.Board {
	if b, err := boards.Get(name); err == nil {
		return b
	}
	return boards.Board{Name: name}
}

// planOffline plans an install into a disk image: the partitions by name
// in its GPT, the boot record in its bootstate partition when it has one.
// An image without one (a UEFI board keeps its record in firmware
// variables) gets the slot written only: at its first boot keel-init
// starts a record with the newest verified slot active.
func (c *command) planOffline(f installFlags) (*installPlan, error) {
	if f.keys == "" {
		return nil, usagef("install --image: --keys TRUSTED required (offline there are no keys handed over by keel-init)")
	}
	trusted, err := readTrusted([]string{f.keys})
	if err != nil {
		return nil, err
	}
	img, err := os.OpenFile(c.g.image, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	p := &installPlan{trusted: trusted, token: bootenv.NewID(), closer: []func() error{img.Close}}
	fail := func(err error) (*installPlan, error) { p.close(); return nil, err }
	tab, err := gpt.ReadFile(img)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", c.g.image, err))
	}
	part := func(name string) (*imagePart, error) {
		gp, err := tab.Find(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.g.image, err)
		}
		return &imagePart{f: img, off: gp.Offset(), size: gp.Size()}, nil
	}
	var slots []string
	for _, gp := range tab.Partitions {
		if name, ok := strings.CutPrefix(gp.Name, "slot-"); ok && bootenv.ValidSlotName(name) {
			slots = append(slots, name)
		}
	}
	if len(slots) == 0 {
		return fail(fmt.Errorf("%s: no slot-<name> partitions: not a keel disk image", c.g.image))
	}
	// What each slot holds, verified.
	found := map[string]bootenv.Found{}
	mans := map[string]*manifest.Manifest{}
	for _, s := range slots {
		sp, err := part(layout.SlotPartition(s))
		if err != nil {
			return fail(err)
		}
		m, err := slotManifest(sp, sp.size, trusted, manifest.AnyBoard)
		switch {
		case err == nil:
			mans[s] = m
			found[s] = bootenv.Found{Verified: true, Version: m.Version, SecurityVersion: m.SecurityVersion}
		case errors.Is(err, slotimg.ErrNotSlot):
		default:
			found[s] = bootenv.Found{Bad: err.Error()}
		}
	}
	var r bootenv.Record
	if _, err := tab.Find(layout.Bootstate); err == nil {
		t, err := openImage(c.g.image)
		if err != nil {
			return fail(err)
		}
		p.store = t
		if r, err = t.load(); err != nil {
			return fail(err)
		}
		if f.slot != "" {
			return fail(usagef("install --image: --slot applies to images without a boot record; this one has one (the target is the slot neither active nor on trial)"))
		}
		if p.slot, err = pickTarget(r, ""); err != nil {
			return fail(err)
		}
		if _, err := bootenv.BeginInstall(r, p.slot, "check", p.token); err != nil {
			return fail(err)
		}
	} else {
		// No record: the one keel-init would start at the first boot.
		if r, err = bootenv.StartOver(slots, found, "offline", 0); err != nil {
			return fail(err)
		}
		p.slot = f.slot
		if p.slot == "" {
			if p.slot, err = pickTarget(r, ""); err != nil {
				return fail(err)
			}
		}
	}
	p.activeName = r.Active
	if p.slot == r.Active && p.store == nil && f.slot != "" {
		fmt.Fprintf(c.stderr, "keel: note: slot %s is the newest verified slot of the image; it is overwritten as --slot says\n", p.slot)
	}
	ts, err := part(layout.SlotPartition(p.slot))
	if err != nil {
		return fail(err)
	}
	tr, err := part(layout.RootPartition(p.slot))
	if err != nil {
		return fail(err)
	}
	p.target = slotwrite.Target{Slot: ts, SlotSize: ts.size, Root: tr, RootSize: tr.size}
	var running *manifest.Manifest
	if r.Active != "" && r.Active != p.slot {
		as, err := part(layout.SlotPartition(r.Active))
		if err != nil {
			return fail(err)
		}
		ar, err := part(layout.RootPartition(r.Active))
		if err != nil {
			return fail(err)
		}
		p.active = &slotwrite.Active{Slot: as, SlotSize: as.size, Root: ar, RootSize: ar.size}
		running = mans[r.Active]
	}
	board := f.board
	if board == "" && running != nil {
		board = running.Compatible
	}
	if board == "" {
		for _, m := range mans {
			board = m.Compatible
		}
	}
	if board == "" {
		return fail(usagef("install --image: no slot of the image names its board: give --board NAME"))
	}
	p.board = boardByName(board)
	p.check = policy(running, f.allowDowngrade, -1)
	p.running, p.counter, p.diskID = running, -1, tab.DiskGUID.String()
	if p.store == nil {
		p.note = fmt.Sprintf("the image keeps its boot record in firmware variables, not on the disk: nothing was put on trial; at its first boot keel-init starts a record with the newest verified slot (highest security version) active")
	}
	return p, nil
}

// imagePart is a partition of a disk image: a slotwrite.Device.
type imagePart struct {
	f         *os.File
	off, size int64
}

var _ slotwrite.Device = (*imagePart)(nil)

func (p *imagePart) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= p.size {
		return 0, io.EOF
	}
	if rest := p.size - off; int64(len(b)) > rest {
		n, err := p.f.ReadAt(b[:rest], p.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return p.f.ReadAt(b, p.off+off)
}

func (p *imagePart) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > p.size {
		return 0, fmt.Errorf("write of %d bytes at %d outside the %d-byte partition", len(b), off, p.size)
	}
	return p.f.WriteAt(b, p.off+off)
}

func (p *imagePart) Sync() error { return p.f.Sync() }

var (
	_ slotwrite.CacheDropper = (*imagePart)(nil)
	_ slotwrite.RangeSyncer  = (*imagePart)(nil)
)

// SyncRange writes back a range of the partition.
func (p *imagePart) SyncRange(off, n int64) error {
	return slotwrite.SyncFileRange(p.f, p.off+off, n)
}

// DropCache drops the cached pages of a range of the partition (update's
// read-back reads the medium).
func (p *imagePart) DropCache(off, n int64) {
	if off < 0 || off >= p.size {
		return
	}
	slotwrite.DropFileCache(p.f, p.off+off, min(n, p.size-off))
}
