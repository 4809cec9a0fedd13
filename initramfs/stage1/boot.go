package stage1

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// Image is a verified slot, ready to kexec.
type Image struct {
	Slot     string
	Manifest *manifest.Manifest
	// ManifestBytes are the slot's manifest entry exactly as read (and
	// verified): what is measured into PCR 9.
	ManifestBytes []byte
	Kernel        io.ReaderAt // handed to kexec (a memfd on a device)
	Initrd        io.ReaderAt
}

// SlotLoader reads a slot and checks its kernel and initrd against its
// manifest. An error says what is wrong; it marks the slot bad.
type SlotLoader interface {
	LoadSlot(ctx context.Context, slot string) (*Image, error)
}

// Kexecer boots an image with a command line. A real one returns only on
// failure, with an error; nil means the image took over.
type Kexecer interface {
	Kexec(ctx context.Context, img *Image, cmdline string, h Handoff) error
}

// Handoff is what a Kexecer passes on besides the image and command line.
type Handoff struct {
	// EventLog is the measurement event log (JSON lines) as the slot sees
	// it after the handoff, separator included; nil when unmeasured. A
	// real Kexecer hands it to the slot in the initrd
	// (keel/eventlog.jsonl).
	EventLog []byte
	// TrustedKeys is the trusted-keys file the slot was verified with
	// (Config.TrustedKeys), measured or not. A real Kexecer hands it to
	// the slot in the initrd (keel/trusted-keys), for the OS's
	// layout.TrustedKeysRunPath.
	TrustedKeys []byte
	// TrialID names the trial on a trial's boot (bootenv.Record.TrialID;
	// "" otherwise, or when the record has none). A real Kexecer hands
	// it to the slot in the initrd (keel/trial-id): stage 2's data area
	// keeps what this trial wrote and copies the running slot's area at
	// the first boot of a new trial. Not on the command line: PCR 8 would
	// measure it.
	TrialID string
	// Crash holds the first lines of the previous boot's kernel crash
	// report, as pstore kept it (EndSources; nil when there was none). A
	// real Kexecer hands it to the slot in the initrd (keel/last-crash.txt),
	// for keel events: keel-init cleared the pstore records.
	Crash []byte
	// Separator, if set, runs right before the jump (after everything that
	// can fail): it extends the handoff separator. An error aborts the
	// kexec (the slot fails).
	Separator func() error
}

// Measurer measures the boot into the TPM and keeps the anti-rollback
// counter. A nil Measurer in Config means no TPM: the boot is unmeasured.
type Measurer interface {
	// Measure extends PCR 9 with the image (manifest bytes, kernel and
	// initrd digests, verity root hash) and PCR 8 with the slot, the
	// exact kexec command line and the boot mode.
	Measure(img *Image, d bootenv.Decision, cmdline string) error
	// Separator extends the handoff separator into PCR 8.
	Separator() error
	// Cap extends PCR 8 and 9 with a cap event after a failed measurement,
	// so the unmeasured boot can never reproduce a measured one's values.
	Cap() error
	// EventLog is the log of every measurement so far plus the separator
	// that Separator will extend: what the slot replays after the jump.
	EventLog() []byte
	// MinSecurityVersion is the anti-rollback counter: a slot whose
	// manifest security version is below it is refused.
	MinSecurityVersion() (uint64, error)
	// Advance raises the anti-rollback counter to at least v (never
	// lowers it). Boot calls it only for a normal boot (the committed
	// active slot), with the security version of its verified manifest,
	// before Measure: the counter can be written only while PCR 8 is all
	// zero (package tpm).
	Advance(v uint64) error
	// Lock write-locks the anti-rollback counter until the next TPM reset
	// (and shuts the platform hierarchy), so that the OS can neither
	// raise nor delete it. Boot calls it before every measurement and
	// kexec, after any Advance.
	Lock() error
}

// Logf prints one line to the console.
type Logf = func(format string, args ...any)

// EndSources reads, at a boot's start, what the hardware and the last
// kernel left about how the boot before ended: the watchdog's boot
// status, a pstore crash record, whether a kexec started keel-init's
// kernel (docs/DESIGN.md section 3.1). What it reads is unauthenticated:
// it only decides whether a trial's try was used.
type EndSources interface {
	// Read returns the evidence and, when pstore kept a crash, the first
	// lines of its report. It clears what it read (the pstore records),
	// so that nothing is counted twice: a crash record it could not clear
	// is left out of the evidence (it would be counted again at every
	// boot), its lines still returned.
	Read(logf Logf) (ev bootenv.Evidence, crash []string)
}

// Config is what Boot needs to know about the board.
type Config struct {
	// Slots are the board's slot names, in order.
	Slots []string
	// Policy is the board's decision policy (how many unconfirmed boots
	// of a good slot in a row before falling back, how many boots of a
	// trial in a row may end without using their try).
	Policy bootenv.Policy
	// Ends reads how the previous boot ended (docs/DESIGN.md section
	// 3.1); nil: no source, so an end the record does not explain is
	// unknown and uses a trial's try.
	Ends EndSources
	// Store names the store for stage 2 and the OS (keel.store=).
	Store cmdline.Store
	// Measurer measures the boot and enforces anti-rollback; nil: no TPM.
	Measurer Measurer
	// TPMRequired makes a TPM failure (none, unreadable counter, failed
	// measurement) a failure of the slot; otherwise it is logged and the
	// slot boots unmeasured.
	TPMRequired bool
	// Recoverer reinstalls a slot from the recovery seed when the decision
	// is recovery; nil: no recovery, the boot stops.
	Recoverer Recoverer
	// Now gives the time recorded for a recovery; nil: time.Now.
	Now func() time.Time
	// TrustedKeys is the trusted-keys file exactly as read (the keys the
	// SlotLoader verifies with): every kexec hands it to the slot's OS.
	TrustedKeys []byte
	// NewID draws an id (bootenv.ValidID) for a trial the record holds
	// without one (armed by an older keel, or imported from another boot
	// loader's env): the decision that boots it names it, so that its
	// later boots keep their data area. nil, or an error: the trial
	// boots unnamed and its stage 2 falls back to the root hash.
	NewID func() (string, error)
}

// SeedInfo is what a verified recovery seed installs.
type SeedInfo struct {
	Version         string
	SecurityVersion uint64
}

// Recoverer is the recovery seed and the slots it can rewrite.
type Recoverer interface {
	// Verify checks the seed (signature, digests, root tree) and writes
	// nothing.
	Verify(ctx context.Context) (SeedInfo, error)
	// Reinstall rewrites slot from the verified seed, streaming, and
	// verifies it after the write.
	Reinstall(ctx context.Context, slot string) error
	// WipeData re-creates the empty data filesystem (factory reset).
	WipeData(ctx context.Context) error
}

// ErrRetry: the boot failed with an environmental error (a slow disk, an
// I/O error, no memory for kexec, a failed reboot): nothing was marked bad
// and the caller reboots to try again. The record counts such boots.
const ErrRetry = bootError("environmental error, retry after a reboot")

// IsEnvironmental reports whether err is an environmental error rather than
// an integrity failure (header, signature, digest, verity, rollback): an
// error that says so (an Environmental() bool method, as the device glue's
// timeouts and kexec's reboot failure have), or an I/O, memory, busy or
// time-out errno. Only integrity failures mark a slot bad.
func IsEnvironmental(err error) bool {
	var e interface{ Environmental() bool }
	if errors.As(err, &e) && e.Environmental() {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.ENOMEM, syscall.EBUSY, syscall.EAGAIN, syscall.ETIMEDOUT, syscall.EINTR, syscall.ENXIO} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// Environmental marks err as environmental (see IsEnvironmental).
func Environmental(err error) error {
	if err == nil {
		return nil
	}
	return environmentalError{err}
}

type environmentalError struct{ err error }

func (e environmentalError) Error() string       { return e.err.Error() }
func (e environmentalError) Unwrap() error       { return e.err }
func (e environmentalError) Environmental() bool { return true }

type bootError string

func (e bootError) Error() string { return string(e) }

// errNoBootableSlot: every slot failed or none is good; the decision is
// recovery.
const errNoBootableSlot = bootError("no bootable slot")

// IsNoBootableSlot reports whether Boot stopped because no slot can boot.
func IsNoBootableSlot(err error) bool { return errors.Is(err, errNoBootableSlot) }

// Boot runs stage 1's decision loop: decide, commit, load, kexec; on a
// failure mark the slot bad and decide again. It returns only when it
// could not hand over: with an error for which IsNoBootableSlot is true
// (and the final record, for the console) or a store error; or with nil
// when a Kexecer returns nil (a fake that "booted").
func Boot(ctx context.Context, cfg Config, store bootenv.Store, loader SlotLoader, kx Kexecer, logf Logf) (bootenv.Record, error) {
	r, verified, err := loadOrInit(ctx, cfg, store, loader, logf)
	if err != nil {
		return r, err
	}
	// The record is unauthenticated: only the board's slots are considered.
	if n, notes := bootenv.Restrict(r, cfg.Slots); len(notes) > 0 {
		for _, note := range notes {
			logf("warning: %s", note)
		}
		if err := store.Commit(n); err != nil {
			return r, fmt.Errorf("dropping slots the board does not have: %w", err)
		}
		r = n
	}
	// How the boot before this one ended: settled into the record the
	// first decision commits (a trial's try back for a power cut).
	var crash []byte
	r, crash = settleEnd(cfg, r, logf)
	recovered := false
	avoid := map[string]bool{} // slots that failed with an environmental error in this boot
	// failed is the slot the previous attempt of this boot could not hand
	// over, and why: the next decision, a fallback, records it.
	var failed struct{ slot, why string }
	for attempt := 0; attempt <= len(r.Slots)+2; attempt++ {
		d, n, ok := bootenv.Decide(r, cfg.Policy, avoid)
		if !ok {
			return r, fmt.Errorf("%w: every bootable slot failed with an environmental error in this boot (%s)", ErrRetry, r.Last.Reason)
		}
		if recovered && !d.Recovery() {
			// The slot recovery just reinstalled: measured as recovery.
			d.Mode = bootenv.ModeRecovery
			d.Reason = bootenv.Text("reinstalled by recovery: " + d.Reason)
			n.Last = bootenv.Outcome{Slot: d.Slot, Mode: d.Mode, Reason: d.Reason}
		} else if attempt > 0 && d.Mode == bootenv.ModeNormal {
			// The preferred slot failed in this boot: say so.
			d.Mode = bootenv.ModeFallback
			d.Reason = bootenv.Text("fallback after a failed slot: " + d.Reason)
			n.Last = bootenv.Outcome{Slot: d.Slot, Mode: d.Mode, Reason: d.Reason}
		}
		if failed.slot != "" {
			// Kept in the record until the next fallback, for keel status.
			n = bootenv.WithFallback(n, d, failed.slot, failed.why)
			failed.slot = ""
		}
		if d.Mode == bootenv.ModeTrial && n.TrialID == "" {
			n = nameTrial(cfg, n, logf)
		}
		// Count the boot before anything can fail: a crash from here on
		// uses up the try.
		if err := store.Commit(n); err != nil {
			return r, fmt.Errorf("committing the boot decision: %w", err)
		}
		r = n
		logf("decision: %s (mode %s): %s (generation %d)", d, d.Mode, d.Reason, r.Generation)
		if d.Recovery() {
			why := strings.TrimPrefix(d.Reason, "no bootable slot: ")
			if cfg.Recoverer == nil || recovered {
				return r, fmt.Errorf("%w: %s", errNoBootableSlot, why)
			}
			recovered = true
			n, err := recoverSlot(ctx, cfg, store, r, d.Reason, logf)
			if err != nil {
				// A recovery that cannot run must not stop a device that
				// still has a good slot: drop the request (and an
				// interrupted reinstall) with the reason, and boot it.
				if n.HasGood() {
					if a, aerr := bootenv.AbandonRecovery(n, now(cfg).UTC().Format(time.RFC3339), oneLine(err.Error())); aerr == nil {
						if cerr := store.Commit(a); cerr != nil {
							return n, fmt.Errorf("recording the failed recovery: %w", cerr)
						}
						logf("RECOVERY FAILED: %v; request dropped, booting a good slot", err)
						r = a
						continue
					}
				}
				return n, fmt.Errorf("%w: %s; RECOVERY FAILED: %v", errNoBootableSlot, why, err)
			}
			r = n
			continue
		}
		img, err := verified[d.Slot], error(nil)
		delete(verified, d.Slot)
		if img == nil {
			img, err = safeLoad(ctx, loader, d.Slot)
		}
		if err == nil {
			err = checkRollback(cfg, img, logf)
		}
		if err == nil {
			if n, changed := withSlotInfo(r, img); changed {
				if cerr := store.Commit(n); cerr != nil {
					logf("warning: recording slot %s's version: %v", d.Slot, cerr)
				} else {
					r = n
				}
			}
			line := Cmdline(img, d, cfg.Store)
			// The counter before the measurement: its write policy
			// holds only while PCR 8 is all zero.
			counterHandoff(cfg, img, d, logf)
			var h Handoff
			if line, h, err = measure(cfg, img, d, line, logf); err == nil {
				h.TrustedKeys = cfg.TrustedKeys
				if d.Mode == bootenv.ModeTrial {
					h.TrialID = r.TrialID
				}
				h.Crash = crash
				logf("kexec slot %s (version %s): %s", d.Slot, img.Manifest.Version, line)
				err = safeKexec(ctx, kx, img, line, h)
				if err == nil {
					return r, nil // handed over (only fakes return; a real kexec does not)
				}
			}
		}
		logf("slot %s failed: %v", d.Slot, err)
		if IsEnvironmental(err) {
			// Not the slot's fault: never marked bad. Reboot to retry a
			// few times, then try the other slots in the same boot.
			n, nerr := bootenv.NoteTransient(r, d.Slot, d.Mode, err.Error())
			if nerr != nil {
				return r, nerr
			}
			if err := store.Commit(n); err != nil {
				return r, fmt.Errorf("recording the environmental error of slot %s: %w", d.Slot, err)
			}
			r = n
			if r.Transient < bootenv.MaxTransient {
				return r, fmt.Errorf("%w: slot %s: environmental error %d of %d: %v", ErrRetry, d.Slot, r.Transient, bootenv.MaxTransient, err)
			}
			avoid[d.Slot] = true
			failed.slot, failed.why = d.Slot, fmt.Sprintf("slot %s: environmental error (%d boots in a row, not marked bad): %s", d.Slot, r.Transient, oneLine(err.Error()))
			continue
		}
		failed.slot, failed.why = d.Slot, fmt.Sprintf("slot %s failed: %s", d.Slot, oneLine(err.Error()))
		n, merr := bootenv.MarkBad(r, d.Slot, oneLine(err.Error()))
		if merr != nil {
			return r, merr
		}
		if err := store.Commit(n); err != nil {
			return r, fmt.Errorf("marking slot %s bad: %w", d.Slot, err)
		}
		r = n
	}
	return r, fmt.Errorf("%w: gave up after %d attempts", errNoBootableSlot, len(r.Slots)+2)
}

// settleEnd reads how the boot before ended (cfg.Ends) and settles it
// into r (bootenv.Classify, bootenv.WithEnd), uncommitted: the first
// decision's commit carries it, so that a power cut before it changes
// nothing. It prints KEEL-END (the VM tests read it) and returns the
// crash report's lines for the slot's OS.
func settleEnd(cfg Config, r bootenv.Record, logf Logf) (bootenv.Record, []byte) {
	var ev bootenv.Evidence
	var lines []string
	if cfg.Ends != nil {
		ev, lines = safeRead(cfg.Ends, logf)
	}
	e := bootenv.Classify(r, ev)
	n := bootenv.WithEnd(r, e, cfg.Policy)
	if !e.IsZero() {
		logf("KEEL-END %s: the last boot (slot %s, mode %s): %s", n.LastEnd.How, n.LastEnd.Slot, n.LastEnd.Mode, n.LastEnd.Detail)
	}
	var crash []byte
	if len(lines) > 0 {
		crash = []byte(strings.Join(lines, "\n") + "\n")
	}
	return n, crash
}

// safeRead is cfg.Ends.Read: a panic in it is reported and reads as no
// evidence (PID 1 never panics).
func safeRead(s EndSources, logf Logf) (ev bootenv.Evidence, lines []string) {
	defer func() {
		if p := recover(); p != nil {
			logf("bug: reading how the last boot ended panicked: %v", p)
			ev, lines = bootenv.Evidence{}, nil
		}
	}()
	return s.Read(logf)
}

// nameTrial names the trial n boots when it has no id (armed by a keel
// older than trial ids, or imported): with cfg.NewID's id, committed with
// the decision, so that every later boot of the trial hands the same id to
// stage 2. Without one the trial boots unnamed (stage 2 falls back to the
// slot's root hash, as older keels did).
func nameTrial(cfg Config, n bootenv.Record, logf Logf) bootenv.Record {
	if cfg.NewID == nil {
		return n
	}
	id, err := cfg.NewID()
	if err == nil && !bootenv.ValidID(id) {
		err = fmt.Errorf("%.70q is not an id", id)
	}
	if err != nil {
		logf("warning: the trial of slot %s has no id and none could be drawn (%v): its data area is named by its root hash", n.Trial, err)
		return n
	}
	logf("the trial of slot %s was armed without an id (by an older keel): named %s", n.Trial, id)
	return bootenv.WithTrialID(n, id)
}

// recoverSlot reinstalls a slot from the seed: it verifies the seed
// (nothing is written if it does not verify, or if its security version is
// below the anti-rollback counter), records which slot it rewrites before
// the first byte (a power cut resumes at the next boot), wipes data on a
// factory reset, rewrites and verifies the slot, and records it good.
func recoverSlot(ctx context.Context, cfg Config, store bootenv.Store, r bootenv.Record, reason string, logf Logf) (bootenv.Record, error) {
	rec := cfg.Recoverer
	logf("recovery: %s", reason)
	info, err := safeCall(func() (SeedInfo, error) { return rec.Verify(ctx) })
	if err != nil {
		logf("RECOVERY SEED DOES NOT VERIFY: %v; nothing was written", err)
		return r, fmt.Errorf("the recovery seed does not verify: %w", err)
	}
	if cfg.Measurer != nil {
		if min, err := cfg.Measurer.MinSecurityVersion(); err == nil && info.SecurityVersion < min {
			return r, fmt.Errorf("the recovery seed's security version %d is below the anti-rollback counter %d", info.SecurityVersion, min)
		}
	}
	slot := reinstallTarget(r, cfg.Slots)
	factory := r.FactoryReset
	n, err := bootenv.BeginReinstall(r, slot, strings.TrimPrefix(reason, "recovery requested: "))
	if err != nil {
		return r, err
	}
	if err := store.Commit(n); err != nil {
		return r, fmt.Errorf("recording the reinstall of slot %s: %w", slot, err)
	}
	r = n
	if factory {
		logf("factory reset: re-creating the data filesystem")
		if _, err := safeCall(func() (struct{}, error) { return struct{}{}, rec.WipeData(ctx) }); err != nil {
			return r, fmt.Errorf("factory reset: %w", err)
		}
	}
	logf("reinstalling slot %s from the seed (version %s)", slot, info.Version)
	if _, err := safeCall(func() (struct{}, error) { return struct{}{}, rec.Reinstall(ctx, slot) }); err != nil {
		return r, fmt.Errorf("reinstalling slot %s: %w", slot, err)
	}
	why := strings.TrimPrefix(reason, "recovery requested: ")
	if factory {
		why = "factory reset"
	}
	n, err = bootenv.FinishReinstall(r, slot, info.Version, info.SecurityVersion, now(cfg).UTC().Format(time.RFC3339), why)
	if err != nil {
		return r, err
	}
	if err := store.Commit(n); err != nil {
		return r, fmt.Errorf("recording the reinstalled slot %s: %w", slot, err)
	}
	logf("KEEL-RECOVERED slot %s reinstalled (version %s)", slot, info.Version)
	return n, nil
}

// reinstallTarget is the slot recovery rewrites: the one being
// reinstalled, else the first slot that is not good (the one that failed,
// or was never installed), else (recovery asked for while every slot is
// good) the first that is not active: never the last good slot.
func reinstallTarget(r bootenv.Record, slots []string) string {
	if r.Reinstalling != "" {
		return r.Reinstalling
	}
	for _, name := range slots {
		if s, ok := r.Slot(name); !ok || s.State != bootenv.StateGood {
			return name
		}
	}
	for _, name := range slots {
		if name != r.Active {
			return name
		}
	}
	return slots[0]
}

// now is the clock recovery records times with.
func now(cfg Config) time.Time {
	if cfg.Now != nil {
		return cfg.Now()
	}
	return time.Now()
}

func safeCall[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bug: %v", p)
		}
	}()
	return f()
}

// loadOrInit loads the record. With no record (a new device, or one whose
// NVRAM was reset) or an unreadable one it starts a new record
// (bootenv.StartOver): every slot is verified and checked against the
// anti-rollback counter; every slot that passes is good and the one with
// the highest security version active; those that hold something that
// does not verify (or that the counter refuses) are bad with the reason;
// those that hold no slot image stay empty; the record keeps why it started
// over. Images verified here are returned for reuse.
func loadOrInit(ctx context.Context, cfg Config, store bootenv.Store, loader SlotLoader, logf Logf) (bootenv.Record, map[string]*Image, error) {
	r, err := store.Load()
	var why string
	switch {
	case err == nil:
		return r, nil, nil
	case errors.Is(err, bootenv.ErrNoState):
		why = "no boot state"
		logf("no boot state yet: initialising")
	case errors.Is(err, bootenv.ErrCorrupt):
		why = "boot state unreadable (" + oneLine(err.Error()) + ")"
		logf("boot state unreadable (%v): starting over", err)
	default:
		return r, nil, fmt.Errorf("reading the boot state: %w", err)
	}
	verified := map[string]*Image{}
	found := map[string]bootenv.Found{}
	var transient []string
	for _, s := range cfg.Slots {
		img, lerr := safeLoad(ctx, loader, s)
		if errors.Is(lerr, slotimg.ErrNotSlot) {
			logf("slot %s is empty: %v", s, lerr)
			continue // left empty: nothing was ever installed there
		}
		if lerr == nil {
			// A slot the anti-rollback counter refuses is no candidate:
			// starting over must not pick it, nor leave it "good".
			lerr = checkRollback(cfg, img, logf)
		}
		if IsEnvironmental(lerr) {
			// Not the slot's fault: not bad; left out of this start.
			logf("slot %s could not be read: %v", s, lerr)
			transient = append(transient, s)
			continue
		}
		if lerr != nil {
			logf("slot %s does not verify: %v", s, lerr)
			found[s] = bootenv.Found{Bad: lerr.Error()}
			continue
		}
		verified[s] = img
		found[s] = bootenv.Found{Verified: true, Version: img.Manifest.Version, SecurityVersion: img.Manifest.SecurityVersion}
	}
	if len(verified) == 0 && len(transient) > 0 {
		return r, nil, fmt.Errorf("%w: starting over: no slot verifies and %s could not be read", ErrRetry, strings.Join(transient, ", "))
	}
	n, err := bootenv.StartOver(cfg.Slots, found, now(cfg).UTC().Format(time.RFC3339)+" "+why+": started over", 0)
	if err != nil {
		return r, nil, err
	}
	if err := store.Commit(n); err != nil {
		return r, nil, fmt.Errorf("writing the initial boot state: %w", err)
	}
	logf("initialised slots %s, active %s (the highest security version that verifies; every verified slot is good)", strings.Join(cfg.Slots, ","), cmp.Or(n.Active, "none"))
	return n, verified, nil
}

// checkRollback refuses an image whose security version is below the
// anti-rollback counter.
func checkRollback(cfg Config, img *Image, logf Logf) error {
	if cfg.Measurer == nil {
		if cfg.TPMRequired {
			return Environmental(errors.New("the board has a TPM and there is none: cannot check the anti-rollback counter"))
		}
		return nil
	}
	min, err := cfg.Measurer.MinSecurityVersion()
	if err != nil {
		if cfg.TPMRequired {
			// The TPM's fault, not the slot's: retried, never marked bad.
			return Environmental(fmt.Errorf("reading the anti-rollback counter: %w", err))
		}
		logf("warning: reading the anti-rollback counter: %v: rollback not enforced", err)
		return nil
	}
	if sv := img.Manifest.SecurityVersion; sv < min {
		return fmt.Errorf("rollback refused: security version %d is below the anti-rollback counter %d", sv, min)
	}
	return nil
}

// counterHandoff is the anti-rollback counter's part of a handoff. On a
// normal boot (the active slot, good: committed by the OS with keel
// mark-good, or chosen by keel-init when it started a new record) it
// advances the counter to the slot's verified security version: that
// commit is the OS's request, and the record, unauthenticated, can only
// name a slot whose signed manifest keel-init has just verified. A trial,
// fallback or recovery boot (a reinstall, a factory reset) never advances
// it. Then, whatever the mode, it write-locks the counter. Boot calls it
// before Measure: the counter's write policy needs PCR 8 all zero, which
// keel-init's first measurement ends, so from then until the next TPM
// reset (a reboot, which runs keel-init again) nobody can change it, and
// the lock also holds should a failing TPM leave PCR 8 at zero. A failure
// is logged and the boot goes on: the counter keeps its value, and an
// unlocked one is reported.
func counterHandoff(cfg Config, img *Image, d bootenv.Decision, logf Logf) {
	m := cfg.Measurer
	if m == nil {
		return
	}
	if d.Mode == bootenv.ModeNormal {
		if err := m.Advance(img.Manifest.SecurityVersion); err != nil {
			logf("warning: advancing the anti-rollback counter to slot %s's security version %d: %v", img.Slot, img.Manifest.SecurityVersion, err)
		}
	}
	if err := m.Lock(); err != nil {
		logf("WARNING: the anti-rollback counter is not write-locked for this boot: %v", err)
	}
}

// measure measures the boot of img with the command line. It returns the
// command line to hand over (with Unmeasured added when the boot is not
// measured) and the handoff. An error (only when the board requires a
// TPM) fails the slot.
func measure(cfg Config, img *Image, d bootenv.Decision, line string, logf Logf) (string, Handoff, error) {
	m := cfg.Measurer
	if m == nil {
		if cfg.TPMRequired {
			return line, Handoff{}, Environmental(errors.New("the board has a TPM and there is none: cannot measure the boot"))
		}
		logf("no TPM: booting slot %s unmeasured", img.Slot)
		return line + " " + cmdline.Unmeasured, Handoff{}, nil
	}
	if err := m.Measure(img, d, line); err != nil {
		// Whatever was extended, cap PCR 8 and 9: this boot must never
		// show a measured boot's values.
		if cerr := m.Cap(); cerr != nil {
			logf("warning: capping PCR 8/9: %v", cerr)
		}
		if cfg.TPMRequired {
			return line, Handoff{}, Environmental(fmt.Errorf("measuring the boot: %w", err))
		}
		logf("warning: measuring the boot: %v: PCR 8/9 capped, booting slot %s unmeasured", err, img.Slot)
		return line + " " + cmdline.Unmeasured, Handoff{}, nil
	}
	logf("measured slot %s into PCR 8/9 (mode %s)", img.Slot, d.Mode)
	sep := func() error {
		if err := m.Separator(); err != nil {
			if cfg.TPMRequired {
				return Environmental(fmt.Errorf("extending the handoff separator: %w", err))
			}
			logf("warning: extending the handoff separator: %v", err)
		}
		return nil
	}
	return line, Handoff{EventLog: m.EventLog(), Separator: sep}, nil
}

func withSlotInfo(r bootenv.Record, img *Image) (bootenv.Record, bool) {
	s, ok := r.Slot(img.Slot)
	if !ok || (s.Version == img.Manifest.Version && s.SecurityVersion == img.Manifest.SecurityVersion) {
		return r, false
	}
	n, err := bootenv.SetSlotInfo(r, img.Slot, img.Manifest.Version, img.Manifest.SecurityVersion)
	return n, err == nil
}

// Cmdline is the slot kernel's command line: the manifest's, then what
// stage 2 and the OS need to know from keel (package format/cmdline).
func Cmdline(img *Image, d bootenv.Decision, store cmdline.Store) string {
	return cmdline.ForManifest(img.Manifest, d.Slot, string(d.Mode), store)
}

func safeLoad(ctx context.Context, l SlotLoader, slot string) (img *Image, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bug: loading slot %s panicked: %v\n%s", slot, p, debug.Stack())
		}
	}()
	img, err = l.LoadSlot(ctx, slot)
	if err == nil && (img == nil || img.Manifest == nil) {
		err = errors.New("loader returned no image")
	}
	return img, err
}

func safeKexec(ctx context.Context, kx Kexecer, img *Image, line string, h Handoff) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bug: kexec panicked: %v", p)
		}
	}()
	return kx.Kexec(ctx, img, line, h)
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
