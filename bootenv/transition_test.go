package bootenv

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// Ids of trials and install runs in tests (NewID draws them on devices).
const (
	testTrialID  = "11111111111111111111111111111111"
	testTrialID2 = "22222222222222222222222222222222"
	testToken    = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testToken2   = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func mustInit(t *testing.T) Record {
	t.Helper()
	r, err := Init(nil, "a")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func must(t testing.TB) func(Record, error) Record {
	return func(r Record, err error) Record {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("transition made an invalid record: %v", err)
		}
		return r
	}
}

func TestInit(t *testing.T) {
	r := mustInit(t)
	if got := strings.Join(r.SlotNames(), ","); got != "a,b" {
		t.Errorf("slots = %s, want a,b", got)
	}
	if r.Active != "a" || r.Trial != "" || r.Generation != 1 {
		t.Errorf("got %+v", r)
	}
	if s, _ := r.Slot("a"); s.State != StateGood {
		t.Errorf("a is %s", s.State)
	}
	if s, _ := r.Slot("b"); s.State != StateEmpty {
		t.Errorf("b is %s", s.State)
	}
	for _, tc := range []struct {
		slots  []string
		active string
	}{
		{[]string{"a", "b"}, "c"},
		{[]string{"a", "a"}, "a"},
		{[]string{"A", "b"}, "A"},
		{[]string{"a", "b/c"}, "a"},
		{[]string{"a", ""}, "a"},
	} {
		if _, err := Init(tc.slots, tc.active); err == nil {
			t.Errorf("Init(%q, %q) succeeded", tc.slots, tc.active)
		}
	}
	prev := Record{Generation: 41}
	r2, err := InitFrom(prev, []string{"x", "y", "z"}, "y")
	if err != nil || r2.Generation != 42 || r2.Active != "y" {
		t.Errorf("InitFrom = %+v, %v", r2, err)
	}
}

// TestTryExactlyN checks the semantics of try: `try b --tries N` allows
// exactly N boots of b; the (N+1)th decision marks b bad and boots a.
func TestTryExactlyN(t *testing.T) {
	for n := 1; n <= 5; n++ {
		r := must(t)(Try(mustInit(t), "b", n, testTrialID))
		for i := 1; i <= n; i++ {
			var d Decision
			d, r = Select(r)
			if d.Slot != "b" || d.Mode != ModeTrial {
				t.Fatalf("tries=%d boot %d: got %+v, want trial of b", n, i, d)
			}
			if s, _ := r.Slot("b"); s.TriesLeft != n-i {
				t.Fatalf("tries=%d boot %d: %d tries left, want %d", n, i, s.TriesLeft, n-i)
			}
		}
		d, r := Select(r)
		if d.Slot != "a" || d.Mode != ModeFallback {
			t.Fatalf("tries=%d boot %d: got %+v, want fallback to a", n, n+1, d)
		}
		if b, _ := r.Slot("b"); b.State != StateBad || !strings.Contains(b.Reason, "no tries left") {
			t.Errorf("b = %+v, want bad with a reason", b)
		}
		if r.Trial != "" || r.Active != "a" {
			t.Errorf("trial=%q active=%q", r.Trial, r.Active)
		}
		d, _ = Select(r)
		if d.Slot != "a" || d.Mode != ModeNormal {
			t.Errorf("after fallback: %+v, want normal boot of a", d)
		}
	}
}

func TestGoodSlotNeverLosesTries(t *testing.T) {
	r := mustInit(t)
	for i := 0; i < 1000; i++ {
		var d Decision
		d, r = Select(r)
		if d.Slot != "a" || d.Mode != ModeNormal {
			t.Fatalf("boot %d: %+v", i, d)
		}
		// Power cuts before the OS is up, fewer than the limit in a row,
		// change nothing; then the OS confirms.
		if i%DefaultMaxUnconfirmed == DefaultMaxUnconfirmed-1 {
			var err error
			if r, err = Confirm(r, "a"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a, _ := r.Slot("a"); a.State != StateGood {
		t.Fatalf("a = %+v after 1000 boots", a)
	}
}

// TestUnconfirmedBootsFallBack: a good slot that is handed over and never
// confirmed (it panics after the handover, its root fails verity, the
// watchdog resets it) is not chosen forever: after MaxUnconfirmed boots in
// a row the other good slot boots, and when it fails the same way,
// recovery (issue 9 item 2).
func TestUnconfirmedBootsFallBack(t *testing.T) {
	r := mustInit(t)
	r, _ = Try(r, "b", 1, testTrialID)
	r, _ = MarkGood(r, "b")
	r, _ = SetActive(r, "a")
	var d Decision
	for i := 0; i < 2; i++ {
		if d, r = Select(r); d.Slot != "a" || d.Mode != ModeNormal {
			t.Fatalf("boot %d: %+v", i, d)
		}
	}
	d, r, _ = Decide(r, Policy{MaxUnconfirmed: 2}, nil)
	if d.Slot != "b" || d.Mode != ModeFallback || r.Active != "b" || !strings.Contains(d.Reason, "never confirmed") {
		t.Fatalf("after 2 unconfirmed boots of a: %+v (active %s)", d, r.Active)
	}
	if a, _ := r.Slot("a"); a.State != StateGood {
		t.Errorf("a = %+v: an unconfirmed slot stays good", a)
	}
	d, r, _ = Decide(r, Policy{MaxUnconfirmed: 2}, nil)
	if d.Slot != "b" {
		t.Fatalf("b's second boot: %+v", d)
	}
	d, r, _ = Decide(r, Policy{MaxUnconfirmed: 2}, nil)
	if !d.Recovery() || !strings.Contains(d.Reason, "never confirmed") {
		t.Fatalf("both unconfirmed: %+v", d)
	}
	// Confirmation resets the count.
	if r2, err := Confirm(r, "b"); err != nil {
		t.Fatal(err)
	} else if d, _ := Select(r2); d.Slot != "b" || d.Mode != ModeNormal {
		t.Errorf("after b confirmed: %+v", d)
	}
	if _, err := Confirm(mustTry(t, r, "a"), "a"); err == nil {
		t.Error("Confirm of a trial slot succeeded: a trial is committed with MarkGood")
	}
}

func TestUpdateCommit(t *testing.T) {
	r := must(t)(Try(mustInit(t), "b", 3, testTrialID))
	d, r := Select(r)
	if d.Slot != "b" {
		t.Fatalf("got %+v", d)
	}
	r = must(t)(MarkGood(r, "b"))
	if r.Active != "b" || r.Trial != "" {
		t.Fatalf("after mark-good: %+v", r)
	}
	if a, _ := r.Slot("a"); a.State != StateGood {
		t.Errorf("a = %+v, want still good (the fallback)", a)
	}
	d, _ = Select(r)
	if d.Slot != "b" || d.Mode != ModeNormal {
		t.Errorf("got %+v, want b normal", d)
	}
}

func TestTransitionsTable(t *testing.T) {
	base := mustInit(t)
	trialB := must(t)(Try(base, "b", 2, testTrialID))
	goodAB := must(t)(MarkGood(trialB, "b"))
	onlyBad := must(t)(MarkBad(base, "a", "broken"))
	tests := []struct {
		name    string
		in      Record
		op      func(Record) (Record, error)
		wantErr error
		check   func(t *testing.T, r Record)
	}{
		{"try unknown slot", base, func(r Record) (Record, error) { return Try(r, "c", 1, testTrialID) }, ErrUnknownSlot, nil},
		{"try active slot", base, func(r Record) (Record, error) { return Try(r, "a", 1, testTrialID) }, ErrRefused, nil},
		{"try zero tries", base, func(r Record) (Record, error) { return Try(r, "b", 0, testTrialID) }, ErrRefused, nil},
		{"try too many tries", base, func(r Record) (Record, error) { return Try(r, "b", MaxTries+1, testTrialID) }, ErrRefused, nil},
		{"try again resets tries", trialB, func(r Record) (Record, error) { return Try(r, "b", 5, testTrialID) }, nil,
			func(t *testing.T, r Record) {
				if s, _ := r.Slot("b"); s.TriesLeft != 5 {
					t.Errorf("tries = %d", s.TriesLeft)
				}
			}},
		{"try other supersedes", must(t)(Try(must(t)(Init([]string{"a", "b", "c"}, "a")), "b", 2, testTrialID)),
			func(r Record) (Record, error) { return Try(r, "c", 1, testTrialID) }, nil,
			func(t *testing.T, r Record) {
				if b, _ := r.Slot("b"); b.State != StateBad || !strings.Contains(b.Reason, "superseded") {
					t.Errorf("b = %+v", b)
				}
				if r.Trial != "c" {
					t.Errorf("trial = %q", r.Trial)
				}
			}},
		{"mark-good empty", base, func(r Record) (Record, error) { return MarkGood(r, "b") }, ErrRefused, nil},
		{"mark-good unknown", base, func(r Record) (Record, error) { return MarkGood(r, "z") }, ErrUnknownSlot, nil},
		{"mark-good bad slot revives it", onlyBad, func(r Record) (Record, error) { return MarkGood(r, "a") }, nil,
			func(t *testing.T, r Record) {
				if a, _ := r.Slot("a"); a.State != StateGood || a.Reason != "" || r.Active != "a" {
					t.Errorf("got %+v", r)
				}
			}},
		{"mark-bad trial ends trial", trialB, func(r Record) (Record, error) { return MarkBad(r, "b", "health") }, nil,
			func(t *testing.T, r Record) {
				if r.Trial != "" || r.Active != "a" {
					t.Errorf("got %+v", r)
				}
			}},
		{"mark-bad active moves active", goodAB, func(r Record) (Record, error) { return MarkBad(r, "b", "x") }, nil,
			func(t *testing.T, r Record) {
				if r.Active != "a" {
					t.Errorf("active = %q, want a", r.Active)
				}
			}},
		{"mark-bad last good leaves no active", base, func(r Record) (Record, error) { return MarkBad(r, "a", "x") }, nil,
			func(t *testing.T, r Record) {
				if r.Active != "" {
					t.Errorf("active = %q", r.Active)
				}
				if d, _ := Select(r); !d.Recovery() {
					t.Errorf("decision %+v, want recovery", d)
				}
			}},
		{"set-active empty", base, func(r Record) (Record, error) { return SetActive(r, "b") }, ErrRefused, nil},
		{"set-active trial", trialB, func(r Record) (Record, error) { return SetActive(r, "b") }, ErrRefused, nil},
		{"set-active good", goodAB, func(r Record) (Record, error) { return SetActive(r, "a") }, nil,
			func(t *testing.T, r Record) {
				if d, _ := Select(r); d.Slot != "a" || d.Mode != ModeNormal {
					t.Errorf("decision %+v", d)
				}
			}},
		{"recovery request wins", goodAB, func(r Record) (Record, error) { return RequestRecovery(r, "user asked") }, nil,
			func(t *testing.T, r Record) {
				if d, _ := Select(r); !d.Recovery() || !strings.Contains(d.Reason, "user asked") {
					t.Errorf("decision %+v", d)
				}
			}},
		{"slot info", base, func(r Record) (Record, error) { return SetSlotInfo(r, "b", "2.0", 7) }, nil,
			func(t *testing.T, r Record) {
				if b, _ := r.Slot("b"); b.Version != "2.0" || b.SecurityVersion != 7 {
					t.Errorf("b = %+v", b)
				}
			}},
		{"slot info multi-line version", base, func(r Record) (Record, error) { return SetSlotInfo(r, "b", "2\n0", 7) }, ErrRefused, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.in.Clone()
			got, err := tc.op(tc.in)
			if !tc.in.Equal(before) {
				t.Fatalf("transition modified its input")
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("invalid result: %v", err)
			}
			if got.Generation <= tc.in.Generation {
				t.Errorf("generation %d -> %d", tc.in.Generation, got.Generation)
			}
			tc.check(t, got)
		})
	}
}

func TestSelectFallbackWithoutActive(t *testing.T) {
	r := mustInit(t)
	r = must(t)(Try(r, "b", 1, testTrialID))
	_, r = Select(r)
	r = must(t)(MarkGood(r, "b"))
	r = must(t)(MarkBad(r, "b", "verity error"))
	// a is still good and becomes active again.
	d, r := Select(r)
	if d.Slot != "a" {
		t.Fatalf("got %+v", d)
	}
	r = must(t)(MarkBad(r, "a", "kernel hash mismatch"))
	d, _ = Select(r)
	if !d.Recovery() {
		t.Fatalf("got %+v, want recovery", d)
	}
	for _, want := range []string{"no bootable slot", "a bad (kernel hash mismatch)", "b bad (verity error)"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q lacks %q", d.Reason, want)
		}
	}
}

func TestErrNoStateIsNotExist(t *testing.T) {
	if !errors.Is(ErrNoState, fs.ErrNotExist) {
		t.Error("ErrNoState does not match fs.ErrNotExist")
	}
	if errors.Is(ErrCorrupt, fs.ErrNotExist) {
		t.Error("ErrCorrupt matches fs.ErrNotExist")
	}
}

func TestInitWithoutActive(t *testing.T) {
	r := must(t)(Init([]string{"a", "b"}, ""))
	if r.Active != "" {
		t.Fatalf("active %q", r.Active)
	}
	if d, _ := Select(r); !d.Recovery() || !strings.Contains(d.Reason, "a empty; b empty") {
		t.Errorf("decision %+v", d)
	}
}

func TestReinstall(t *testing.T) {
	r := must(t)(Init(nil, "a"))
	r = must(t)(MarkBad(r, "a", "kernel digest mismatch"))
	r = must(t)(BeginReinstall(r, "a", "no bootable slot"))
	if a, _ := r.Slot("a"); a.State != StateEmpty || r.Reinstalling != "a" || r.Active != "" {
		t.Fatalf("after begin: %+v", r)
	}
	// A power cut now: the next decision resumes the reinstall and never
	// boots the half-written slot.
	if d, _ := Select(r); !d.Recovery() || !strings.Contains(d.Reason, "resuming the reinstall of slot a") {
		t.Fatalf("decision %+v", d)
	}
	for _, op := range []func(Record) (Record, error){
		func(r Record) (Record, error) { return Try(r, "a", 1, testTrialID) },
		func(r Record) (Record, error) { return MarkGood(r, "a") },
		func(r Record) (Record, error) { return MarkBad(r, "a", "x") },
		func(r Record) (Record, error) { return BeginReinstall(r, "b", "x") },
		func(r Record) (Record, error) { return FinishReinstall(r, "b", "1", 1, "t", "x") },
	} {
		if _, err := op(r); !errors.Is(err, ErrRefused) {
			t.Errorf("during the reinstall: %v, want ErrRefused", err)
		}
	}
	r = must(t)(RequestRecovery(r, "user"))
	r = must(t)(FinishReinstall(r, "a", "1.0-seed", 3, "2026-11-25T23:00:00Z", "no bootable slot"))
	if a, _ := r.Slot("a"); a.State != StateGood || a.Version != "1.0-seed" || r.Active != "a" || r.Reinstalling != "" || r.Recovery != "" {
		t.Fatalf("after finish: %+v", r)
	}
	if r.LastRecovery != "2026-11-25T23:00:00Z no bootable slot" {
		t.Errorf("last recovery %q", r.LastRecovery)
	}
	got, err := Decode(varsMap(Encode(r)))
	if err != nil || !got.Equal(r) {
		t.Errorf("round trip: %v", err)
	}
	if d, _ := Select(r); d.Slot != "a" || d.Mode != ModeNormal {
		t.Errorf("decision after recovery %+v", d)
	}
}

// TestRestrict: only the board's slots count (issue 9 item 9).
func TestRestrict(t *testing.T) {
	r, err := Init([]string{"a", "b", "zz"}, "zz")
	if err != nil {
		t.Fatal(err)
	}
	r, _ = MarkGood(mustTry(t, r, "a"), "a")
	r, _ = SetActive(r, "zz")
	r, _ = BeginReinstall(r, "zz", "x")
	n, notes := Restrict(r, []string{"a", "b"})
	if len(notes) != 1 || !strings.Contains(notes[0], `"zz"`) {
		t.Errorf("notes %q", notes)
	}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(n.SlotNames(), ","); names != "a,b" || n.Active != "a" || n.Reinstalling != "" || n.Generation != r.Generation+1 {
		t.Errorf("restricted %+v", n)
	}
	if d, _ := Select(n); d.Slot != "a" {
		t.Errorf("decision %+v", d)
	}
	// A record missing a board slot gets it, empty.
	one, _ := Init([]string{"a"}, "a")
	n, notes = Restrict(one, []string{"a", "b"})
	if s, ok := n.Slot("b"); !ok || s.State != StateEmpty || len(notes) != 1 {
		t.Errorf("added b: %+v %q", n, notes)
	}
	// The board's own record is left alone.
	same, _ := Init(nil, "a")
	if n, notes := Restrict(same, []string{"a", "b"}); len(notes) != 0 || !n.Equal(same) {
		t.Errorf("unchanged record changed: %+v %q", n, notes)
	}
}

func mustTry(t *testing.T, r Record, slot string) Record {
	t.Helper()
	n, err := Try(r, slot, 1, testTrialID)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLongReasonsStillCommit: the decision's reason quotes every slot's
// reason; with long ones it must still fit the record (a VM test powered
// off on "a text of 338 bytes" before).
func TestLongReasonsStillCommit(t *testing.T) {
	r := mustInit(t)
	r, _ = MarkBad(r, "a", strings.Repeat("a", MaxText))
	r, _ = MarkBad(r, "b", strings.Repeat("b", MaxText))
	d, n := Select(r)
	if !d.Recovery() {
		t.Fatalf("decision %+v", d)
	}
	if err := n.Validate(); err != nil {
		t.Fatalf("the decision's record does not validate: %v", err)
	}
	if len(n.Last.Reason) > MaxText || n.Last.Reason != d.Reason {
		t.Errorf("last reason %d bytes: %q", len(n.Last.Reason), n.Last.Reason)
	}
}

func TestInstall(t *testing.T) {
	ok := must(t)
	r := mustInit(t)
	// Into the active slot, an unknown one, or with a bad version: refused.
	for _, c := range []struct{ slot, version, want string }{
		{"a", "2.0", "active slot"},
		{"zz", "2.0", "unknown"},
		{"b", "2\\0", "backslash"},
	} {
		if _, err := BeginInstall(r, c.slot, c.version, testToken); !errors.Is(err, ErrRefused) && !errors.Is(err, ErrUnknownSlot) || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("BeginInstall(%s, %q) = %v, want a refusal about %q", c.slot, c.version, err, c.want)
		}
	}
	n := ok(BeginInstall(r, "b", "2.0", testToken))
	if n.Installing != "b" || n.InstallToken != testToken || n.Generation != r.Generation+1 {
		t.Fatalf("begin: %+v", n)
	}
	if s, _ := n.Slot("b"); s.State != StateEmpty || !strings.Contains(s.Reason, "being written") {
		t.Fatalf("slot b while written: %+v", s)
	}
	// While b is written: it is never chosen, nothing may try, mark or
	// activate it, and the record round-trips.
	if d, _ := Select(n); d.Slot != "a" || d.Mode != ModeNormal {
		t.Errorf("a boot while b is written: %+v", d)
	}
	for name, f := range map[string]func() (Record, error){
		"try":       func() (Record, error) { return Try(n, "b", 3, testTrialID) },
		"mark-good": func() (Record, error) { return MarkGood(n, "b") },
		"mark-bad":  func() (Record, error) { return MarkBad(n, "b", "x") },
	} {
		if _, err := f(); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "keel install") {
			t.Errorf("%s while b is written: %v", name, err)
		}
	}
	if d, err := Decode(varMap(Encode(n))); err != nil || !d.Equal(n) {
		t.Errorf("round trip: %v\n%+v\n%+v", err, d, n)
	}
	// Running it again is allowed (it resumes, and the earlier run can
	// no longer finish); another slot is not.
	again := ok(BeginInstall(n, "b", "2.1", testToken2))
	if again.InstallToken != testToken2 {
		t.Errorf("a second run's begin: %+v", again)
	}
	// Finish with a trial: one commit, b on trial (a new trial id), the
	// next boot takes it.
	f := ok(FinishInstall(n, "b", Finish{Token: testToken, Version: "2.0", SecurityVersion: 7, Tries: 3, TrialID: testTrialID}))
	if f.Installing != "" || f.InstallToken != "" || f.Trial != "b" || f.TrialID != testTrialID || f.Generation != n.Generation+1 {
		t.Fatalf("finish: %+v", f)
	}
	if s, _ := f.Slot("b"); s.State != StateTrial || s.TriesLeft != 3 || s.Version != "2.0" || s.SecurityVersion != 7 {
		t.Fatalf("slot b after the install: %+v", s)
	}
	if d, _ := Select(f); d.Slot != "b" || d.Mode != ModeTrial {
		t.Errorf("the boot after the install: %+v", d)
	}
	// With a trial running, another install is refused.
	if _, err := BeginInstall(f, "b", "3.0", testToken2); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "on trial") {
		t.Errorf("install during a trial: %v", err)
	}
	// Finish without a trial: b holds the update, still not bootable.
	nt := ok(FinishInstall(n, "b", Finish{Token: testToken, Version: "2.0", SecurityVersion: 7}))
	if s, _ := nt.Slot("b"); s.State != StateEmpty || s.Version != "2.0" || nt.Trial != "" || nt.TrialID != "" || nt.InstallToken != "" {
		t.Fatalf("--no-try: %+v", nt)
	}
	if tr := ok(Try(nt, "b", 2, testTrialID2)); tr.TrialID != testTrialID2 {
		t.Errorf("keel try after --no-try: %+v", tr)
	}
	// Finishing what is not being written is refused.
	if _, err := FinishInstall(r, "b", Finish{Token: testToken, Version: "2.0", SecurityVersion: 7, Tries: 3, TrialID: testTrialID}); !errors.Is(err, ErrRefused) {
		t.Errorf("finish without begin: %v", err)
	}
	// A run that was overtaken (another began after it) cannot finish,
	// with or without a trial; the one that overtook it can.
	for _, tries := range []int{0, 3} {
		fin := Finish{Token: testToken, Version: "2.0", SecurityVersion: 7, Tries: tries, TrialID: testTrialID}
		if _, err := FinishInstall(again, "b", fin); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "another install run began") {
			t.Errorf("a stale run's finish (tries %d): %v", tries, err)
		}
		fin.Token = ""
		if _, err := FinishInstall(again, "b", fin); !errors.Is(err, ErrRefused) {
			t.Errorf("a finish without a token (tries %d): %v", tries, err)
		}
	}
	ok(FinishInstall(again, "b", Finish{Token: testToken2, Version: "2.1", SecurityVersion: 7, Tries: 3, TrialID: testTrialID}))
	// A record written by an older keel has no token: no run can finish
	// (a run of this keel began it with one); a new run takes it over.
	old := n.Clone()
	old.InstallToken = ""
	if _, err := FinishInstall(old, "b", Finish{Token: testToken, Version: "2.0"}); !errors.Is(err, ErrRefused) {
		t.Errorf("finish of an install begun without a token: %v", err)
	}
	// Tokens and trial ids are ids.
	if _, err := BeginInstall(r, "b", "2.0", "not hex"); !errors.Is(err, ErrRefused) {
		t.Errorf("begin with a bad token: %v", err)
	}
	if _, err := FinishInstall(n, "b", Finish{Token: testToken, Version: "2.0", Tries: 3, TrialID: ""}); !errors.Is(err, ErrRefused) {
		t.Errorf("finish with a trial and no trial id: %v", err)
	}
	// Recovery pending or reinstalling: refused.
	rr := ok(RequestRecovery(r, "x"))
	if _, err := BeginInstall(rr, "b", "2.0", testToken); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "recover --cancel") {
		t.Errorf("install with recovery pending: %v", err)
	}
	// Recovery takes a half-written slot over.
	ri := ok(BeginReinstall(n, "b", "both bad"))
	if ri.Installing != "" || ri.InstallToken != "" || ri.Reinstalling != "b" {
		t.Errorf("reinstall of the slot being written: %+v", ri)
	}
	// A record naming a slot being written that is not empty is invalid.
	bad := n.Clone()
	bad.Slots[1].State = StateGood
	if err := bad.Validate(); err == nil {
		t.Error("a good slot that is being written validates")
	}
}

// TestTrialID: every new trial is named by the id its caller drew; the
// same trial keeps its id; the id goes with the trial.
func TestTrialID(t *testing.T) {
	ok := must(t)
	r := mustInit(t)
	tr := ok(Try(r, "b", 2, testTrialID))
	if tr.TrialID != testTrialID {
		t.Fatalf("try: %+v", tr)
	}
	// The slot already on trial: the same trial, its id stays.
	if again := ok(Try(tr, "b", 5, testTrialID2)); again.TrialID != testTrialID {
		t.Errorf("try of the slot on trial: id %q, want %q", again.TrialID, testTrialID)
	}
	// A trial without an id (an older keel armed it) gets the new one.
	old := tr.Clone()
	old.TrialID = ""
	if again := ok(Try(old, "b", 5, testTrialID2)); again.TrialID != testTrialID2 {
		t.Errorf("try of a slot on trial without an id: %q", again.TrialID)
	}
	// A trial of another slot supersedes it, with its own id.
	three := ok(Try(ok(Try(ok(SetSlotInfo(ok(Init([]string{"a", "b", "c"}, "a")), "c", "3", 1)), "b", 2, testTrialID)), "c", 2, testTrialID2))
	if three.Trial != "c" || three.TrialID != testTrialID2 {
		t.Errorf("a superseding trial: %+v", three)
	}
	// The trial's boots keep the id; its end drops it.
	_, booted := Select(tr)
	if booted.TrialID != testTrialID {
		t.Errorf("a trial boot changed the id: %+v", booted)
	}
	for name, n := range map[string]Record{
		"mark-good": ok(MarkGood(booted, "b")),
		"mark-bad":  ok(MarkBad(booted, "b", "x")),
		"reinstall": ok(BeginReinstall(booted, "b", "x")),
		"out of tries": func() Record {
			_, n := Select(booted)
			_, n = Select(n)
			return n
		}(),
		"restrict": func() Record { n, _ := Restrict(booted, []string{"a"}); return n }(),
	} {
		if n.Trial != "" || n.TrialID != "" {
			t.Errorf("%s: the trial ended, its id stays: %+v", name, n)
		}
	}
	// Try refuses what is not an id.
	for _, id := range []string{"", "xyz", strings.Repeat("a", 15), strings.Repeat("a", 65), strings.Repeat("A", 32)} {
		if _, err := Try(r, "b", 2, id); !errors.Is(err, ErrRefused) {
			t.Errorf("Try with id %q: %v", id, err)
		}
	}
	// WithTrialID names a trial without an id, and nothing else.
	if n := WithTrialID(old, testTrialID2); n.TrialID != testTrialID2 || old.TrialID != "" {
		t.Errorf("WithTrialID on a trial without an id: %+v (input %+v)", n, old)
	}
	for name, c := range map[string]struct {
		r  Record
		id string
	}{"an id already": {tr, testTrialID2}, "no trial": {r, testTrialID2}, "a bad id": {old, "nope"}} {
		if n := WithTrialID(c.r, c.id); !n.Equal(c.r) {
			t.Errorf("WithTrialID, %s: %+v", name, n)
		}
	}
	// Validate: an id only with a trial, and only an id.
	for name, f := range map[string]func(*Record){
		"id without trial":      func(n *Record) { n.Trial, n.Slots[1].State, n.Slots[1].TriesLeft = "", StateEmpty, 0 },
		"bad id":                func(n *Record) { n.TrialID = "../../etc" },
		"token without install": func(n *Record) { n.InstallToken = testToken },
	} {
		n := tr.Clone()
		f(&n)
		if err := n.Validate(); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func varMap(vs []Var) map[string]string {
	m := map[string]string{}
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}

// TestLastFallback: a trial out of tries records the fallback (failed
// slot, why, the slot taken instead, mode, generation); later normal boots
// and commands overwrite Last, never LastFallback; the next fallback
// replaces it.
func TestLastFallback(t *testing.T) {
	r := mustInit(t)
	r = must(t)(Try(r, "b", 1, testTrialID))
	d, r := Select(r) // b's one trial boot
	if d.Mode != ModeTrial || !r.LastFallback.IsZero() {
		t.Fatalf("trial boot %+v recorded fallback %+v", d, r.LastFallback)
	}
	d, r = Select(r) // b never marked good: back to a
	want := Fallback{Failed: "b", Slot: "a", Mode: ModeFallback, Generation: r.Generation,
		Reason: "trial of slot b failed: its tries ran out and it was never marked good"}
	if d.Mode != ModeFallback || r.LastFallback != want {
		t.Fatalf("after the failed trial: decision %+v, fallback %+v, want %+v", d, r.LastFallback, want)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r = must(t)(Confirm(r, "a"))
		d, r = Select(r)
	}
	r = must(t)(SetSlotInfo(r, "b", "3.0", 3))
	if d.Mode != ModeNormal || r.Last.Mode != ModeNormal || r.LastFallback != want {
		t.Fatalf("normal boots changed the last fallback: %+v (last %+v)", r.LastFallback, r.Last)
	}
	// The next fallback replaces it: a never confirmed, b good.
	r = must(t)(MarkGood(must(t)(Try(r, "b", 1, testTrialID)), "b"))
	r = must(t)(Confirm(must(t)(SetActive(r, "a")), "a"))
	for range DefaultMaxUnconfirmed {
		d, r = Select(r)
	}
	if d.Slot != "a" || r.LastFallback != want {
		t.Fatalf("unconfirmed boots of a: %+v, %+v", d, r.LastFallback)
	}
	d, r = Select(r)
	if d.Slot != "b" || d.Mode != ModeFallback || r.LastFallback.Failed != "a" || r.LastFallback.Slot != "b" ||
		r.LastFallback.Generation != r.Generation || !strings.Contains(r.LastFallback.Reason, "never confirmed") {
		t.Fatalf("a never confirmed: decision %+v, fallback %+v", d, r.LastFallback)
	}
}

// TestLastFallbackToRecovery: a trial out of tries with no good slot left
// is a fallback to recovery (no slot); a requested recovery is none.
func TestLastFallbackToRecovery(t *testing.T) {
	r := must(t)(Init(nil, ""))
	r = must(t)(Try(r, "b", 1, testTrialID))
	_, r = Select(r)
	d, r := Select(r)
	if !d.Recovery() || r.LastFallback.Failed != "b" || r.LastFallback.Mode != ModeRecovery || r.LastFallback.Slot != "" {
		t.Fatalf("decision %+v, fallback %+v", d, r.LastFallback)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	n := must(t)(RequestRecovery(mustInit(t), "operator"))
	if d, n := Select(n); !d.Recovery() || !n.LastFallback.IsZero() {
		t.Errorf("requested recovery %+v recorded a fallback %+v", d, n.LastFallback)
	}
}

// TestWithFallback: keel-init records a slot that failed in the boot; a
// decision that is no fallback records nothing.
func TestWithFallback(t *testing.T) {
	r := mustInit(t)
	r = must(t)(MarkGood(mustTry(t, r, "b"), "b"))
	for _, tc := range []struct {
		d    Decision
		want bool
	}{
		{Decision{Slot: "a", Mode: ModeFallback}, true},
		{Decision{Mode: ModeRecovery}, true},
		{Decision{Slot: "a", Mode: ModeNormal}, false},
		{Decision{Slot: "a", Mode: ModeTrial}, false},
		{Decision{Slot: "b", Mode: ModeFallback}, false}, // the failed slot itself
		{Decision{Slot: "a", Mode: ModeRecovery}, false}, // a reinstalled slot
		{Decision{Mode: ModeFallback}, false},
	} {
		n := WithFallback(r, tc.d, "b", "kernel digest\nmismatch")
		if got := !n.LastFallback.IsZero(); got != tc.want {
			t.Errorf("%+v: recorded %v, want %v", tc.d, got, tc.want)
			continue
		}
		if !tc.want {
			continue
		}
		want := Fallback{Failed: "b", Reason: "kernel digest mismatch", Slot: tc.d.Slot, Mode: tc.d.Mode, Generation: r.Generation}
		if n.LastFallback != want {
			t.Errorf("%+v: %+v, want %+v", tc.d, n.LastFallback, want)
		}
		if err := n.Validate(); err != nil {
			t.Errorf("%+v: %v", tc.d, err)
		}
	}
	if !r.LastFallback.IsZero() {
		t.Errorf("WithFallback changed its argument")
	}
}

// TestValidateFallback: a last fallback names the record's slots, a mode
// that fits (fallback to another slot, recovery to none), a generation
// the record reached, and a one-line reason of at most MaxText bytes.
func TestValidateFallback(t *testing.T) {
	r := mustInit(t)
	r.Generation = 9
	ok := Fallback{Failed: "b", Reason: "x", Slot: "a", Mode: ModeFallback, Generation: 9}
	r.LastFallback = ok
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Fallback){
		"unknown failed slot": func(f *Fallback) { f.Failed = "z" },
		"no failed slot":      func(f *Fallback) { f.Failed = "" },
		"unknown slot":        func(f *Fallback) { f.Slot = "z" },
		"same slot":           func(f *Fallback) { f.Slot = "b" },
		"fallback to nothing": func(f *Fallback) { f.Slot = "" },
		"recovery to a slot":  func(f *Fallback) { f.Mode = ModeRecovery },
		"normal mode":         func(f *Fallback) { f.Mode = ModeNormal },
		"future generation":   func(f *Fallback) { f.Generation = 10 },
		"generation 0":        func(f *Fallback) { f.Generation = 0 },
		"newline":             func(f *Fallback) { f.Reason = "a\nb" },
		"backslash":           func(f *Fallback) { f.Reason = `a\b` },
		"NUL":                 func(f *Fallback) { f.Reason = "a\x00b" },
		"too long":            func(f *Fallback) { f.Reason = strings.Repeat("r", MaxText+1) },
	} {
		bad := r.Clone()
		f(&bad.LastFallback)
		if err := bad.Validate(); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: Validate = %v, want ErrInvalidRecord", name, err)
		}
	}
}

// TestRestrictDropsLastOfDroppedSlot: the last outcome and last fallback
// naming a slot the board does not have are dropped with it (the record
// would not be valid otherwise, and keel-init could not commit it).
func TestRestrictDropsLastOfDroppedSlot(t *testing.T) {
	r := must(t)(Init([]string{"a", "b", "zz"}, "zz"))
	r = must(t)(Try(r, "b", 1, testTrialID))
	_, r = Select(r)
	_, r = Select(r) // b's trial failed: back to zz
	if r.Last.Slot != "zz" || r.LastFallback.Slot != "zz" {
		t.Fatalf("setup: last %+v, fallback %+v", r.Last, r.LastFallback)
	}
	n, _ := Restrict(r, []string{"a", "b"})
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if n.Last != (Outcome{}) || !n.LastFallback.IsZero() {
		t.Errorf("kept %+v, %+v", n.Last, n.LastFallback)
	}
	// Within the board's slots they stay.
	n, _ = Restrict(r, []string{"a", "b", "zz", "c"})
	if n.Last != r.Last || n.LastFallback != r.LastFallback {
		t.Errorf("dropped %+v, %+v", n.Last, n.LastFallback)
	}
}
