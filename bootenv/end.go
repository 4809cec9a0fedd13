package bootenv

import (
	"fmt"
	"strings"
)

// How is how a boot ended, as keel-init finds out at the next boot
// (docs/DESIGN.md section 3, "How the last boot ended").
type How string

// How a boot ended. A trial's boot that ended in one of EndWatchdog,
// EndPanic, EndReboot or EndUnknown used its try; one that ended in
// EndPowerLoss or EndKexec did not (Policy.MaxUncounted bounds them).
const (
	// EndMarkedGood: the OS committed the boot (keel mark-good, or keel
	// boot-ok for a good slot): how it stopped afterwards counts for
	// nothing.
	EndMarkedGood How = "marked-good"
	// EndWatchdog: the hardware watchdog reset the machine
	// (WDIOC_GETBOOTSTATUS reported WDIOF_CARDRESET).
	EndWatchdog How = "watchdog"
	// EndPanic: the kernel panicked or oopsed (a pstore record).
	EndPanic How = "panic"
	// EndReboot: the OS rebooted, powered off or halted without
	// committing (keel's systemd-shutdown hook, keel note-shutdown), or
	// keel-init restarted the machine itself (an environmental error in
	// stage 1, a failure in stage 2).
	EndReboot How = "reboot"
	// EndKexec: the OS restarted into a new kernel with kexec, without a
	// reset.
	EndKexec How = "kexec"
	// EndPowerLoss: none of the above, on a board whose watchdog reports
	// its resets: the power went, or the machine was reset from outside.
	EndPowerLoss How = "power-loss"
	// EndUnknown: none of the above on a board whose watchdog cannot say
	// it reset the machine: a hang cannot be told from a power cut.
	EndUnknown How = "unknown"
)

func (h How) valid() bool {
	switch h {
	case EndMarkedGood, EndWatchdog, EndPanic, EndReboot, EndKexec, EndPowerLoss, EndUnknown:
		return true
	}
	return false
}

// Counts reports whether a trial's boot that ended so used its try.
func (h How) Counts() bool {
	switch h {
	case EndPowerLoss, EndKexec, EndMarkedGood:
		return false
	}
	return true
}

// End is how the last boot keel-init handed over ended, kept in the
// record (for keel status) until the next boot's decision replaces it.
type End struct {
	How How `json:"how"`
	// Slot and Mode are the boot's: the slot it ran and its mode.
	Slot string `json:"slot,omitempty"`
	Mode Mode   `json:"mode,omitempty"`
	// Detail says what the source said (a panic's first line) and what
	// the end cost (a try, or none).
	Detail string `json:"detail,omitempty"`
}

// IsZero reports whether no end is recorded.
func (e End) IsZero() bool { return e == End{} }

// Shutdown notes: what the OS (keel note-shutdown, from keel's
// systemd-shutdown hook) or keel-init wrote into the record as the boot
// it runs ends. The next keel-init reads the note and clears it.
const (
	// The verbs systemd-shutdown passes its hooks
	// (systemd-shutdown(8)).
	NoteReboot   = "reboot"
	NotePowerOff = "poweroff"
	NoteHalt     = "halt"
	NoteKexec    = "kexec"
	// NoteKeelInit: keel-init restarted the machine itself, after an
	// environmental error in stage 1 or a failure in stage 2.
	NoteKeelInit = "keel-init"
)

// ValidShutdownNote reports whether note is a shutdown note this keel
// writes.
func ValidShutdownNote(note string) bool {
	switch note {
	case NoteReboot, NotePowerOff, NoteHalt, NoteKexec, NoteKeelInit:
		return true
	}
	return false
}

// DefaultMaxUncounted is Policy.MaxUncounted's default.
const DefaultMaxUncounted = 3

func (p Policy) maxUncounted() int {
	if p.MaxUncounted <= 0 {
		return DefaultMaxUncounted
	}
	return min(p.MaxUncounted, MaxTransientCount)
}

// Evidence is what keel-init read, at a boot's start, about how the
// previous boot ended: the hardware and the last kernel's leftovers. Each
// source is unauthenticated (whoever could write the record could fake
// it too): it decides only whether the trial's try was used, never which
// slot boots.
type Evidence struct {
	// Panic is the first line of a pstore record of a panic or an oops
	// ("" when pstore held none).
	Panic string
	// Watchdog: the hardware watchdog reset the machine (its driver
	// reported WDIOF_CARDRESET).
	Watchdog bool
	// WatchdogRead: the watchdog's boot status was read. Only then can
	// an end that no source explains be a power loss rather than a hang.
	WatchdogRead bool
	// Kexec: keel-init's own kernel was started by kexec, not by the
	// firmware (x86's boot protocol says which loader started it).
	Kexec bool
}

// pendingTrial reports whether the last decision in r booted the slot
// on trial and nothing has ended that trial since: that boot's end
// decides whether its try was used.
func (r Record) pendingTrial() bool {
	return r.Trial != "" && r.Last.Mode == ModeTrial && r.Last.Slot == r.Trial
}

// Classify says how the last boot keel-init handed over ended, from the
// record and the evidence keel-init read: committed (the OS marked it
// good or confirmed it), else a panic, else a watchdog reset, else the
// shutdown note the OS (or keel-init) left, else a kexec, else a power
// loss (when the watchdog's boot status was read) or unknown. A failure
// wins over a note: a reboot that hangs and is reset by the watchdog, or
// panics, ended by the watchdog or the panic. The zero End means there
// is no boot to explain (a new record, or the last decision booted no
// slot).
func Classify(r Record, ev Evidence) End {
	if r.Last.Slot == "" {
		return End{}
	}
	e := End{Slot: r.Last.Slot, Mode: r.Last.Mode}
	var after []string
	if s, ok := r.Slot(r.Last.Slot); ok && !r.pendingTrial() && s.State == StateGood && s.Unconfirmed == 0 {
		e.How = EndMarkedGood
		if ev.Panic != "" {
			after = append(after, "then the kernel panicked: "+ev.Panic)
		} else if ev.Watchdog {
			after = append(after, "then the watchdog reset it")
		}
		e.Detail = strings.Join(append([]string{"slot " + r.Last.Slot + " was committed"}, after...), "; ")
		return e
	}
	switch {
	case ev.Panic != "":
		e.How, e.Detail = EndPanic, ev.Panic
	case ev.Watchdog:
		e.How, e.Detail = EndWatchdog, "the hardware watchdog reset the machine (WDIOF_CARDRESET)"
	case r.Shutdown == NoteKexec:
		e.How, e.Detail = EndKexec, "the OS restarted with kexec (its shutdown hook said so)"
	case r.Shutdown == NoteKeelInit:
		e.How, e.Detail = EndReboot, "keel-init restarted the machine (an environmental error, or a failure in stage 2)"
	case r.Shutdown != "":
		e.How, e.Detail = EndReboot, "the OS ran "+r.Shutdown+" without committing the boot (keel note-shutdown)"
	case ev.Kexec:
		e.How, e.Detail = EndKexec, "keel-init's kernel was started by kexec"
	case ev.WatchdogRead:
		e.How, e.Detail = EndPowerLoss, "no source explains it: the power went, or the machine was reset from outside"
	default:
		e.How, e.Detail = EndUnknown, "no source explains it, and the board's watchdog cannot say whether it reset the machine"
	}
	return e
}

// WithEnd returns r, the record a boot starts from, with e (Classify's)
// settled: e becomes the record's LastEnd, the shutdown note is cleared,
// and when the last decision booted the slot on trial, that boot's end
// decides its try. Decide used the try when it booted the slot (a crash
// from then on must cost it); an end that does not count (EndPowerLoss,
// EndKexec) gives it back, unless the trial's boots already ended so
// p.MaxUncounted times in a row: then it counts, so that an update that
// itself resets or browns out the device is still rolled back. An end
// that counts starts the run again. Like WithFallback it does not count
// a generation: keel-init applies it to the record it decides from, and
// commits both in the decision's one commit.
func WithEnd(r Record, e End, p Policy) Record {
	n := r.Clone()
	n.Shutdown = ""
	if e.IsZero() {
		return n
	}
	if n.pendingTrial() {
		i := n.index(n.Trial)
		s := &n.Slots[i]
		k := p.maxUncounted()
		switch {
		case e.How.Counts():
			s.Uncounted = 0
			e.Detail += "; the trial's try is used"
		case s.Uncounted < k:
			s.Uncounted++
			s.TriesLeft = min(s.TriesLeft+1, MaxTries)
			e.Detail += fmt.Sprintf("; the trial's try is not used (%d of %d such ends in a row)", s.Uncounted, k)
		default:
			s.Uncounted = min(s.Uncounted+1, MaxTransientCount)
			e.Detail += fmt.Sprintf("; the try is used: %d such ends in a row, more than the board's %d", s.Uncounted, k)
		}
	}
	e.Detail = Text(e.Detail)
	n.LastEnd = e
	return n
}

// NoteShutdown records how the boot of slot ends, for the next
// keel-init (keel note-shutdown from keel's systemd-shutdown hook, or
// keel-init itself): note is one of the Note* values. Only the slot the
// record's last decision booted can note its end: a note is about that
// boot.
func NoteShutdown(r Record, slot, note string) (Record, error) {
	if !ValidShutdownNote(note) {
		return Record{}, fmt.Errorf("%w: shutdown note %.40q: want %s, %s, %s or %s", ErrRefused, note, NoteReboot, NotePowerOff, NoteHalt, NoteKexec)
	}
	if r.index(slot) < 0 {
		return Record{}, r.unknownSlot(slot)
	}
	if r.Last.Slot != slot {
		return Record{}, fmt.Errorf("%w: the record's last boot ran slot %q, not %s: the note would describe no boot keel-init counts", ErrRefused, r.Last.Slot, slot)
	}
	n := r.Clone()
	n.Generation++
	n.Shutdown = note
	return n, nil
}
