package bootenv

import (
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
//     began last is refused.
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
