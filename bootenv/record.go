package bootenv

import (
	"fmt"
	"slices"
	"strings"
)

// State is the state of one slot.
type State string

// Slot states. A slot is empty until something is installed in it, on
// trial while an update is being tried, good once the OS marked it good,
// and bad when its trial ran out of tries, it failed verification, or it
// was marked bad.
const (
	StateEmpty State = "empty"
	StateTrial State = "trial"
	StateGood  State = "good"
	StateBad   State = "bad"
)

func (s State) valid() bool {
	switch s {
	case StateEmpty, StateTrial, StateGood, StateBad:
		return true
	}
	return false
}

// Mode says why a boot took the slot it took. It is recorded in the Record
// (Last) and, by keel-init, measured into PCR 8.
type Mode string

// Boot modes.
const (
	ModeNone     Mode = ""         // no boot decided yet
	ModeNormal   Mode = "normal"   // the active good slot
	ModeTrial    Mode = "trial"    // the slot on trial, one try used
	ModeFallback Mode = "fallback" // a good slot, because the preferred one failed
	ModeRecovery Mode = "recovery" // no slot: recovery from the seed
)

func (m Mode) valid() bool {
	switch m {
	case ModeNone, ModeNormal, ModeTrial, ModeFallback, ModeRecovery:
		return true
	}
	return false
}

// MaxTries bounds the tries a trial may be given.
const MaxTries = 100

// MaxGeneration bounds the generation: a record beyond it could not count
// much further, so it is invalid (keel-init starts over, keel init --force
// rewrites it) rather than one increment away from wrapping.
const MaxGeneration = 1 << 62

// MaxTransient is how many boots in a row an environmental error may make
// keel-init reboot to retry the same slot; after that it tries the other
// slots in the same boot (still marking none bad).
const MaxTransient = 3

// MaxTransientCount bounds the stored count.
const MaxTransientCount = 1000

// MaxText bounds every free-text value of a record (versions, reasons):
// a record must always fit its store when written back.
const MaxText = 256

// MaxSlots bounds the number of slots in a record.
const MaxSlots = 8

// Slot is one slot's entry in the Record.
type Slot struct {
	Name            string `json:"-"`
	State           State  `json:"state"`
	TriesLeft       int    `json:"tries_left"`
	Version         string `json:"version,omitempty"`
	SecurityVersion uint64 `json:"security_version"`
	// Reason says why the slot went bad (empty otherwise).
	Reason string `json:"reason,omitempty"`
	// Unconfirmed counts the boots of this good slot in a row that were
	// handed over and not confirmed by the OS (keel mark-good or keel
	// boot-ok): a power cut or a reboot before the OS is up counts, and
	// after Policy.MaxUnconfirmed of them the decision falls back to
	// another good slot, then recovery. Only a good slot has them.
	Unconfirmed int `json:"unconfirmed_boots,omitempty"`
	// Uncounted counts the boots in a row of this trial that ended
	// without using their try (a power loss, a kexec: WithEnd); after
	// Policy.MaxUncounted of them such an end uses it too. Only the slot
	// on trial has them.
	Uncounted int `json:"uncounted_ends,omitempty"`
}

// Outcome is the last boot decision.
type Outcome struct {
	Slot   string `json:"slot,omitempty"`
	Mode   Mode   `json:"mode,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Fallback is the last boot decision that fell back: the slot that
// should have booted failed (a trial's tries ran out, a good slot was
// handed over too often without confirmation, or in keel-init a slot
// failed verification, measurement, the anti-rollback check or kexec) and
// another slot, or recovery, was taken instead. Unlike Last it stays until
// the next fallback: later normal boots do not overwrite it.
type Fallback struct {
	// Failed is the slot that failed.
	Failed string `json:"failed_slot"`
	// Reason says why it failed.
	Reason string `json:"reason"`
	// Slot is the slot booted instead ("" for recovery).
	Slot string `json:"booted_slot,omitempty"`
	// Mode is the mode of the boot taken instead: fallback, or recovery
	// when no other slot could boot.
	Mode Mode `json:"mode"`
	// Generation is the record's generation of that boot decision.
	Generation uint64 `json:"generation"`
}

// IsZero reports whether no fallback is recorded.
func (f Fallback) IsZero() bool { return f == Fallback{} }

// Record is the whole boot state. Every change writes the whole record in
// one Commit.
type Record struct {
	Slots []Slot
	// Active is the last good slot: the one a normal boot takes, and the
	// fallback while another slot is on trial. Empty when no slot is good.
	Active string
	// Trial is the slot on trial, if any.
	Trial string
	// TrialID names the trial of Trial: a random id (NewID) drawn by
	// whoever armed it (keel install, keel try), or by keel-init for a
	// trial armed by an older keel. keel-init hands it to the slot's stage
	// 2, whose data area keeps it: a trial's first boot finds its area
	// stamped with another id and starts from a copy of the running
	// slot's area; its later boots find their own (package
	// initramfs/dataarea). It decides that and nothing else. Only a
	// record with a trial has one.
	TrialID string
	// Generation increases with every change of the record.
	Generation uint64
	// Recovery is a pending recovery request (its reason), if any.
	Recovery string
	// FactoryReset makes the pending recovery also wipe the data
	// partition. It is its own typed field (keel_factory_reset=1), never
	// inferred from the free-text reason.
	FactoryReset bool
	// Reinstalling names the slot recovery is rewriting from the seed.
	// It is set before the first byte is written and cleared when the
	// slot verifies: after a power cut the next boot resumes, and the
	// half-written slot is never booted.
	Reinstalling string
	// Installing names the slot an update (keel install) is writing. It
	// is set before the first byte is written and cleared when the slot
	// verifies: the slot is empty until then and is never chosen; the
	// device keeps booting its active slot, and running the install again
	// completes it.
	Installing string
	// InstallToken is the random id (NewID) of the install run that last
	// began writing Installing: only that run may finish the install and
	// arm the trial (FinishInstall), so a run overtaken by another (two
	// hosts writing one image, a run that lost its lock) fails instead of
	// arming a slot the other is still writing. Only a record with
	// Installing has one.
	InstallToken string
	// LastRecovery says when and why recovery last reinstalled a slot
	// ("<RFC 3339 time> <reason>"), for keel status.
	LastRecovery string
	// Transient counts the boots in a row that failed with an
	// environmental error (a slow disk, an I/O error, no memory for
	// kexec) rather than an integrity failure: such a slot is retried with
	// a reboot, never marked bad. A confirmed boot (MarkGood) resets it.
	Transient int
	// StartedOver says when and why keel-init last started a new record
	// (none was found, or it was unreadable) and what it found.
	StartedOver string
	// Last is the outcome of the last boot decision.
	Last Outcome
	// LastFallback is the last boot decision that fell back, kept until
	// the next one (for keel status).
	LastFallback Fallback
	// LastEnd is how the boot the last decision handed over ended, as
	// keel-init found out at the next boot (Classify, WithEnd): kept
	// until the next boot settles its own.
	LastEnd End
	// Shutdown is the note the running boot's OS left as it shut down
	// (keel note-shutdown: reboot, poweroff, halt, kexec), or keel-init's
	// own (keel-init) when it restarted the machine: the next keel-init
	// reads it (Classify) and clears it (WithEnd). It only ever decides
	// whether a trial's try was used.
	Shutdown string
}

// Clone returns a deep copy of r.
func (r Record) Clone() Record {
	r.Slots = slices.Clone(r.Slots)
	return r
}

// Slot returns the named slot.
func (r Record) Slot(name string) (Slot, bool) {
	i := r.index(name)
	if i < 0 {
		return Slot{}, false
	}
	return r.Slots[i], true
}

// SlotNames lists the slots in order.
func (r Record) SlotNames() []string {
	names := make([]string, len(r.Slots))
	for i, s := range r.Slots {
		names[i] = s.Name
	}
	return names
}

func (r Record) index(name string) int {
	for i, s := range r.Slots {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// Equal reports whether r and o hold the same state, generation included.
func (r Record) Equal(o Record) bool {
	return r.Generation == o.Generation && r.SameState(o)
}

// SameState reports whether r and o hold the same state, ignoring the
// generation: a transition that changes nothing else need not be committed.
func (r Record) SameState(o Record) bool {
	return slices.Equal(r.Slots, o.Slots) && r.Active == o.Active && r.Trial == o.Trial && r.TrialID == o.TrialID &&
		r.InstallToken == o.InstallToken && r.Recovery == o.Recovery && r.FactoryReset == o.FactoryReset && r.Last == o.Last && r.Reinstalling == o.Reinstalling && r.Installing == o.Installing &&
		r.LastRecovery == o.LastRecovery && r.Transient == o.Transient && r.StartedOver == o.StartedOver &&
		r.LastFallback == o.LastFallback && r.LastEnd == o.LastEnd && r.Shutdown == o.Shutdown
}

// ValidSlotName reports whether name can name a slot: 1 to 16 characters
// from [a-z0-9], so that it fits in a U-Boot variable name and a kernel
// command line without quoting.
func ValidSlotName(name string) bool {
	if len(name) == 0 || len(name) > 16 {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func (r Record) unknownSlot(name string) error {
	return fmt.Errorf("%w %q: this device has slots %s", ErrUnknownSlot, name, strings.Join(r.SlotNames(), ", "))
}

// texts are the record's free-text values.
func (r Record) texts() []string {
	t := []string{r.Recovery, r.Last.Reason, r.LastRecovery, r.StartedOver, r.LastFallback.Reason, r.LastEnd.Detail}
	for _, s := range r.Slots {
		t = append(t, s.Version, s.Reason)
	}
	return t
}

// Validate checks the invariants every stored record keeps: valid and
// unique slot names, known states, tries only on the trial slot, at most one
// slot on trial and it is the one Trial names, and Active empty or naming a
// good slot.
func (r Record) Validate() error {
	if len(r.Slots) == 0 {
		return fmt.Errorf("%w: no slots", ErrInvalidRecord)
	}
	if len(r.Slots) > MaxSlots {
		return fmt.Errorf("%w: %d slots, at most %d", ErrInvalidRecord, len(r.Slots), MaxSlots)
	}
	if r.Transient < 0 || r.Transient > MaxTransientCount {
		return fmt.Errorf("%w: transient failure count %d out of range 0..%d", ErrInvalidRecord, r.Transient, MaxTransientCount)
	}
	if r.Generation > MaxGeneration {
		return fmt.Errorf("%w: generation %d is beyond %d: the record cannot count further (keel init --force starts over)", ErrInvalidRecord, r.Generation, uint64(MaxGeneration))
	}
	for _, t := range r.texts() {
		if len(t) > MaxText {
			return fmt.Errorf("%w: a text of %d bytes (%.32q…), at most %d", ErrInvalidRecord, len(t), t, MaxText)
		}
	}
	trials := 0
	for i, s := range r.Slots {
		if !ValidSlotName(s.Name) {
			return fmt.Errorf("%w: slot name %q: use 1-16 characters a-z, 0-9", ErrInvalidRecord, s.Name)
		}
		if r.index(s.Name) != i {
			return fmt.Errorf("%w: slot %q listed twice", ErrInvalidRecord, s.Name)
		}
		if !s.State.valid() {
			return fmt.Errorf("%w: slot %s: unknown state %q (want good, trial, bad or empty)", ErrInvalidRecord, s.Name, s.State)
		}
		if s.TriesLeft < 0 || s.TriesLeft > MaxTries {
			return fmt.Errorf("%w: slot %s: tries left %d out of range 0..%d", ErrInvalidRecord, s.Name, s.TriesLeft, MaxTries)
		}
		if s.Unconfirmed < 0 || s.Unconfirmed > MaxTransientCount || (s.State != StateGood && s.Unconfirmed != 0) {
			return fmt.Errorf("%w: slot %s is %s with %d unconfirmed boots (only a good slot counts them, at most %d)", ErrInvalidRecord, s.Name, s.State, s.Unconfirmed, MaxTransientCount)
		}
		if s.Uncounted < 0 || s.Uncounted > MaxTransientCount || (s.State != StateTrial && s.Uncounted != 0) {
			return fmt.Errorf("%w: slot %s is %s with %d uncounted ends (only a trial slot counts them, at most %d)", ErrInvalidRecord, s.Name, s.State, s.Uncounted, MaxTransientCount)
		}
		if s.State != StateTrial && s.TriesLeft != 0 {
			return fmt.Errorf("%w: slot %s is %s but has %d tries left (only a trial slot has tries)", ErrInvalidRecord, s.Name, s.State, s.TriesLeft)
		}
		if s.State == StateTrial {
			trials++
			if r.Trial != s.Name {
				return fmt.Errorf("%w: slot %s is on trial but the record's trial slot is %q", ErrInvalidRecord, s.Name, r.Trial)
			}
		}
		if strings.ContainsAny(s.Version+s.Reason, "\x00\n\\") {
			return fmt.Errorf("%w: slot %s: version and reason must be one line without backslashes (U-Boot reads a backslash as an escape)", ErrInvalidRecord, s.Name)
		}
	}
	if trials > 1 {
		return fmt.Errorf("%w: %d slots on trial, at most one", ErrInvalidRecord, trials)
	}
	if r.Trial != "" && trials == 0 {
		return fmt.Errorf("%w: trial slot %q is not in state trial", ErrInvalidRecord, r.Trial)
	}
	if r.Active != "" {
		s, ok := r.Slot(r.Active)
		if !ok {
			return fmt.Errorf("%w: active slot %q does not exist", ErrInvalidRecord, r.Active)
		}
		if s.State != StateGood {
			return fmt.Errorf("%w: active slot %s is %s, not good", ErrInvalidRecord, r.Active, s.State)
		}
	}
	if !r.Last.Mode.valid() {
		return fmt.Errorf("%w: unknown boot mode %q", ErrInvalidRecord, r.Last.Mode)
	}
	if r.Last.Slot != "" && r.index(r.Last.Slot) < 0 {
		return fmt.Errorf("%w: last boot names unknown slot %q", ErrInvalidRecord, r.Last.Slot)
	}
	if r.FactoryReset && r.Recovery == "" && r.Reinstalling == "" {
		return fmt.Errorf("%w: a factory reset is requested without a recovery request", ErrInvalidRecord)
	}
	if r.Reinstalling != "" {
		s, ok := r.Slot(r.Reinstalling)
		if !ok {
			return fmt.Errorf("%w: reinstalling unknown slot %q", ErrInvalidRecord, r.Reinstalling)
		}
		if s.State != StateEmpty || r.Active == r.Reinstalling || r.Trial == r.Reinstalling {
			return fmt.Errorf("%w: slot %s is being reinstalled but is %s", ErrInvalidRecord, r.Reinstalling, s.State)
		}
	}
	if r.Installing != "" {
		s, ok := r.Slot(r.Installing)
		if !ok {
			return fmt.Errorf("%w: installing into unknown slot %q", ErrInvalidRecord, r.Installing)
		}
		if s.State != StateEmpty || r.Active == r.Installing || r.Trial == r.Installing || r.Reinstalling == r.Installing {
			return fmt.Errorf("%w: slot %s is being written by an update but is %s", ErrInvalidRecord, r.Installing, s.State)
		}
	}
	if r.TrialID != "" && (r.Trial == "" || !ValidID(r.TrialID)) {
		return fmt.Errorf("%w: trial id %.70q without a trial, or not 16-64 hexadecimal digits", ErrInvalidRecord, r.TrialID)
	}
	if r.InstallToken != "" && (r.Installing == "" || !ValidID(r.InstallToken)) {
		return fmt.Errorf("%w: install token %.70q without an install, or not 16-64 hexadecimal digits", ErrInvalidRecord, r.InstallToken)
	}
	if strings.ContainsAny(r.Recovery+r.Last.Reason+r.LastRecovery+r.LastFallback.Reason+r.LastEnd.Detail, "\x00\n\\") {
		return fmt.Errorf("%w: reasons must be one line without backslashes", ErrInvalidRecord)
	}
	if r.Shutdown != "" && !ValidShutdownNote(r.Shutdown) {
		return fmt.Errorf("%w: shutdown note %.40q (want %s, %s, %s, %s or %s)", ErrInvalidRecord, r.Shutdown, NoteReboot, NotePowerOff, NoteHalt, NoteKexec, NoteKeelInit)
	}
	if err := r.validEnd(); err != nil {
		return err
	}
	return r.validFallback()
}

// validFallback checks LastFallback: none, or a known failed slot, a
// fallback to another known slot or recovery (no slot), at a generation
// the record has reached.
func (r Record) validFallback() error {
	f := r.LastFallback
	if f.IsZero() {
		return nil
	}
	if r.index(f.Failed) < 0 {
		return fmt.Errorf("%w: last fallback names unknown failed slot %q", ErrInvalidRecord, f.Failed)
	}
	switch {
	case f.Mode == ModeFallback && f.Slot != "" && f.Slot != f.Failed:
		if r.index(f.Slot) < 0 {
			return fmt.Errorf("%w: last fallback names unknown slot %q", ErrInvalidRecord, f.Slot)
		}
	case f.Mode == ModeRecovery && f.Slot == "":
	default:
		return fmt.Errorf("%w: last fallback from slot %s: mode %q to slot %q (want fallback to another slot, or recovery)", ErrInvalidRecord, f.Failed, f.Mode, f.Slot)
	}
	if f.Generation == 0 || f.Generation > r.Generation {
		return fmt.Errorf("%w: last fallback at generation %d, record at %d", ErrInvalidRecord, f.Generation, r.Generation)
	}
	return nil
}

// validEnd checks LastEnd: none, or a known way to end of a boot of a
// known slot in a known mode.
func (r Record) validEnd() error {
	e := r.LastEnd
	if e.IsZero() {
		return nil
	}
	if !e.How.valid() || !e.Mode.valid() || e.Mode == ModeNone || r.index(e.Slot) < 0 {
		return fmt.Errorf("%w: last end %q of a %q boot of slot %q (want a known end of a boot of one of the record's slots)", ErrInvalidRecord, e.How, e.Mode, e.Slot)
	}
	return nil
}
