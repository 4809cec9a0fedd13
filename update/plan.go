package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/bootstore"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/update/source"
)

// ErrRequest marks an error in what the caller asked for that the device
// contradicts (a board that is not the running slot's, a target slot on an
// image whose record chooses it): the request is wrong, not the device.
// The error's text is the message alone.
var ErrRequest = errors.New("update: the request does not fit the device")

type requestError struct{ msg string }

func (e requestError) Error() string        { return e.msg }
func (e requestError) Is(target error) bool { return target == ErrRequest }

func requestf(format string, args ...any) error {
	return requestError{fmt.Sprintf(format, args...)}
}

// Plan is an install decided before any byte of the bundle is read: where
// it goes, what it may install, and the boot record's part. PlanDevice and
// PlanImage make one; Install runs it, Finish puts the slot on trial,
// Close releases what it holds. A refusal at planning costs no download.
type Plan struct {
	// Trusted are the keys the bundle must be signed with, Board the
	// board it must be for.
	Trusted []manifest.PublicKey
	Board   boards.Board
	// Slot is the slot written; Active the active (on a device, the
	// running) slot, "" when there is none.
	Slot   string
	Active string
	// Target is Slot's partitions; Blocks the active slot's, read for the
	// blocks the bundle shares with it (nil: none).
	Target slotwrite.Target
	Blocks *slotwrite.Active
	// Check refuses a bundle (Policy).
	Check func(*bundle.Bundle) error
	// Notes are what the person should know about the plan.
	Notes []string
	// Unrecorded says, when there is no boot record to update (Finish
	// returns false), what happens instead.
	Unrecorded string
	// Running is the running (offline: the active) slot's verified
	// manifest, nil when there is none; Counter the anti-rollback counter
	// (-1: not known, offline); DiskID the image's GPT disk GUID (offline
	// only: a stable device id for keel update's rollout share).
	Running *manifest.Manifest
	Counter int64
	DiskID  string

	store  *bootstore.Store // nil: no record (an image whose record is in firmware variables)
	token  string           // this run's install token (bootenv.BeginInstall)
	begun  bool
	closer []func() error
}

// Close releases the partitions, the image and the store the plan holds.
func (p *Plan) Close() {
	for _, f := range p.closer {
		f()
	}
	p.store.Close()
}

// TrialTries is the boots a trial of the installed slot may take: n, or
// the board's when n is 0.
func (p *Plan) TrialTries(n int) int {
	if n == 0 {
		return p.Board.TrialTries()
	}
	return n
}

// Install runs the plan: Install with its keys, board, slots and policy,
// the record saying the slot is being written (bootenv.BeginInstall) just
// before the first write; noLocal and progress are Options'.
func (p *Plan) Install(ctx context.Context, src source.Source, noLocal bool, progress func(slotwrite.Event)) (*slotwrite.Result, error) {
	return Install(ctx, src, Options{Trusted: p.Trusted, Board: p.Board.Name, Target: p.Target, Active: p.Blocks, NoLocal: noLocal,
		Check: p.Check, Begin: p.begin, Progress: progress})
}

// Begun reports whether the install began writing the slot: its failure
// then left the slot unbootable (SlotState says what it is now).
func (p *Plan) Begun() bool { return p.begun }

func (p *Plan) begin(b *bundle.Bundle) error {
	if p.store == nil {
		return nil
	}
	if err := p.commit(func(r bootenv.Record) (bootenv.Record, error) {
		return bootenv.BeginInstall(r, p.Slot, b.Header.Version, p.token)
	}); err != nil {
		return err
	}
	p.begun = true
	return nil
}

// Finish records the installed version h in the boot record
// (bootenv.FinishInstall), on trial for tries boots (0: not on trial). It
// reports false when there is no record to update (Unrecorded says what
// happens then). Only the run that began writing the slot last finishes.
func (p *Plan) Finish(h *bundle.Header, tries int) (bool, error) {
	if p.store == nil {
		return false, nil
	}
	trial := bootenv.NewID()
	err := p.commit(func(r bootenv.Record) (bootenv.Record, error) {
		return bootenv.FinishInstall(r, p.Slot, bootenv.Finish{Token: p.token, Version: h.Version, SecurityVersion: h.SecurityVersion,
			Tries: tries, TrialID: trial})
	})
	if err != nil {
		return true, fmt.Errorf("the boot record was not updated: %w\n%s", err, p.SlotState(h.Version))
	}
	return true, nil
}

// SlotState says, after the install failed once it had begun writing
// (written: the version it wrote and verified, "" if it did not), what
// the target slot is now, from the boot record read again: another run
// may have taken the slot over or finished it meanwhile, and "left
// unbootable" is said only when it is.
func (p *Plan) SlotState(written string) string {
	r, err := p.store.LoadRecord()
	if err != nil {
		return fmt.Sprintf("the boot record cannot be read to say what slot %s holds (%v); `keel status` says it", p.Slot, err)
	}
	s, _ := r.Slot(p.Slot)
	switch {
	case r.Installing == p.Slot && r.InstallToken == p.token && written != "":
		return fmt.Sprintf("slot %s holds version %s, verified, but stays unbootable until the record says so (the running slot keeps booting); run the install again to complete it", p.Slot, written)
	case r.Installing == p.Slot && r.InstallToken == p.token:
		return fmt.Sprintf("slot %s is left unbootable (the running slot keeps booting); run the install again to complete it", p.Slot)
	case r.Installing == p.Slot:
		return fmt.Sprintf("slot %s is being written by another install, which began after this one (the running slot keeps booting): it completes the install, this one stopped; see `keel status`", p.Slot)
	case r.Trial == p.Slot:
		return fmt.Sprintf("slot %s is on trial with version %q, armed by another install; this one stopped", p.Slot, s.Version)
	}
	return fmt.Sprintf("the boot record changed during the install: slot %s is %s (version %q), installing %q; see `keel status`", p.Slot, s.State, s.Version, r.Installing)
}

func (p *Plan) commit(f func(bootenv.Record) (bootenv.Record, error)) error {
	r, err := p.store.LoadRecord()
	if err != nil {
		return err
	}
	n, err := f(r)
	if err != nil {
		return err
	}
	if err := p.store.Commit(n); err != nil {
		return fmt.Errorf("%s: %w", p.store.Info.Location, err)
	}
	return nil
}

// Policy is the check every install makes: no downgrade without
// allowDowngrade (a lower version or security version than the running
// slot's), and the anti-rollback counter when counter >= 0. The board is
// bundle.Open's.
func Policy(running *manifest.Manifest, allowDowngrade bool, counter int64) func(*bundle.Bundle) error {
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

// SlotManifest reads and verifies the manifest of the slot container in r
// (board: manifest.AnyBoard, or the board it must be for).
func SlotManifest(r io.ReaderAt, size int64, trusted []manifest.PublicKey, board string) (*manifest.Manifest, error) {
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

// Device is what PlanDevice plans with on the running device.
type Device struct {
	// Running is the slot the system booted (keel.slot=).
	Running string
	// Trusted are the keys keel-init verified the running slot with.
	Trusted []manifest.PublicKey
	// Store is the boot record's store; the plan owns it from here (Close
	// closes it, also when PlanDevice fails).
	Store *bootstore.Store
	// OpenPartition opens the partition name on the boot disk; names are
	// every partition the install opens (the boot disk is the one holding
	// them all).
	OpenPartition func(name string, names []string) (*os.File, int64, error)
	// Board, if set, must be the running slot's (a person's check).
	Board string
	// AllowDowngrade lets an older version than the running one in.
	AllowDowngrade bool
	// Floor reads the anti-rollback counter (-1: no TPM, not checked
	// here), after everything else was checked.
	Floor func() (int64, error)
}

// PlanDevice plans an install on the running device: the target is the
// record's (bootenv.InstallTarget, never the running slot), refused now if
// the record refuses the install (bootenv.BeginInstall); the partitions
// are the boot disk's; the running slot must verify with the trusted keys
// and names the board; the policy holds the anti-rollback counter.
func PlanDevice(d Device) (*Plan, error) {
	p := &Plan{Trusted: d.Trusted, store: d.Store, token: bootenv.NewID()}
	fail := func(err error) (*Plan, error) { p.Close(); return nil, err }
	r, err := p.store.LoadRecord()
	if err != nil {
		return fail(err)
	}
	if p.Slot, err = bootenv.InstallTarget(r, d.Running); err != nil {
		return fail(err)
	}
	// Refused now rather than after the download.
	if _, err := bootenv.BeginInstall(r, p.Slot, "check", p.token); err != nil {
		return fail(err)
	}
	p.Active = d.Running
	names := []string{layout.SlotPartition(d.Running), layout.RootPartition(d.Running), layout.SlotPartition(p.Slot), layout.RootPartition(p.Slot)}
	var files [4]*os.File
	var sizes [4]int64
	for i, name := range names {
		fh, size, err := d.OpenPartition(name, names)
		if err != nil {
			return fail(fmt.Errorf("install: partition %s: %w", name, err))
		}
		p.closer = append(p.closer, fh.Close)
		files[i], sizes[i] = fh, size
	}
	p.Target = slotwrite.Target{Slot: files[2], SlotSize: sizes[2], Root: files[3], RootSize: sizes[3]}
	p.Blocks = &slotwrite.Active{Slot: files[0], SlotSize: sizes[0], Root: files[1], RootSize: sizes[1]}
	running, err := SlotManifest(files[0], sizes[0], d.Trusted, manifest.AnyBoard)
	if err != nil {
		return fail(fmt.Errorf("install: the running slot %s does not verify with the trusted keys: %w", d.Running, err))
	}
	if d.Board != "" && d.Board != running.Compatible {
		return fail(requestf("install: --board %s, but the running slot is for %s", d.Board, running.Compatible))
	}
	p.Board = BoardByName(running.Compatible)
	counter, err := d.Floor()
	if err != nil {
		return fail(fmt.Errorf("install: %w", err))
	}
	p.Check = Policy(running, d.AllowDowngrade, counter)
	p.Running, p.Counter = running, counter
	return p, nil
}

// BoardByName is the named board, or a board of that name with the
// defaults when this keel does not know it.
func BoardByName(name string) boards.Board {
	if b, err := boards.Get(name); err == nil {
		return b
	}
	return boards.Board{Name: name}
}

// Image is what PlanImage plans with: a disk image offline.
type Image struct {
	// Path is the disk image, written in place.
	Path string
	// Trusted are the keys the image's slots and the bundle verify with.
	Trusted []manifest.PublicKey
	// Board names the board when no slot of the image does.
	Board string
	// Slot is the target slot of an image without a boot record ("":
	// the one keel-init would not choose at the first boot).
	Slot string
	// AllowDowngrade lets an older version than the active slot's in.
	AllowDowngrade bool
}

// PlanImage plans an install into a disk image: the partitions by name in
// its GPT, the boot record in its bootstate partition when it has one
// (the target is then the record's, bootenv.InstallTarget). An image
// without one (a UEFI board keeps its record in firmware variables) gets
// the slot written only: at its first boot keel-init starts a record with
// the newest verified slot active (bootenv.StartOver), and the target is
// another slot unless i.Slot names one. The anti-rollback counter is the
// device's, not checked offline.
func PlanImage(i Image) (*Plan, error) {
	img, err := os.OpenFile(i.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	p := &Plan{Trusted: i.Trusted, token: bootenv.NewID(), closer: []func() error{img.Close}}
	fail := func(err error) (*Plan, error) { p.Close(); return nil, err }
	tab, err := gpt.ReadFile(img)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", i.Path, err))
	}
	part := func(name string) (*imagePart, error) {
		gp, err := tab.Find(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", i.Path, err)
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
		return fail(fmt.Errorf("%s: no slot-<name> partitions: not a keel disk image", i.Path))
	}
	// What each slot holds, verified.
	found := map[string]bootenv.Found{}
	mans := map[string]*manifest.Manifest{}
	for _, s := range slots {
		sp, err := part(layout.SlotPartition(s))
		if err != nil {
			return fail(err)
		}
		m, err := SlotManifest(sp, sp.size, i.Trusted, manifest.AnyBoard)
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
		if p.store, err = bootstore.Open(bootstore.Location{Image: i.Path}); err != nil {
			return fail(err)
		}
		if r, err = p.store.LoadRecord(); err != nil {
			return fail(err)
		}
		if i.Slot != "" {
			return fail(requestf("install --image: --slot applies to images without a boot record; this one has one (the target is the slot neither active nor on trial)"))
		}
		if p.Slot, err = bootenv.InstallTarget(r, ""); err != nil {
			return fail(err)
		}
		if _, err := bootenv.BeginInstall(r, p.Slot, "check", p.token); err != nil {
			return fail(err)
		}
	} else {
		// No record: the one keel-init would start at the first boot.
		if r, err = bootenv.StartOver(slots, found, "offline", 0); err != nil {
			return fail(err)
		}
		p.Slot = i.Slot
		if p.Slot == "" {
			if p.Slot, err = bootenv.InstallTarget(r, ""); err != nil {
				return fail(err)
			}
		}
	}
	p.Active = r.Active
	if p.Slot == r.Active && p.store == nil && i.Slot != "" {
		p.Notes = append(p.Notes, fmt.Sprintf("slot %s is the newest verified slot of the image; it is overwritten as --slot says", p.Slot))
	}
	ts, err := part(layout.SlotPartition(p.Slot))
	if err != nil {
		return fail(err)
	}
	tr, err := part(layout.RootPartition(p.Slot))
	if err != nil {
		return fail(err)
	}
	p.Target = slotwrite.Target{Slot: ts, SlotSize: ts.size, Root: tr, RootSize: tr.size}
	var running *manifest.Manifest
	if r.Active != "" && r.Active != p.Slot {
		as, err := part(layout.SlotPartition(r.Active))
		if err != nil {
			return fail(err)
		}
		ar, err := part(layout.RootPartition(r.Active))
		if err != nil {
			return fail(err)
		}
		p.Blocks = &slotwrite.Active{Slot: as, SlotSize: as.size, Root: ar, RootSize: ar.size}
		running = mans[r.Active]
	}
	board := i.Board
	if board == "" && running != nil {
		board = running.Compatible
	}
	if board == "" {
		for _, m := range mans {
			board = m.Compatible
		}
	}
	if board == "" {
		return fail(requestf("install --image: no slot of the image names its board: give --board NAME"))
	}
	p.Board = BoardByName(board)
	p.Check = Policy(running, i.AllowDowngrade, -1)
	p.Running, p.Counter, p.DiskID = running, -1, tab.DiskGUID.String()
	if p.store == nil {
		p.Unrecorded = "the image keeps its boot record in firmware variables, not on the disk: nothing was put on trial; at its first boot keel-init starts a record with the newest verified slot (highest security version) active"
	}
	return p, nil
}

// imagePart is a partition of a disk image: a slotwrite.Device.
type imagePart struct {
	f         *os.File
	off, size int64
}

var (
	_ slotwrite.Device       = (*imagePart)(nil)
	_ slotwrite.CacheDropper = (*imagePart)(nil)
	_ slotwrite.RangeSyncer  = (*imagePart)(nil)
)

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

// SyncRange writes back a range of the partition.
func (p *imagePart) SyncRange(off, n int64) error {
	return slotwrite.SyncFileRange(p.f, p.off+off, n)
}

// DropCache drops the cached pages of a range of the partition (the
// read-back reads the medium).
func (p *imagePart) DropCache(off, n int64) {
	if off < 0 || off >= p.size {
		return
	}
	slotwrite.DropFileCache(p.f, p.off+off, min(n, p.size-off))
}
