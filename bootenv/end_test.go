package bootenv

import (
	"errors"
	"strings"
	"testing"
)

// trialBooted is a record in which the last decision booted slot b on
// trial with tries tries armed (one of them used by that boot).
func trialBooted(t *testing.T, tries int) Record {
	t.Helper()
	r := must(t)(Try(mustInit(t), "b", tries, testTrialID))
	_, r = Select(r)
	if !r.pendingTrial() {
		t.Fatalf("b's trial boot is not pending: %+v", r)
	}
	return r
}

// bootAfter is keel-init's next boot: how the last one ended (from ev),
// settled, then the decision, as stage 1 commits it.
func bootAfter(r Record, ev Evidence, p Policy) (End, Decision, Record) {
	e := Classify(r, ev)
	d, n, _ := Decide(WithEnd(r, e, p), p, nil)
	return e, d, n
}

var (
	evPowerLoss = Evidence{WatchdogRead: true}
	evWatchdog  = Evidence{WatchdogRead: true, Watchdog: true}
	evPanic     = Evidence{WatchdogRead: true, Panic: "Kernel panic - not syncing: sysrq triggered crash"}
	evKexec     = Evidence{WatchdogRead: true, Kexec: true}
	evNothing   = Evidence{} // a board whose watchdog cannot tell
)

func TestClassify(t *testing.T) {
	pending := trialBooted(t, 3)
	committed := must(t)(MarkGood(pending, "b"))
	noted := func(r Record, note string) Record { return must(t)(NoteShutdown(r, r.Last.Slot, note)) }
	unconfirmed := must(t)(Try(mustInit(t), "b", 1, testTrialID))
	_, unconfirmed = Select(unconfirmed) // b's trial
	_, unconfirmed = Select(unconfirmed) // b ran out: a in fallback, not confirmed
	for _, tc := range []struct {
		name   string
		r      Record
		ev     Evidence
		want   How
		detail string
	}{
		{"a power cut", pending, evPowerLoss, EndPowerLoss, "reset from outside"},
		{"no source on this board", pending, evNothing, EndUnknown, "cannot say"},
		{"the watchdog", pending, evWatchdog, EndWatchdog, "WDIOF_CARDRESET"},
		{"a panic", pending, evPanic, EndPanic, "sysrq triggered crash"},
		{"a panic that the watchdog reset (panic=0)", pending, Evidence{WatchdogRead: true, Watchdog: true, Panic: "Oops"}, EndPanic, "Oops"},
		{"the OS rebooted", noted(pending, NoteReboot), evPowerLoss, EndReboot, "ran reboot"},
		{"the OS powered off", noted(pending, NotePowerOff), evNothing, EndReboot, "ran poweroff"},
		{"the OS halted", noted(pending, NoteHalt), evPowerLoss, EndReboot, "ran halt"},
		{"keel-init restarted it", noted(pending, NoteKeelInit), evPowerLoss, EndReboot, "keel-init restarted"},
		{"a reboot that hung: the watchdog", noted(pending, NoteReboot), evWatchdog, EndWatchdog, "watchdog"},
		{"a reboot that panicked", noted(pending, NoteReboot), evPanic, EndPanic, "sysrq"},
		{"the OS kexec'd (its note)", noted(pending, NoteKexec), evPowerLoss, EndKexec, "kexec"},
		{"the OS kexec'd (the boot protocol)", pending, evKexec, EndKexec, "started by kexec"},
		{"committed, then a power cut", committed, evPowerLoss, EndMarkedGood, "slot b was committed"},
		{"committed, then a panic", committed, evPanic, EndMarkedGood, "then the kernel panicked: Kernel panic"},
		{"a good slot not confirmed, then the watchdog", unconfirmed, evWatchdog, EndWatchdog, "watchdog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Classify(tc.r, tc.ev)
			if e.How != tc.want || !strings.Contains(e.Detail, tc.detail) || e.Slot != tc.r.Last.Slot || e.Mode != tc.r.Last.Mode {
				t.Errorf("Classify = %+v, want %s (%q) of the last boot %+v", e, tc.want, tc.detail, tc.r.Last)
			}
		})
	}
	if e := Classify(mustInit(t), evWatchdog); !e.IsZero() {
		t.Errorf("a new record (no boot yet): %+v, want none", e)
	}
}

// TestWithEnd: the table of the policy. A trial's boot that ended
// without using its try gets it back, up to K in a row; one that ended
// in a failure keeps it used and starts the run again; nothing else in
// the record changes but the last end and the note.
func TestWithEnd(t *testing.T) {
	p := Policy{MaxUncounted: 2}
	for _, tc := range []struct {
		name          string
		ev            Evidence
		uncounted     int // before
		wantTries     int // of b after WithEnd (Decide used 1 of 3: 2)
		wantUncounted int
		detail        string
	}{
		{"power cut 1", evPowerLoss, 0, 3, 1, "not used (1 of 2"},
		{"power cut 2", evPowerLoss, 1, 3, 2, "not used (2 of 2"},
		{"power cut 3: past the bound", evPowerLoss, 2, 2, 3, "used: 3 such ends in a row, more than the board's 2"},
		{"kexec", evKexec, 0, 3, 1, "not used"},
		{"kexec past the bound", evKexec, 2, 2, 3, "used"},
		{"watchdog", evWatchdog, 1, 2, 0, "try is used"},
		{"panic", evPanic, 2, 2, 0, "try is used"},
		{"unknown", evNothing, 1, 2, 0, "try is used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := trialBooted(t, 3)
			r.Slots[r.index("b")].Uncounted = tc.uncounted
			e := Classify(r, tc.ev)
			n := WithEnd(r, e, p)
			if err := n.Validate(); err != nil {
				t.Fatal(err)
			}
			b, _ := n.Slot("b")
			if b.TriesLeft != tc.wantTries || b.Uncounted != tc.wantUncounted || b.State != StateTrial {
				t.Errorf("b = %+v, want %d tries, %d uncounted", b, tc.wantTries, tc.wantUncounted)
			}
			if n.LastEnd.How != e.How || !strings.Contains(n.LastEnd.Detail, tc.detail) {
				t.Errorf("last end %+v, want %s with %q", n.LastEnd, e.How, tc.detail)
			}
			if n.Generation != r.Generation {
				t.Errorf("WithEnd counted a generation: %d -> %d (it is part of the decision's commit)", r.Generation, n.Generation)
			}
			back := n.Clone()
			back.Slots = r.Slots
			back.LastEnd = r.LastEnd
			if !back.Equal(r) {
				t.Errorf("WithEnd changed more than b's count and the last end:\n%+v\n%+v", r, n)
			}
		})
	}
	// Not a trial's boot: nothing but the last end and the note.
	_, r := Select(mustInit(t))
	r = must(t)(NoteShutdown(r, "a", NoteReboot))
	n := WithEnd(r, Classify(r, evPowerLoss), p)
	if n.Shutdown != "" || n.LastEnd.How != EndReboot || !slicesEqual(n.Slots, r.Slots) {
		t.Errorf("a normal boot's end: %+v", n)
	}
}

func slicesEqual(a, b []Slot) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPowerCutsNeverSpendTries: proof 1 in the model's terms. A trial of
// b with 2 tries is cut five times during its boots with K=5: its tries
// are the same, and the sixth boot is still its trial; a sixth cut
// counts.
func TestPowerCutsNeverSpendTries(t *testing.T) {
	p := Policy{MaxUncounted: 5}
	r := must(t)(Try(mustInit(t), "b", 2, testTrialID))
	_, r, _ = Decide(r, p, nil)
	for i := 1; i <= 5; i++ {
		e, d, n := bootAfter(r, evPowerLoss, p)
		if e.How != EndPowerLoss || d.Slot != "b" || d.Mode != ModeTrial {
			t.Fatalf("boot %d after a cut: %+v, %+v", i+1, e, d)
		}
		if b, _ := n.Slot("b"); b.TriesLeft != 1 || b.Uncounted != i {
			t.Fatalf("boot %d after a cut: b %+v, want 1 try left after this boot, %d uncounted", i+1, b, i)
		}
		r = n
	}
	n := must(t)(MarkGood(r, "b"))
	if b, _ := n.Slot("b"); b.State != StateGood || b.Uncounted != 0 {
		t.Fatalf("b after mark-good: %+v", b)
	}
	e, _, _ := bootAfter(n, evPowerLoss, p)
	if e.How != EndMarkedGood {
		t.Errorf("the committed boot's end: %+v", e)
	}
}

// TestPowerCutsBounded: proof 5 in the model's terms. K+1 power cuts in
// a row of a trial with one try: the trial fails, falls back, and the
// reasons say why.
func TestPowerCutsBounded(t *testing.T) {
	for _, k := range []int{0, 1, 3, 5} {
		p := Policy{MaxUncounted: k}
		r := must(t)(Try(mustInit(t), "b", 1, testTrialID))
		_, r, _ = Decide(r, p, nil)
		cuts := 0
		for {
			_, d, n := bootAfter(r, evPowerLoss, p)
			cuts++
			r = n
			if d.Mode != ModeTrial {
				if d.Slot != "a" || d.Mode != ModeFallback {
					t.Fatalf("K=%d: after %d cuts: %+v", k, cuts, d)
				}
				break
			}
			if cuts > 100 {
				t.Fatalf("K=%d: a trial cut forever never falls back", k)
			}
		}
		// The K+1st cut's next boot falls back.
		if want := p.maxUncounted() + 1; cuts != want {
			t.Errorf("K=%d: fell back after %d cuts, want %d", k, cuts, want)
		}
		b, _ := r.Slot("b")
		if b.State != StateBad || !strings.Contains(b.Reason, "without a known cause") || !strings.Contains(r.LastFallback.Reason, "without a known cause") {
			t.Errorf("K=%d: b %+v, fallback %+v: the reasons must say the power cuts went past the bound", k, b, r.LastFallback)
		}
	}
}

// TestFailuresSpendTries: watchdog resets, panics and reboots use a
// try each, as before: a trial of 3 falls back after 3 boots.
func TestFailuresSpendTries(t *testing.T) {
	for _, ev := range []Evidence{evWatchdog, evPanic, evNothing} {
		r := must(t)(Try(mustInit(t), "b", 3, testTrialID))
		_, r = Select(r)
		boots := 1
		for {
			_, d, n := bootAfter(r, ev, Policy{})
			r = n
			if d.Mode != ModeTrial {
				break
			}
			boots++
		}
		if boots != 3 {
			t.Errorf("%+v: %d trial boots, want 3", ev, boots)
		}
	}
	r := must(t)(Try(mustInit(t), "b", 2, testTrialID))
	_, r = Select(r)
	for i := 0; i < 2; i++ {
		r = must(t)(NoteShutdown(r, "b", NoteReboot))
		_, _, r = bootAfter(r, evPowerLoss, Policy{})
	}
	if b, _ := r.Slot("b"); b.State != StateBad || r.LastEnd.How != EndReboot {
		t.Errorf("two noted reboots of a trial of 2: b %+v, last end %+v", b, r.LastEnd)
	}
}

func TestNoteShutdown(t *testing.T) {
	r := trialBooted(t, 2)
	n := must(t)(NoteShutdown(r, "b", NoteReboot))
	if n.Shutdown != NoteReboot || n.Generation != r.Generation+1 {
		t.Errorf("note: %+v", n)
	}
	for _, tc := range []struct{ slot, note string }{
		{"a", NoteReboot},  // not the slot the last decision booted
		{"b", "restart"},   // not a verb
		{"b", ""},          // none
		{"c", NoteKexec},   // no such slot
		{"b", "reboot\n"},  // not one line
		{"b", "kexec now"}, // not a verb
	} {
		if _, err := NoteShutdown(r, tc.slot, tc.note); !errors.Is(err, ErrRefused) && !errors.Is(err, ErrUnknownSlot) {
			t.Errorf("NoteShutdown(%s, %q) = %v, want refused", tc.slot, tc.note, err)
		}
	}
	// The next decision clears it, whoever decides.
	if _, n2 := Select(n); n2.Shutdown != "" {
		t.Errorf("a decision kept the note %q", n2.Shutdown)
	}
	// keel-init's own restart after an environmental error notes itself.
	tr := must(t)(NoteTransient(r, "b", ModeTrial, "I/O error"))
	if tr.Shutdown != NoteKeelInit {
		t.Errorf("NoteTransient: note %q, want %q", tr.Shutdown, NoteKeelInit)
	}
	if e := Classify(tr, evPowerLoss); e.How != EndReboot {
		t.Errorf("after keel-init's restart: %+v, want reboot (the try stays used, as before)", e)
	}
}

func TestValidateEnd(t *testing.T) {
	base := trialBooted(t, 2)
	for _, tc := range []struct {
		name string
		edit func(*Record)
	}{
		{"unknown way to end", func(r *Record) { r.LastEnd = End{How: "meteor", Slot: "a", Mode: ModeNormal} }},
		{"unknown slot", func(r *Record) { r.LastEnd = End{How: EndPanic, Slot: "z", Mode: ModeNormal} }},
		{"no mode", func(r *Record) { r.LastEnd = End{How: EndPanic, Slot: "a"} }},
		{"two lines", func(r *Record) { r.LastEnd = End{How: EndPanic, Slot: "a", Mode: ModeNormal, Detail: "a\nb"} }},
		{"too long", func(r *Record) {
			r.LastEnd = End{How: EndPanic, Slot: "a", Mode: ModeNormal, Detail: strings.Repeat("x", MaxText+1)}
		}},
		{"unknown note", func(r *Record) { r.Shutdown = "reset" }},
		{"uncounted on a good slot", func(r *Record) { r.Slots[0].Uncounted = 1 }},
		{"negative uncounted", func(r *Record) { r.Slots[1].Uncounted = -1 }},
		{"uncounted beyond the bound", func(r *Record) { r.Slots[1].Uncounted = MaxTransientCount + 1 }},
	} {
		r := base.Clone()
		tc.edit(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: Validate = %v, want ErrInvalidRecord", tc.name, err)
		}
	}
}
