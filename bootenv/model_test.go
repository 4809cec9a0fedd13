package bootenv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// event is one thing that can happen to a record: a boot decision or a CLI
// command. id is a fresh id (a trial id or an install token) the event may
// use, as its caller would draw one.
type event struct {
	name string
	do   func(r Record, id string) (Record, Decision, bool, error) // bool: is a Select
	// refused: the event must always be refused.
	refused bool
}

func modelEvents(slots []string, maxTries int, reinstall bool) []event {
	var evs []event
	evs = append(evs, event{name: "select", do: func(r Record, _ string) (Record, Decision, bool, error) {
		d, n := Select(r)
		return n, d, true, nil
	}}, event{name: "keel-init boot", do: func(r Record, id string) (Record, Decision, bool, error) {
		// keel-init names a trial armed without an id when it boots it.
		d, n := Select(r)
		if d.Mode == ModeTrial {
			n = WithTrialID(n, id)
		}
		return n, d, true, nil
	}})
	evs = append(evs, event{name: "request-recovery", do: func(r Record, _ string) (Record, Decision, bool, error) {
		n, err := RequestRecovery(r, "model")
		return n, Decision{}, false, err
	}})
	evs = append(evs, event{name: "cancel-recovery", do: func(r Record, _ string) (Record, Decision, bool, error) {
		n, err := CancelRecovery(r)
		return n, Decision{}, false, err
	}})
	for _, s := range slots {
		for tries := 1; tries <= maxTries; tries++ {
			evs = append(evs, event{name: fmt.Sprintf("try %s %d", s, tries), do: func(r Record, id string) (Record, Decision, bool, error) {
				n, err := Try(r, s, tries, id)
				return n, Decision{}, false, err
			}})
		}
		// An older keel's keel try: a trial without an id (an older keel
		// drops the id of a trial it writes).
		evs = append(evs, event{name: "old-keel-try " + s, do: func(r Record, id string) (Record, Decision, bool, error) {
			n, err := Try(r, s, 1, id)
			n.TrialID = ""
			return n, Decision{}, false, err
		}})
		if reinstall {
			evs = append(evs,
				event{name: "begin-reinstall " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
					n, err := BeginReinstall(r, s, "model")
					return n, Decision{}, false, err
				}},
				event{name: "finish-reinstall " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
					n, err := FinishReinstall(r, s, "seed", 1, "2026-01-01T00:00:00Z", "model")
					return n, Decision{}, false, err
				}})
		}
		if reinstall {
			evs = append(evs,
				event{name: "begin-install " + s, do: func(r Record, id string) (Record, Decision, bool, error) {
					n, err := BeginInstall(r, s, "2.0", id)
					return n, Decision{}, false, err
				}},
				// An older keel's begin: no token.
				event{name: "old-keel-begin-install " + s, do: func(r Record, id string) (Record, Decision, bool, error) {
					n, err := BeginInstall(r, s, "2.0", id)
					n.InstallToken = ""
					return n, Decision{}, false, err
				}},
				// The run that began last finishes.
				event{name: "finish-install " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
					n, err := FinishInstall(r, s, Finish{Token: r.InstallToken, Version: "2.0", SecurityVersion: 2})
					return n, Decision{}, false, err
				}},
				event{name: "finish-install-try " + s, do: func(r Record, id string) (Record, Decision, bool, error) {
					n, err := FinishInstall(r, s, Finish{Token: r.InstallToken, Version: "2.0", SecurityVersion: 2, Tries: 2, TrialID: id})
					return n, Decision{}, false, err
				}},
				// A run another began after: never finishes.
				event{name: "finish-install-stale " + s, refused: true, do: func(r Record, id string) (Record, Decision, bool, error) {
					n, err := FinishInstall(r, s, Finish{Token: id, Version: "2.0", SecurityVersion: 2, Tries: 2, TrialID: id})
					return n, Decision{}, false, err
				}})
		}
		evs = append(evs,
			event{name: "mark-good " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
				n, err := MarkGood(r, s)
				return n, Decision{}, false, err
			}},
			event{name: "mark-bad " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
				n, err := MarkBad(r, s, "model")
				return n, Decision{}, false, err
			}},
			event{name: "set-active " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
				n, err := SetActive(r, s)
				return n, Decision{}, false, err
			}},
			event{name: "confirm " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
				n, err := Confirm(r, s)
				return n, Decision{}, false, err
			}},
		)
	}
	return evs
}

// stateKey identifies a record's state without its generation and last
// fallback: no decision reads the fallback (its generation alone would
// make the walk endless), and checkFallback checks it on every
// transition. Of the trial id and the install token it keeps whether
// there is one (every event draws a fresh id); checkIDs checks their
// values on every transition.
func stateKey(r Record) string {
	r.Generation = 0
	r.LastFallback = Fallback{}
	r.TrialID = strconv.FormatBool(r.TrialID != "")
	r.InstallToken = strconv.FormatBool(r.InstallToken != "")
	return fmt.Sprintf("%+v", r)
}

// TestModel walks every state reachable from Init (both slots, tries 0..3,
// every event) and checks the invariants after each step:
//   - every record is valid (at most one slot on trial, active good or none);
//   - the generation increases with every change;
//   - a boot decision never takes anything from a good slot (it counts the
//     booted slot's unconfirmed boot, nothing else);
//   - a good slot handed over DefaultMaxUnconfirmed times in a row without
//     confirmation is passed over (recovery only when no slot is usable);
//   - a normal or fallback boot takes the active slot, which is good;
//   - a trial boot takes the trial slot and uses exactly one try;
//   - recovery is chosen only if requested or no slot is bootable;
//   - the last fallback changes only with a boot decision that falls back
//     (or goes to recovery) because a slot failed: a trial out of tries,
//     the active slot never confirmed; it then names that slot, the slot
//     taken instead and the decision's generation;
//   - from every state, booting repeatedly (no other events) settles on a
//     normal boot or on recovery within MaxTries+2 boots: no loop;
//   - a trial id and an install token come and go with their trial and
//     install (checkIDs): a new trial gets the id its caller drew, the
//     same trial keeps its id through every boot and command, keel-init
//     names a trial without one, and a finish by any run but the one that
//     began last is refused;
//   - the slot choices (checkTargets): an install goes to a slot of the
//     record that is neither active, on trial nor running, and is refused
//     only when there is none; a rollback goes to the one other good slot,
//     which SetActive accepts, and is refused otherwise.
func TestModel(t *testing.T) {
	models := [][]string{{"a", "b"}, {"a", "b", "c"}}
	if testing.Short() {
		models = models[:1]
	}
	for _, slots := range models {
		maxTries := 3
		if len(slots) == 3 {
			maxTries = 2
		}
		start, err := Init(slots, "a")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{stateKey(start): true}
		queue := []Record{start}
		// Recovery's reinstall events multiply the states by ten: the
		// two-slot model walks them, the three-slot one does not.
		events := modelEvents(slots, maxTries, len(slots) == 2)
		steps, ids := 0, 0
		for len(queue) > 0 {
			r := queue[0]
			queue = queue[1:]
			checkSettles(t, r)
			checkTargets(t, r)
			rKey := stateKey(r)
			for _, ev := range events {
				ids++
				id := fmt.Sprintf("%032x", ids) // fresh: never drawn before
				n, d, isSelect, err := ev.do(r, id)
				if err != nil {
					if err := r.Validate(); err != nil {
						t.Fatalf("%s: refused on an invalid record: %v", ev.name, err)
					}
					continue
				}
				steps++
				where := ev.name + " on " + rKey
				if ev.refused {
					t.Fatalf("%s: not refused: %+v", where, n)
				}
				checkIDs(t, where, ev.name, id, r, d, n)
				if err := n.Validate(); err != nil {
					t.Fatalf("%s: invalid result: %v", where, err)
				}
				if n.Generation != r.Generation+1 {
					t.Fatalf("%s: generation %d -> %d", where, r.Generation, n.Generation)
				}
				if isSelect {
					checkSelect(t, where, r, d, n)
				} else if n.LastFallback != r.LastFallback {
					t.Fatalf("%s: changed the last fallback %+v -> %+v", where, r.LastFallback, n.LastFallback)
				}
				if k := stateKey(n); !seen[k] {
					seen[k] = true
					queue = append(queue, n)
				}
			}
		}
		t.Logf("slots %v: %d reachable states, %d transitions checked", slots, len(seen), steps)
		if len(slots) == 2 && len(seen) < 50 {
			t.Errorf("only %d states reached: the model is not exploring", len(seen))
		}
	}
}

// checkIDs checks the trial id and install token of n, the record event
// (given the fresh id) made of r (d: its decision, if a boot).
func checkIDs(t *testing.T, where, event, id string, r Record, d Decision, n Record) {
	t.Helper()
	newTrial := n.Trial != "" && (n.Trial != r.Trial || r.TrialID == "" && n.TrialID != "")
	older := strings.HasPrefix(event, "old-keel-")
	switch {
	case n.Trial == "" && n.TrialID != "":
		t.Fatalf("%s: a trial id without a trial: %+v", where, n)
	case older:
		if n.TrialID != "" {
			t.Fatalf("%s: an older keel's trial has id %q", where, n.TrialID)
		}
	case n.Trial != "" && n.Trial == r.Trial && r.TrialID != "" && n.TrialID != r.TrialID:
		t.Fatalf("%s: the trial of slot %s changed its id %q -> %q", where, n.Trial, r.TrialID, n.TrialID)
	case newTrial && n.TrialID != id:
		t.Fatalf("%s: a new trial of slot %s has id %q, want the fresh %q", where, n.Trial, n.TrialID, id)
	case newTrial && !strings.HasPrefix(event, "try ") && !strings.HasPrefix(event, "finish-install-try") && event != "keel-init boot":
		t.Fatalf("%s: a new trial id %q", where, n.TrialID)
	}
	if event == "keel-init boot" && d.Mode == ModeTrial && n.TrialID == "" {
		t.Fatalf("%s: keel-init boots the trial of slot %s without naming it", where, d.Slot)
	}
	switch {
	case n.Installing == "" && n.InstallToken != "":
		t.Fatalf("%s: an install token without an install: %+v", where, n)
	case strings.HasPrefix(event, "begin-install"):
		if n.InstallToken != id {
			t.Fatalf("%s: the run's token %q, want %q", where, n.InstallToken, id)
		}
	case strings.HasPrefix(event, "old-keel-begin-install"):
	case n.Installing != "" && n.InstallToken != r.InstallToken:
		t.Fatalf("%s: the install token changed %q -> %q", where, r.InstallToken, n.InstallToken)
	}
	if strings.HasPrefix(event, "finish-install") && r.InstallToken == "" {
		t.Fatalf("%s: an install begun without a token was finished", where)
	}
}

// checkTargets checks InstallTarget (offline and with each slot running)
// and RollbackTarget on r.
func checkTargets(t *testing.T, r Record) {
	t.Helper()
	for _, running := range append([]string{""}, r.SlotNames()...) {
		free := 0
		for _, s := range r.Slots {
			if s.Name != r.Active && s.Name != r.Trial && s.Name != running {
				free++
			}
		}
		got, err := InstallTarget(r, running)
		switch {
		case free == 0 && !errors.Is(err, ErrRefused):
			t.Fatalf("install target on %s (running %q): %q, %v; want a refusal", stateKey(r), running, got, err)
		case free > 0 && err != nil:
			t.Fatalf("install target on %s (running %q): refused with a free slot: %v", stateKey(r), running, err)
		case err == nil:
			if _, ok := r.Slot(got); !ok || got == r.Active || got == r.Trial || got == running {
				t.Fatalf("install target on %s (running %q): slot %q", stateKey(r), running, got)
			}
		}
	}
	var good []string
	for _, s := range r.Slots {
		if s.Name != r.Active && s.State == StateGood {
			good = append(good, s.Name)
		}
	}
	got, err := RollbackTarget(r)
	switch {
	case r.Trial != "" || r.Active == "" || len(good) != 1:
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("rollback target on %s: %q, %v; want a refusal", stateKey(r), got, err)
		}
	case err != nil || got != good[0]:
		t.Fatalf("rollback target on %s: %q, %v; want slot %s", stateKey(r), got, err, good[0])
	default:
		if _, err := SetActive(r, got); err != nil {
			t.Fatalf("rollback target on %s: slot %s, which SetActive refuses: %v", stateKey(r), got, err)
		}
	}
}

func checkSelect(t *testing.T, where string, old Record, d Decision, n Record) {
	t.Helper()
	for _, s := range old.Slots {
		if s.State == StateGood {
			// Only the booted slot's unconfirmed count may change, by one.
			want := s
			if s.Name == d.Slot {
				want.Unconfirmed++
			}
			if ns, _ := n.Slot(s.Name); ns != want {
				t.Fatalf("%s: good slot %s changed to %+v", where, s.Name, ns)
			}
		}
	}
	if n.Last != (Outcome{Slot: d.Slot, Mode: d.Mode, Reason: d.Reason}) {
		t.Fatalf("%s: last outcome %+v does not match decision %+v", where, n.Last, d)
	}
	checkFallback(t, where, old, d, n)
	if old.Installing != "" && d.Slot == old.Installing {
		t.Fatalf("%s: slot %s is being written by an update, but the decision boots it: %+v", where, old.Installing, d)
	}
	if old.Reinstalling != "" && d.Mode != ModeRecovery {
		t.Fatalf("%s: slot %s is being reinstalled, but the decision is %+v", where, old.Reinstalling, d)
	}
	switch d.Mode {
	case ModeNormal, ModeFallback:
		s, _ := n.Slot(d.Slot)
		if d.Slot != n.Active || s.State != StateGood {
			t.Fatalf("%s: %s boot of %s, but active is %q and the slot is %s", where, d.Mode, d.Slot, n.Active, s.State)
		}
		if d.Mode == ModeNormal && d.Slot != old.Active {
			t.Fatalf("%s: normal boot of %s, but the active slot was %q", where, d.Slot, old.Active)
		}
	case ModeTrial:
		os, _ := old.Slot(d.Slot)
		ns, _ := n.Slot(d.Slot)
		if old.Trial != d.Slot || ns.State != StateTrial || ns.TriesLeft != os.TriesLeft-1 {
			t.Fatalf("%s: trial boot of %s: before %+v after %+v", where, d.Slot, os, ns)
		}
	case ModeRecovery:
		if old.Recovery != "" || old.Reinstalling != "" {
			break
		}
		for _, s := range n.Slots {
			if (s.State == StateGood && s.Unconfirmed < DefaultMaxUnconfirmed) || (s.State == StateTrial && s.TriesLeft > 0) {
				t.Fatalf("%s: recovery chosen but slot %s is %s (%d unconfirmed boots)", where, s.Name, s.State, s.Unconfirmed)
			}
		}
	default:
		t.Fatalf("%s: decision without a mode: %+v", where, d)
	}
}

func checkSettles(t *testing.T, r Record) {
	t.Helper()
	for i := 0; i < MaxTries+2; i++ {
		d, n := Select(r)
		if d.Mode == ModeNormal || d.Mode == ModeRecovery {
			return
		}
		r = n
	}
	t.Fatalf("booting %s never settles", stateKey(r))
}

// checkFallback: a decision records a fallback exactly when it passes over
// a failed slot (the trial out of tries first, else the active slot never
// confirmed), and keeps the previous one otherwise.
func checkFallback(t *testing.T, where string, old Record, d Decision, n Record) {
	t.Helper()
	failed := ""
	if old.Recovery == "" && old.Reinstalling == "" {
		if s, ok := old.Slot(old.Trial); ok && s.TriesLeft == 0 {
			failed = s.Name
		} else if ok {
			// The trial boots: nothing failed.
		} else if a, ok := old.Slot(old.Active); ok && a.Unconfirmed >= DefaultMaxUnconfirmed {
			failed = a.Name
		}
	}
	if failed == "" {
		if n.LastFallback != old.LastFallback {
			t.Fatalf("%s: decision %+v without a failed slot changed the last fallback %+v -> %+v", where, d, old.LastFallback, n.LastFallback)
		}
		return
	}
	want := Fallback{Failed: failed, Slot: d.Slot, Mode: d.Mode, Generation: n.Generation, Reason: n.LastFallback.Reason}
	if n.LastFallback != want || !strings.Contains(n.LastFallback.Reason, "slot "+failed) || (d.Mode != ModeFallback && d.Mode != ModeRecovery) {
		t.Fatalf("%s: slot %s failed, decision %+v, last fallback %+v", where, failed, d, n.LastFallback)
	}
}

// endEvidence are the ways a boot can end that keel-init can read, by
// name, for TestModelEnds' boots.
var endEvidence = []struct {
	name string
	ev   Evidence
}{
	{"power-loss", evPowerLoss},
	{"watchdog", evWatchdog},
	{"panic", evPanic},
	{"kexec", evKexec},
	{"unknown", evNothing},
}

// modelPolicy is TestModelEnds' board: two ends in a row may not use a
// trial's try.
var modelPolicy = Policy{MaxUncounted: 2}

// endKey is stateKey for TestModelEnds: the last end is left out too (no
// decision reads it; checkEnd checks it on every boot), the shutdown note
// and the uncounted ends are kept (Classify and WithEnd read them).
func endKey(r Record) string {
	r.LastEnd = End{}
	return stateKey(r)
}

// TestModelEnds walks every state reachable from Init with a trial's
// life (try, mark-good, mark-bad, set-active, confirm), the OS's
// shutdown notes (keel note-shutdown) and keel-init's boots after every
// way a boot can end (Classify, WithEnd, Decide with K=2), and checks
// after each step:
//   - every record is valid, and every commit counts one generation;
//   - keel-init's boot clears the note, and records how the boot before
//     it ended (none when no decision had booted a slot);
//   - a committed boot ends marked-good, and a boot of a pending trial
//     never does;
//   - the end of a trial's boot keeps its try used when it counts
//     (watchdog, panic, reboot, unknown) and starts the run again; gives
//     it back when it does not (power-loss, kexec), up to K in a row,
//     then counts; an end that is no trial's changes no slot;
//   - the decision after it obeys checkSelect (a trial uses exactly one
//     try of what the end left it; a good slot loses nothing);
//   - from every state, booting with power cuts (or kexecs) forever
//     settles on a normal boot or recovery: a trial cannot live forever
//     on ends that do not count.
func TestModelEnds(t *testing.T) {
	slots := []string{"a", "b"}
	start, err := Init(slots, "a")
	if err != nil {
		t.Fatal(err)
	}
	var events []event
	for _, s := range slots {
		for tries := 1; tries <= 2; tries++ {
			events = append(events, event{name: fmt.Sprintf("try %s %d", s, tries), do: func(r Record, id string) (Record, Decision, bool, error) {
				n, err := Try(r, s, tries, id)
				return n, Decision{}, false, err
			}})
		}
		for _, c := range []struct {
			name string
			f    func(Record, string) (Record, error)
		}{
			{"mark-good", MarkGood},
			{"mark-bad", func(r Record, s string) (Record, error) { return MarkBad(r, s, "model") }},
			{"set-active", SetActive},
			{"confirm", Confirm},
		} {
			events = append(events, event{name: c.name + " " + s, do: func(r Record, _ string) (Record, Decision, bool, error) {
				n, err := c.f(r, s)
				return n, Decision{}, false, err
			}})
		}
	}
	for _, note := range []string{NoteReboot, NoteKexec, NoteKeelInit} {
		events = append(events, event{name: "note-shutdown " + note, do: func(r Record, _ string) (Record, Decision, bool, error) {
			n, err := NoteShutdown(r, r.Last.Slot, note)
			return n, Decision{}, false, err
		}})
	}
	seen := map[string]bool{endKey(start): true}
	queue := []Record{start}
	steps := 0
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		checkSettlesEnds(t, r)
		rKey := endKey(r)
		var next []Record
		for i, ev := range events {
			n, _, _, err := ev.do(r, fmt.Sprintf("%032x", i+1))
			if err != nil {
				continue
			}
			where := ev.name + " on " + rKey
			if err := n.Validate(); err != nil {
				t.Fatalf("%s: invalid result: %v", where, err)
			}
			if n.Generation != r.Generation+1 {
				t.Fatalf("%s: generation %d -> %d", where, r.Generation, n.Generation)
			}
			next = append(next, n)
		}
		for _, b := range endEvidence {
			where := "boot after " + b.name + " on " + rKey
			e := Classify(r, b.ev)
			settled := WithEnd(r, e, modelPolicy)
			d, n, ok := Decide(settled, modelPolicy, nil)
			if !ok {
				t.Fatalf("%s: no decision", where)
			}
			if err := n.Validate(); err != nil {
				t.Fatalf("%s: invalid result: %v", where, err)
			}
			if n.Generation != r.Generation+1 {
				t.Fatalf("%s: generation %d -> %d", where, r.Generation, n.Generation)
			}
			checkEnd(t, where, r, e, settled, n)
			checkSelect(t, where, settled, d, n)
			next = append(next, n)
		}
		for _, n := range next {
			steps++
			if k := endKey(n); !seen[k] {
				seen[k] = true
				queue = append(queue, n)
			}
		}
	}
	t.Logf("%d reachable states, %d transitions checked", len(seen), steps)
	if len(seen) < 200 {
		t.Errorf("only %d states reached: the model is not exploring", len(seen))
	}
}

// checkEnd checks keel-init's settling of how the boot before r's next
// decision ended: e is Classify's, settled is WithEnd's, n the record
// committed with the decision.
func checkEnd(t *testing.T, where string, r Record, e End, settled, n Record) {
	t.Helper()
	if n.Shutdown != "" || settled.Shutdown != "" {
		t.Fatalf("%s: the note %q outlived the boot's decision", where, n.Shutdown)
	}
	switch {
	case r.Last.Slot == "" && !e.IsZero():
		t.Fatalf("%s: no boot to explain, yet %+v", where, e)
	case r.Last.Slot != "" && (e.Slot != r.Last.Slot || e.Mode != r.Last.Mode || !e.How.valid()):
		t.Fatalf("%s: the end %+v is not of the last boot %+v", where, e, r.Last)
	case !e.IsZero() && n.LastEnd != settled.LastEnd:
		t.Fatalf("%s: the decision changed the last end %+v -> %+v", where, settled.LastEnd, n.LastEnd)
	}
	if r.pendingTrial() && e.How == EndMarkedGood {
		t.Fatalf("%s: a pending trial's boot ended marked-good", where)
	}
	if s, ok := r.Slot(r.Last.Slot); ok && !r.pendingTrial() && s.State == StateGood && s.Unconfirmed == 0 && e.How != EndMarkedGood {
		t.Fatalf("%s: the committed boot of slot %s ended %s", where, s.Name, e.How)
	}
	if !r.pendingTrial() {
		if !slicesEqual(settled.Slots, r.Slots) {
			t.Fatalf("%s: an end that is no trial's changed the slots %+v -> %+v", where, r.Slots, settled.Slots)
		}
		return
	}
	old, _ := r.Slot(r.Trial)
	s, _ := settled.Slot(r.Trial)
	k := modelPolicy.maxUncounted()
	// The policy, written out (not How.Counts): which ends use a try.
	counts := map[How]bool{EndWatchdog: true, EndPanic: true, EndReboot: true, EndUnknown: true, EndPowerLoss: false, EndKexec: false}
	c, known := counts[e.How]
	if !known {
		t.Fatalf("%s: a pending trial's boot ended %q", where, e.How)
	}
	switch {
	case c:
		if s.TriesLeft != old.TriesLeft || s.Uncounted != 0 {
			t.Fatalf("%s: a %s end: %+v -> %+v, want the try used and the run ended", where, e.How, old, s)
		}
	case old.Uncounted < k:
		if s.TriesLeft != old.TriesLeft+1 || s.Uncounted != old.Uncounted+1 {
			t.Fatalf("%s: a %s end (%d in a row before): %+v -> %+v, want the try back", where, e.How, old.Uncounted, old, s)
		}
	default:
		if s.TriesLeft != old.TriesLeft || s.Uncounted != old.Uncounted+1 {
			t.Fatalf("%s: a %s end past the bound: %+v -> %+v, want the try used", where, e.How, old, s)
		}
	}
}

// checkSettlesEnds: booting r again and again, each boot ending in a
// power cut (or each in a kexec), reaches a normal boot or recovery.
func checkSettlesEnds(t *testing.T, r Record) {
	t.Helper()
	for _, ev := range []Evidence{evPowerLoss, evKexec} {
		n := r
		bound := (MaxTries + 2) * (modelPolicy.maxUncounted() + 2)
		for i := 0; ; i++ {
			if i > bound {
				t.Fatalf("booting %s with %+v never settles", endKey(r), ev)
			}
			_, d, next := bootAfter(n, ev, modelPolicy)
			if d.Mode == ModeNormal || d.Mode == ModeRecovery {
				break
			}
			n = next
		}
	}
}
