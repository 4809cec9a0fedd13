package bootenv

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// DefaultSlots returns the slot names used when none are given: a and b.
func DefaultSlots() []string { return []string{"a", "b"} }

// Init returns a new record: every slot empty but active, which is good.
// An empty active means no slot is known good (all empty): the next
// decision is recovery. The generation starts at 1; use InitFrom to
// re-initialise over an existing record and keep the generation increasing.
func Init(slots []string, active string) (Record, error) {
	return InitFrom(Record{}, slots, active)
}

// InitFrom is Init for a device that already has a record (possibly
// corrupt): the new record's generation continues from prev's.
func InitFrom(prev Record, slots []string, active string) (Record, error) {
	if len(slots) == 0 {
		slots = DefaultSlots()
	}
	r := Record{Generation: prev.Generation + 1}
	for _, name := range slots {
		r.Slots = append(r.Slots, Slot{Name: name, State: StateEmpty})
	}
	if active != "" {
		i := r.index(active)
		if i < 0 {
			return Record{}, fmt.Errorf("%w: active slot %q is not one of %s", ErrRefused, active, strings.Join(slots, ","))
		}
		r.Slots[i].State = StateGood
		r.Active = active
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Found is what keel-init found in one slot when it starts a new record.
type Found struct {
	// Verified: the slot verifies (signature, digests) and the
	// anti-rollback counter allows it; Version and SecurityVersion are its
	// manifest's.
	Verified        bool
	Version         string
	SecurityVersion uint64
	// Bad, if not empty, says why the slot holds something that does not
	// verify (or that the counter refuses). Neither: the slot is empty.
	Bad string
}

// StartOver builds a new record from what keel-init found in the slots,
// for a device whose record is missing or unreadable: every verified slot
// is good (with its version), the newest of them active — the highest
// security version, then the first in slot order (versions are free text,
// not ordered) — slots that do not verify are bad with the reason, the
// rest empty. why is kept in the record. prevGeneration continues the
// count when the old record's generation is known.
func StartOver(slots []string, found map[string]Found, why string, prevGeneration uint64) (Record, error) {
	r := Record{Generation: min(prevGeneration, MaxGeneration-1) + 1}
	best := -1
	for i, name := range slots {
		f := found[name]
		s := Slot{Name: name, State: StateEmpty}
		switch {
		case f.Verified:
			if strings.ContainsAny(f.Version, "\x00\n\\") || len(f.Version) > MaxText {
				f.Version = oneLine(f.Version)
			}
			s.State, s.Version, s.SecurityVersion = StateGood, f.Version, f.SecurityVersion
			if best < 0 || f.SecurityVersion > r.Slots[best].SecurityVersion {
				best = i
			}
		case f.Bad != "":
			s.State, s.Reason = StateBad, oneLine(f.Bad)
		}
		r.Slots = append(r.Slots, s)
	}
	if best >= 0 {
		r.Active = slots[best]
	}
	r.StartedOver = oneLine(why)
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Decision is the outcome of Select: the slot to boot (with the mode and the
// reason), or recovery.
type Decision struct {
	Slot   string `json:"slot,omitempty"`
	Mode   Mode   `json:"mode"`
	Reason string `json:"reason"`
}

// Recovery reports whether the decision is to boot recovery (rather than
// a slot; the slot recovery has just reinstalled boots with a slot and mode
// recovery).
func (d Decision) Recovery() bool { return d.Mode == ModeRecovery && d.Slot == "" }

func (d Decision) String() string {
	if d.Recovery() {
		return "recovery"
	}
	return d.Slot
}

// Policy is what a board decides about boot decisions.
type Policy struct {
	// MaxUnconfirmed is how many boots in a row a good slot may be handed
	// over without the OS confirming it (keel mark-good, keel boot-ok)
	// before the decision falls back to another good slot, then recovery;
	// 0 means DefaultMaxUnconfirmed.
	MaxUnconfirmed int
	// MaxUncounted is how many boots in a row of one trial may end
	// without using their try (a power loss, a kexec: WithEnd) before
	// such an end uses it as well; 0 means DefaultMaxUncounted.
	MaxUncounted int
}

// DefaultMaxUnconfirmed is Policy.MaxUnconfirmed's default.
const DefaultMaxUnconfirmed = 3

func (p Policy) maxUnconfirmed() int {
	if p.MaxUnconfirmed <= 0 {
		return DefaultMaxUnconfirmed
	}
	return p.MaxUnconfirmed
}

// Select is the boot-time decision, a pure function of the record, with
// the default Policy. It returns which slot to boot (or recovery) and the
// new record, which the caller commits before it hands control to the
// slot:
//
//  1. a pending recovery request (or reinstall) boots recovery;
//  2. the slot on trial boots if it has tries left, and loses one; with no
//     tries left it becomes bad;
//  3. otherwise the active good slot boots (mode fallback if a trial just
//     ran out), unless it was handed over MaxUnconfirmed times in a row
//     without the OS confirming it;
//  4. otherwise another good slot that has not used up its unconfirmed
//     boots boots and becomes active (fallback);
//  5. otherwise recovery: no bootable slot.
//
// A good slot never loses tries or its state here: a power cut or a
// user's reboot cannot push a healthy device back to an older slot. Each
// boot of a good slot counts as unconfirmed until the OS confirms it.
func Select(r Record) (Decision, Record) {
	d, n, _ := Decide(r, Policy{}, nil)
	return d, n
}

// SelectAvoiding is Decide with the default Policy.
func SelectAvoiding(r Record, avoid map[string]bool) (Decision, Record, bool) {
	return Decide(r, Policy{}, avoid)
}

// Decide is Select with a board's Policy, for a boot in which the slots in
// avoid already failed with an environmental error: they are passed over
// for this decision without any change to their state, tries or the active
// slot. When only avoided slots could boot it returns ok false (the caller
// reboots to retry) rather than deciding recovery over a transient error.
// A decision that passes over a failed slot (a trial out of tries, the
// active slot never confirmed) records it as the record's LastFallback.
// It clears the shutdown note (Record.Shutdown): a note is about the boot
// before; keel-init settles it first (Classify, WithEnd).
func Decide(r Record, p Policy, avoid map[string]bool) (Decision, Record, bool) {
	n := r.Clone()
	n.Generation++
	n.Shutdown = "" // a note is about the boot before this decision
	var f failure
	d, ok := decide(&n, p, avoid, &f)
	if !ok {
		return Decision{}, r, false
	}
	d.Reason = Text(d.Reason) // the slots' reasons together may be long
	n.Last = Outcome{Slot: d.Slot, Mode: d.Mode, Reason: d.Reason}
	if f.slot != "" {
		n = WithFallback(n, d, f.slot, f.why)
	}
	return d, n, true
}

// failure is the slot a decision passed over because it failed, and why.
type failure struct{ slot, why string }

// WithFallback returns n, the new record of decision d, with d recorded as
// its LastFallback: slot failed (why says how) and d was taken instead.
// Decide records the fallbacks the record shows (a trial out of tries, a
// good slot never confirmed); keel-init records those of a slot that
// failed in the same boot (verification, measurement, kexec, an
// environmental error). A decision that boots the failed slot itself, or
// is not a fallback or recovery, is no fallback: n is returned unchanged.
func WithFallback(n Record, d Decision, slot, why string) Record {
	if d.Slot == slot || (d.Mode != ModeFallback && d.Mode != ModeRecovery) || (d.Mode == ModeFallback) == (d.Slot == "") {
		return n
	}
	n = n.Clone()
	n.LastFallback = Fallback{Failed: slot, Reason: Text(why), Slot: d.Slot, Mode: d.Mode, Generation: n.Generation}
	return n
}

// decide is Decide's choice; it sets *f when it passes over a slot that
// failed (a trial out of tries, a good slot never confirmed).
func decide(n *Record, p Policy, avoid map[string]bool, f *failure) (Decision, bool) {
	if n.Reinstalling != "" {
		return Decision{Mode: ModeRecovery, Reason: "resuming the reinstall of slot " + n.Reinstalling}, true
	}
	if n.Recovery != "" {
		return Decision{Mode: ModeRecovery, Reason: "recovery requested: " + n.Recovery}, true
	}
	failed := ""
	if n.Trial != "" && !avoid[n.Trial] {
		i := n.index(n.Trial)
		s := &n.Slots[i]
		if s.TriesLeft > 0 {
			s.TriesLeft--
			return Decision{Slot: s.Name, Mode: ModeTrial,
				Reason: fmt.Sprintf("trial of slot %s, %d tries left after this boot", s.Name, s.TriesLeft)}, true
		}
		s.State = StateBad
		s.Reason = "trial failed: no tries left and never marked good"
		why := fmt.Sprintf("trial of slot %s failed: its tries ran out and it was never marked good", s.Name)
		if s.Uncounted > p.maxUncounted() {
			// The last try went to a power loss past the bound: say so.
			more := fmt.Sprintf(" (its last %d boots ended without a known cause, more than the board's %d that do not use a try)", s.Uncounted, p.maxUncounted())
			s.Reason += more
			why += more
		}
		s.Uncounted = 0
		failed = s.Name
		*f = failure{s.Name, why}
		n.Trial, n.TrialID = "", ""
	}
	max := p.maxUnconfirmed()
	usable := func(s Slot) bool { return s.State == StateGood && !avoid[s.Name] && s.Unconfirmed < max }
	if n.Active != "" {
		i := n.index(n.Active)
		if s := &n.Slots[i]; s.State == StateGood && !avoid[s.Name] && s.Unconfirmed >= max && f.slot == "" {
			*f = failure{s.Name, fmt.Sprintf("slot %s was handed over %d times in a row and never confirmed (keel boot-ok or keel mark-good)", s.Name, s.Unconfirmed)}
		}
		if s := &n.Slots[i]; usable(*s) {
			s.Unconfirmed++
			if failed != "" {
				return Decision{Slot: n.Active, Mode: ModeFallback,
					Reason: fmt.Sprintf("slot %s failed its trial; back to slot %s", failed, n.Active)}, true
			}
			if n.Trial != "" && avoid[n.Trial] {
				return Decision{Slot: n.Active, Mode: ModeFallback,
					Reason: fmt.Sprintf("trial slot %s failed with an environmental error in this boot; slot %s", n.Trial, n.Active)}, true
			}
			return Decision{Slot: n.Active, Mode: ModeNormal, Reason: "active slot " + n.Active}, true
		}
	}
	for i := range n.Slots {
		s := &n.Slots[i]
		if !usable(*s) {
			continue
		}
		var why string
		switch {
		case n.Active == "":
			why = fmt.Sprintf("no active slot; slot %s is good", s.Name)
		case avoid[n.Active]:
			// An environmental error: the active slot stays active.
			why = fmt.Sprintf("slot %s is good; %s failed with an environmental error in this boot", s.Name, avoidList(avoid))
		default:
			a, _ := n.Slot(n.Active)
			why = fmt.Sprintf("slot %s was handed over %d times in a row and never confirmed; slot %s is good", n.Active, a.Unconfirmed, s.Name)
		}
		if !avoid[n.Active] {
			n.Active = s.Name
		}
		s.Unconfirmed++
		return Decision{Slot: s.Name, Mode: ModeFallback, Reason: why}, true
	}
	for _, s := range n.Slots {
		if avoid[s.Name] && (s.State == StateGood || (s.State == StateTrial && s.TriesLeft > 0)) {
			return Decision{}, false
		}
	}
	var why []string
	for _, s := range n.Slots {
		w := s.Name + " " + string(s.State)
		switch {
		case s.Reason != "":
			w += " (" + s.Reason + ")"
		case s.State == StateGood:
			w += fmt.Sprintf(" (handed over %d times in a row, never confirmed)", s.Unconfirmed)
		}
		why = append(why, w)
	}
	return Decision{Mode: ModeRecovery, Reason: "no bootable slot: " + strings.Join(why, "; ")}, true
}

func avoidList(avoid map[string]bool) string {
	var l []string
	for s := range avoid {
		l = append(l, s)
	}
	slices.Sort(l)
	return strings.Join(l, ", ")
}

// Confirm records that the OS confirmed the boot of the good slot it runs
// (keel boot-ok; keel mark-good does it too): its unconfirmed boots and the
// run of environmental errors end.
func Confirm(r Record, slot string) (Record, error) {
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if r.Slots[i].State != StateGood {
		return Record{}, fmt.Errorf("%w: slot %s is %s: only a good slot's boot is confirmed (a trial slot is committed with keel mark-good)", ErrRefused, slot, r.Slots[i].State)
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i].Unconfirmed = 0
	n.Transient = 0
	return n, nil
}

// NoteTransient records an environmental failure of slot in this boot:
// the count of such boots in a row goes up, the last outcome says what it
// was; no slot changes state.
func NoteTransient(r Record, slot string, mode Mode, why string) (Record, error) {
	if r.index(slot) < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	n := r.Clone()
	n.Generation++
	if n.Transient < MaxTransientCount {
		n.Transient++
	}
	// The boot was never handed over: it is not an unconfirmed boot.
	if i := n.index(slot); n.Slots[i].Unconfirmed > 0 {
		n.Slots[i].Unconfirmed--
	}
	n.Last = Outcome{Slot: slot, Mode: mode, Reason: oneLine(fmt.Sprintf("environmental error (%d in a row, not marked bad): %s", n.Transient, why))}
	// keel-init restarts the machine to retry: the boot ends by its own
	// hand, and its try stays used, as before (Classify).
	n.Shutdown = NoteKeelInit
	return n, nil
}

// Try puts slot on trial for exactly tries boots: the next tries decisions
// boot it (each using one try) and the one after marks it bad and falls back
// to the active slot, unless the slot is marked good before. A slot already
// on trial is given the new count and keeps its trial id (it is the same
// trial: its data area is kept); another slot on trial is superseded and
// marked bad. A new trial is named id (NewID: the caller draws it), so that
// its first boot starts from a copy of the running slot's data area
// whatever ran in the slot before. The active slot cannot be tried: it is
// already good.
func Try(r Record, slot string, tries int, id string) (Record, error) {
	if err := r.busy(slot); err != nil {
		return Record{}, err
	}
	if tries < 1 || tries > MaxTries {
		return Record{}, fmt.Errorf("%w: tries %d: give 1..%d", ErrRefused, tries, MaxTries)
	}
	if !ValidID(id) {
		return Record{}, fmt.Errorf("%w: trial id %.70q: want 16-64 hexadecimal digits (bootenv.NewID)", ErrRefused, id)
	}
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if r.Active == slot {
		return Record{}, fmt.Errorf("%w: slot %s is the active good slot; install the update into another slot and try that one", ErrRefused, slot)
	}
	n := r.Clone()
	n.Generation++
	if n.Trial != "" && n.Trial != slot {
		j := n.index(n.Trial)
		n.Slots[j] = Slot{Name: n.Trial, State: StateBad, Version: n.Slots[j].Version,
			SecurityVersion: n.Slots[j].SecurityVersion, Reason: "trial superseded by a trial of slot " + slot}
	}
	if n.Trial != slot || n.TrialID == "" {
		n.TrialID = id
	}
	n.Slots[i].State = StateTrial
	n.Slots[i].TriesLeft = tries
	n.Slots[i].Reason = ""
	n.Slots[i].Unconfirmed = 0
	n.Slots[i].Uncounted = 0 // a new count of tries
	n.Trial = slot
	return n, nil
}

// WithTrialID returns n, a record about to be committed, with its trial
// named id when it has a trial without an id (one armed by a keel older
// than trial ids, or imported from another boot loader's env): keel-init
// calls it with the decision that boots the trial, so that the trial's
// later boots carry the same id and keep their data area. n is returned
// unchanged otherwise (no trial, an id already, or id invalid). Like
// WithFallback it does not count a generation: it is part of the commit
// it is applied to.
func WithTrialID(n Record, id string) Record {
	if n.Trial == "" || n.TrialID != "" || !ValidID(id) {
		return n
	}
	n = n.Clone()
	n.TrialID = id
	return n
}

// MarkGood marks slot good and makes it the active slot; a trial of it ends.
// An empty slot cannot be marked good: nothing is installed in it.
func MarkGood(r Record, slot string) (Record, error) {
	if err := r.busy(slot); err != nil {
		return Record{}, err
	}
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if r.Slots[i].State == StateEmpty {
		return Record{}, fmt.Errorf("%w: slot %s is empty: install an image and `keel try %s` first", ErrRefused, slot, slot)
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i].State = StateGood
	n.Slots[i].TriesLeft = 0
	n.Slots[i].Reason = ""
	n.Slots[i].Unconfirmed = 0 // the OS confirmed this boot
	n.Slots[i].Uncounted = 0
	n.Active = slot
	if n.Trial == slot {
		n.Trial, n.TrialID = "", ""
	}
	n.Transient = 0 // a confirmed boot ends a run of environmental errors
	return n, nil
}

// MarkBad marks slot bad with the reason. If it was active, the next good
// slot (in slot order) becomes active; with none left the next boot is
// recovery.
func MarkBad(r Record, slot, reason string) (Record, error) {
	if err := r.busy(slot); err != nil {
		return Record{}, err
	}
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if reason == "" {
		reason = "marked bad"
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i].State = StateBad
	n.Slots[i].TriesLeft = 0
	n.Slots[i].Reason = oneLine(reason)
	n.Slots[i].Unconfirmed = 0
	n.Slots[i].Uncounted = 0
	n.dropSlot(slot)
	return n, nil
}

// SetActive makes a good slot the active one: the slot normal boots take.
// A pending trial still boots first.
func SetActive(r Record, slot string) (Record, error) {
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if st := r.Slots[i].State; st != StateGood {
		return Record{}, fmt.Errorf("%w: slot %s is %s, only a good slot can be active; `keel try %s` boots it on trial", ErrRefused, slot, st, slot)
	}
	n := r.Clone()
	n.Generation++
	n.Active = slot
	return n, nil
}

// SetSlotInfo records the version and security version of what is
// installed in slot.
func SetSlotInfo(r Record, slot, version string, securityVersion uint64) (Record, error) {
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if err := checkVersion(version); err != nil {
		return Record{}, err
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i].Version = version
	n.Slots[i].SecurityVersion = securityVersion
	return n, nil
}

// RequestRecovery asks the next boot to go to recovery, for the reason.
func RequestRecovery(r Record, reason string) (Record, error) {
	if reason == "" {
		reason = "requested"
	}
	n := r.Clone()
	n.Generation++
	n.Recovery = oneLine(reason)
	return n, nil
}

// Text makes s fit a record's text field: one line, no backslash (U-Boot
// reads it as an escape), at most MaxText bytes (cut with an ellipsis).
func Text(s string) string { return oneLine(s) }

func oneLine(s string) string {
	// U-Boot's env import treats a backslash as an escape: keep none.
	s = strings.NewReplacer("\n", " ", "\x00", " ", "\\", "/").Replace(s)
	if len(s) > MaxText {
		// Cut at a rune boundary, with room for the ellipsis.
		cut := MaxText - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// RequestFactoryReset asks the next boot to go to recovery and to wipe the
// data partition (re-create its empty file system from the seed).
func RequestFactoryReset(r Record, reason string) (Record, error) {
	if reason == "" {
		reason = "factory reset requested"
	}
	n, err := RequestRecovery(r, reason)
	if err != nil {
		return Record{}, err
	}
	n.FactoryReset = true
	return n, nil
}

// CancelRecovery withdraws a pending recovery request (and factory reset).
func CancelRecovery(r Record) (Record, error) {
	if r.Recovery == "" {
		return Record{}, fmt.Errorf("%w: no recovery is requested", ErrRefused)
	}
	n := r.Clone()
	n.Generation++
	n.Recovery = ""
	n.FactoryReset = false
	return n, nil
}

// BeginReinstall records that recovery is about to rewrite slot from the
// seed: the slot becomes empty (it must never boot half-written) and stops
// being active or on trial. Commit it before writing the first byte.
func BeginReinstall(r Record, slot, reason string) (Record, error) {
	if r.Reinstalling != "" && r.Reinstalling != slot {
		return Record{}, fmt.Errorf("%w: slot %s is being reinstalled; finish it first", ErrRefused, r.Reinstalling)
	}
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i] = Slot{Name: slot, State: StateEmpty, Reason: oneLine("being reinstalled: " + reason)}
	n.dropSlot(slot)
	n.Reinstalling = slot
	if n.Installing == slot {
		n.Installing, n.InstallToken = "", "" // recovery takes the half-written slot over
	}
	return n, nil
}

// BeginInstall records that an update (keel install) is about to write
// slot with version: the slot becomes empty and is marked as being
// written (Installing), so it is never chosen while it is half-written;
// the active slot keeps booting. token (NewID, drawn by the caller once
// per run) names the run: only FinishInstall with the same token finishes
// it. A run that begins on a slot another run was writing (an install cut
// by a power loss, run again) takes it over: the earlier run can no
// longer finish. Commit it before writing the first byte. It is refused
// while a trial runs (its outcome is not known yet), while recovery is
// pending or rewriting a slot, for the active slot, and while another
// slot is being written by an update.
func BeginInstall(r Record, slot, version, token string) (Record, error) {
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	switch {
	case r.Reinstalling != "":
		return Record{}, fmt.Errorf("%w: recovery is reinstalling slot %s; reboot to let it finish, then install the update", ErrRefused, r.Reinstalling)
	case r.Recovery != "":
		return Record{}, fmt.Errorf("%w: recovery is requested (%s); cancel it with `keel recover --cancel` or reboot to let it run, then install the update", ErrRefused, r.Recovery)
	case r.Trial != "":
		return Record{}, fmt.Errorf("%w: slot %s is on trial; install another update once it is confirmed (`keel mark-good` in that slot) or has fallen back", ErrRefused, r.Trial)
	case slot == r.Active:
		return Record{}, fmt.Errorf("%w: slot %s is the active slot, which the device runs on; an update goes into another slot", ErrRefused, slot)
	case r.Installing != "" && r.Installing != slot:
		return Record{}, fmt.Errorf("%w: an update is being written into slot %s; run the install again to complete it there", ErrRefused, r.Installing)
	}
	if err := checkVersion(version); err != nil {
		return Record{}, err
	}
	if !ValidID(token) {
		return Record{}, fmt.Errorf("%w: install token %.70q: want 16-64 hexadecimal digits (bootenv.NewID)", ErrRefused, token)
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i] = Slot{Name: slot, State: StateEmpty, Reason: oneLine("being written: update to version " + version)}
	n.Installing = slot
	n.InstallToken = token
	return n, nil
}

// Finish is what FinishInstall records of a finished install run.
type Finish struct {
	// Token is the run's token, as given to BeginInstall.
	Token string
	// Version and SecurityVersion are the installed slot's.
	Version         string
	SecurityVersion uint64
	// Tries > 0 puts the slot on trial for that many boots, named
	// TrialID (NewID); 0 leaves it holding the update until `keel try`.
	Tries   int
	TrialID string
}

// FinishInstall records that the install run named f.Token wrote the
// update into slot and verified it: the slot keeps f's version and
// security version and, with f.Tries > 0, goes on trial for that many
// boots (the next boot takes it) named f.TrialID; with f.Tries 0 it stays
// empty, holding the update until `keel try`. Only the run that last began
// writing the slot (BeginInstall with the same token) may finish: for any
// other the slot may still be written by the run that overtook it, and it
// is refused.
func FinishInstall(r Record, slot string, f Finish) (Record, error) {
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if r.Installing != slot {
		return Record{}, fmt.Errorf("%w: slot %s is not being written by an update (installing %q): the boot state changed during the install; run it again", ErrRefused, slot, r.Installing)
	}
	if f.Token == "" || r.InstallToken != f.Token {
		return Record{}, fmt.Errorf("%w: another install run began writing slot %s after this one: only that run may finish it", ErrRefused, slot)
	}
	if err := checkVersion(f.Version); err != nil {
		return Record{}, err
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i] = Slot{Name: slot, State: StateEmpty, Version: f.Version, SecurityVersion: f.SecurityVersion,
		Reason: oneLine("installed version " + f.Version + ", not tried yet: `keel try " + slot + "`")}
	n.Installing, n.InstallToken = "", ""
	if f.Tries == 0 {
		return n, nil
	}
	if n.Trial != "" {
		return Record{}, fmt.Errorf("%w: slot %s went on trial during the install; the update in slot %s is kept: `keel try %s` once that trial ends", ErrRefused, n.Trial, slot, slot)
	}
	t, err := Try(n, slot, f.Tries, f.TrialID)
	if err != nil {
		return Record{}, err
	}
	t.Generation = n.Generation // one commit, one generation step
	return t, nil
}

// FinishReinstall records that slot was rewritten from the seed and
// verified: it is good and active with the seed's version, the recovery
// request is cleared, and when ("at", RFC 3339) and why are kept.
func FinishReinstall(r Record, slot, version string, securityVersion uint64, at, reason string) (Record, error) {
	i := r.index(slot)
	if i < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if r.Reinstalling != slot {
		return Record{}, fmt.Errorf("%w: slot %s is not being reinstalled (reinstalling %q)", ErrRefused, slot, r.Reinstalling)
	}
	if err := checkVersion(version); err != nil {
		return Record{}, err
	}
	n := r.Clone()
	n.Generation++
	n.Slots[i] = Slot{Name: slot, State: StateGood, Version: version, SecurityVersion: securityVersion}
	n.Active = slot
	n.Reinstalling = ""
	n.Recovery = ""
	n.FactoryReset = false
	n.LastRecovery = oneLine(at + " " + reason)
	return n, nil
}

// AbandonRecovery records that recovery could not run (the seed does not
// verify, or is below the anti-rollback counter): the request, the factory
// reset and an interrupted reinstall are dropped (the slot that was being
// rewritten stays empty: it is half-written), and why is kept in
// LastRecovery ("at" is RFC 3339). Callers abandon only when a good slot is
// left to boot; otherwise the request stays for the next boot to retry.
func AbandonRecovery(r Record, at, why string) (Record, error) {
	if r.Recovery == "" && r.Reinstalling == "" {
		return Record{}, fmt.Errorf("%w: no recovery is pending", ErrRefused)
	}
	n := r.Clone()
	n.Generation++
	if n.Reinstalling != "" {
		i := n.index(n.Reinstalling)
		n.Slots[i].Reason = oneLine("reinstall abandoned: " + why)
		n.Reinstalling = ""
	}
	n.Recovery = ""
	n.FactoryReset = false
	n.LastRecovery = oneLine(at + " recovery failed: " + why)
	return n, nil
}

// HasGood reports whether some slot is good.
func (r Record) HasGood() bool {
	for _, s := range r.Slots {
		if s.State == StateGood {
			return true
		}
	}
	return false
}

// busy refuses changes to a slot that recovery or an update is rewriting.
func (r Record) busy(slot string) error {
	if r.Reinstalling != "" && r.Reinstalling == slot {
		return fmt.Errorf("%w: slot %s is being reinstalled by recovery; let the next boot finish it", ErrRefused, slot)
	}
	if r.Installing != "" && r.Installing == slot {
		return fmt.Errorf("%w: slot %s is being written by an update (keel install); run the install again to complete it", ErrRefused, slot)
	}
	return nil
}

// dropSlot ends slot's trial and, if it was active, makes the next good
// slot (in slot order) active, or none.
func (n *Record) dropSlot(slot string) {
	if n.Trial == slot {
		n.Trial, n.TrialID = "", ""
	}
	if n.Active == slot {
		n.Active = ""
		for _, s := range n.Slots {
			if s.State == StateGood {
				n.Active = s.Name
				break
			}
		}
	}
}

// Restrict keeps only the board's slots in the record: a slot the board
// does not have is dropped (with its active, trial or reinstall role), a
// board slot the record lacks is added empty, in the board's order. The
// record is unauthenticated: it may choose among the board's signed slots,
// never add one. The last outcome and last fallback are dropped when they
// name a dropped slot. It returns the record and one line per change, for
// the console; no change returns r and no lines.
func Restrict(r Record, board []string) (Record, []string) {
	var notes []string
	want := map[string]bool{}
	for _, name := range board {
		want[name] = true
	}
	n := r.Clone()
	n.Slots = nil
	for _, name := range board {
		if s, ok := r.Slot(name); ok {
			n.Slots = append(n.Slots, s)
		} else {
			n.Slots = append(n.Slots, Slot{Name: name, State: StateEmpty})
			notes = append(notes, fmt.Sprintf("the record has no slot %s: added as empty", name))
		}
	}
	for _, s := range r.Slots {
		if !want[s.Name] {
			notes = append(notes, fmt.Sprintf("the record names slot %q, which the board does not have (%s): ignored", s.Name, strings.Join(board, ",")))
		}
	}
	if n.Reinstalling != "" && !want[n.Reinstalling] {
		n.Reinstalling = ""
	}
	if n.Installing != "" && !want[n.Installing] {
		n.Installing, n.InstallToken = "", ""
	}
	if n.Trial != "" && !want[n.Trial] {
		n.Trial, n.TrialID = "", ""
	}
	// What the last decisions say of a dropped slot goes with it: a
	// record may only name its own slots.
	if n.Last.Slot != "" && !want[n.Last.Slot] {
		n.Last = Outcome{}
	}
	if f := n.LastFallback; !f.IsZero() && (!want[f.Failed] || (f.Slot != "" && !want[f.Slot])) {
		n.LastFallback = Fallback{}
	}
	if n.LastEnd.Slot != "" && !want[n.LastEnd.Slot] {
		n.LastEnd = End{}
	}
	if n.Active != "" && !want[n.Active] {
		n.Active = ""
		for _, s := range n.Slots {
			if s.State == StateGood {
				n.Active = s.Name
				break
			}
		}
	}
	if len(notes) == 0 {
		return r, nil
	}
	n.Generation++
	return n, notes
}

// checkVersion refuses a version the record cannot keep: one line without
// backslashes (U-Boot env escaping), at most MaxText bytes.
func checkVersion(version string) error {
	if strings.ContainsAny(version, "\x00\n\\") || len(version) > MaxText {
		return fmt.Errorf("%w: version %.40q must be one line without backslashes, at most %d bytes", ErrRefused, version, MaxText)
	}
	return nil
}
