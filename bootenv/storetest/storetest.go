// Package storetest is the conformance suite for bootenv.Store backends:
// every backend (U-Boot env on a file, block device or MTD; efivarfs; the
// in-memory store) runs Run, as go-tpm runs one suite over its transports.
package storetest

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
)

// Opener opens the backend under test. Every call must open the same
// storage afresh (as a new process would), so that the suite can check
// what survives a reopen.
type Opener func() (bootenv.Store, error)

// Run runs the conformance suite. newBackend is called once per subtest and
// returns an Opener over new, empty storage.
func Run(t *testing.T, newBackend func(t *testing.T) Opener) {
	t.Run("EmptyIsNoState", func(t *testing.T) {
		s := mustOpen(t, newBackend(t))
		_, err := s.Load()
		if !errors.Is(err, bootenv.ErrNoState) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load on empty storage: %v, want ErrNoState (fs.ErrNotExist)", err)
		}
	})
	t.Run("CommitLoadReopen", func(t *testing.T) {
		open := newBackend(t)
		s := mustOpen(t, open)
		for i, r := range history(t) {
			if err := s.Commit(r); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
			got, err := s.Load()
			if err != nil {
				t.Fatalf("load after commit %d: %v", i, err)
			}
			if !got.Equal(r) {
				t.Fatalf("commit %d: loaded\n%+v\nwant\n%+v", i, got, r)
			}
			again, err := mustOpen(t, open).Load()
			if err != nil || !again.Equal(r) {
				t.Fatalf("commit %d: after reopen: %+v, %v", i, again, err)
			}
		}
	})
	t.Run("InvalidCommitWritesNothing", func(t *testing.T) {
		s := mustOpen(t, newBackend(t))
		r := mustInit(t)
		if err := s.Commit(r); err != nil {
			t.Fatal(err)
		}
		bad := r.Clone()
		bad.Generation++
		bad.Active = "b" // b is empty: invalid
		if err := s.Commit(bad); !errors.Is(err, bootenv.ErrInvalidRecord) {
			t.Fatalf("Commit(invalid) = %v, want ErrInvalidRecord", err)
		}
		got, err := s.Load()
		if err != nil || !got.Equal(r) {
			t.Fatalf("after refused commit: %+v, %v; want the old record", got, err)
		}
	})
	t.Run("StaleGenerationRefused", func(t *testing.T) {
		s := mustOpen(t, newBackend(t))
		r := mustInit(t)
		_, next := bootenv.Select(r)
		if err := s.Commit(next); err != nil {
			t.Fatal(err)
		}
		// r is older than what is stored: committing it would undo a change
		// that another writer made.
		if err := s.Commit(r); !errors.Is(err, bootenv.ErrStale) {
			t.Fatalf("Commit(stale) = %v, want ErrStale", err)
		}
		got, err := s.Load()
		if err != nil || !got.Equal(next) {
			t.Fatalf("after stale commit: %+v, %v", got, err)
		}
	})
	t.Run("LargeRecord", func(t *testing.T) {
		s := mustOpen(t, newBackend(t))
		var names []string
		for i := 0; i < bootenv.MaxSlots; i++ {
			names = append(names, fmt.Sprintf("slot%d", i))
		}
		r, err := bootenv.Init(names, "slot0")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if r, err = bootenv.SetSlotInfo(r, n, strings.Repeat("v", 100), 1<<40); err != nil {
				t.Fatal(err)
			}
		}
		// The longest last fallback keel writes.
		r = bootenv.WithFallback(r, bootenv.Decision{Slot: "slot0", Mode: bootenv.ModeFallback}, names[len(names)-1], strings.Repeat("f", bootenv.MaxText))
		if len(r.LastFallback.Reason) != bootenv.MaxText {
			t.Fatalf("fallback reason of %d bytes", len(r.LastFallback.Reason))
		}
		// And the longest end keel writes, with a note.
		r.LastEnd = bootenv.End{How: bootenv.EndPowerLoss, Slot: names[len(names)-1], Mode: bootenv.ModeTrial, Detail: strings.Repeat("e", bootenv.MaxText)}
		r.Shutdown = bootenv.NoteKeelInit
		if err := s.Commit(r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load()
		if err != nil || !got.Equal(r) {
			t.Fatalf("large record: %+v, %v", got, err)
		}
	})
	t.Run("LastFallbackKept", func(t *testing.T) {
		// A failed trial's fallback survives a reopen and the normal boots
		// after it; a record without one loads without one.
		open := newBackend(t)
		s := mustOpen(t, open)
		r := mustInit(t)
		if err := s.Commit(r); err != nil {
			t.Fatal(err)
		}
		if got, err := mustOpen(t, open).Load(); err != nil || !got.LastFallback.IsZero() {
			t.Fatalf("a record without a fallback loads %+v, %v", got.LastFallback, err)
		}
		r, err := bootenv.Try(r, "b", 1, bootenv.NewID())
		if err != nil {
			t.Fatal(err)
		}
		for range 4 { // b's trial boot, the fallback to a, two normal boots
			_, r = bootenv.Select(r)
			if err := s.Commit(r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := mustOpen(t, open).Load()
		if err != nil {
			t.Fatal(err)
		}
		if f := got.LastFallback; f.Failed != "b" || f.Slot != "a" || f.Mode != bootenv.ModeFallback || f.Generation != r.Generation-2 || f.Reason == "" {
			t.Fatalf("last fallback after reopen: %+v (generation %d)", f, got.Generation)
		}
		if !got.Equal(r) {
			t.Fatalf("loaded\n%+v\nwant\n%+v", got, r)
		}
	})
	t.Run("EndsKept", func(t *testing.T) {
		// A trial's boots cut by the power (their uncounted ends, how
		// the last one ended) and the running boot's shutdown note
		// survive a reopen, and the next boot settles them.
		open := newBackend(t)
		s := mustOpen(t, open)
		r, err := bootenv.Try(mustInit(t), "b", 1, bootenv.NewID())
		if err != nil {
			t.Fatal(err)
		}
		_, r = bootenv.Select(r)
		if err := s.Commit(r); err != nil {
			t.Fatal(err)
		}
		for range 2 { // two boots cut, then a noted reboot
			got, err := mustOpen(t, open).Load()
			if err != nil || !got.Equal(r) {
				t.Fatalf("after reopen: %+v, %v; want %+v", got, err, r)
			}
			_, r, _ = bootenv.Decide(bootenv.WithEnd(got, bootenv.Classify(got, bootenv.Evidence{WatchdogRead: true}), bootenv.Policy{}), bootenv.Policy{}, nil)
			if err := s.Commit(r); err != nil {
				t.Fatal(err)
			}
		}
		if r, err = bootenv.NoteShutdown(r, "b", bootenv.NoteReboot); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(r); err != nil {
			t.Fatal(err)
		}
		got, err := mustOpen(t, open).Load()
		if err != nil || !got.Equal(r) {
			t.Fatalf("after reopen: %+v, %v; want %+v", got, err, r)
		}
		b, _ := got.Slot("b")
		if b.Uncounted != 2 || b.TriesLeft != 0 || got.LastEnd.How != bootenv.EndPowerLoss || got.Shutdown != bootenv.NoteReboot {
			t.Fatalf("loaded b %+v, last end %+v, note %q", b, got.LastEnd, got.Shutdown)
		}
	})
	t.Run("Describe", func(t *testing.T) {
		s := mustOpen(t, newBackend(t))
		d, ok := s.(bootenv.Describer)
		if !ok {
			t.Fatalf("%T does not implement bootenv.Describer", s)
		}
		info := d.Describe()
		if info.Backend == "" || info.Location == "" {
			t.Errorf("Describe() = %+v: backend and location must be set", info)
		}
		if !info.PowerSafe && info.Note == "" {
			t.Errorf("Describe() = %+v: a store that is not power-safe must say why", info)
		}
	})
}

func mustOpen(t *testing.T, open Opener) bootenv.Store {
	t.Helper()
	s, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func mustInit(t *testing.T) bootenv.Record {
	t.Helper()
	r, err := bootenv.Init(nil, "a")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// history is a sequence of records a device goes through: first boot, an
// update tried and committed, a failed trial, an update being written
// (install token) and tried (trial id), a recovery request.
func history(t *testing.T) []bootenv.Record {
	t.Helper()
	r := mustInit(t)
	out := []bootenv.Record{r}
	step := func(n bootenv.Record, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		r = n
		out = append(out, r)
	}
	sel := func() { _, n := bootenv.Select(r); step(n, nil) }
	sel()
	step(bootenv.SetSlotInfo(r, "b", "2.0", 2))
	step(bootenv.Try(r, "b", 2, bootenv.NewID()))
	sel()
	step(bootenv.MarkGood(r, "b"))
	sel()
	step(bootenv.Try(r, "a", 1, bootenv.NewID()))
	sel()
	sel() // a's trial runs out: a bad, fallback to b
	// An update into a: the run's token while it writes, then a trial
	// with its id.
	token := bootenv.NewID()
	step(bootenv.BeginInstall(r, "a", "3.0", token))
	sel()
	step(bootenv.FinishInstall(r, "a", bootenv.Finish{Token: token, Version: "3.0", SecurityVersion: 3, Tries: 2, TrialID: bootenv.NewID()}))
	sel()
	// Its boot was cut, and the next one noted a reboot.
	_, n, _ := bootenv.Decide(bootenv.WithEnd(r, bootenv.Classify(r, bootenv.Evidence{WatchdogRead: true}), bootenv.Policy{}), bootenv.Policy{}, nil)
	step(n, nil)
	step(bootenv.NoteShutdown(r, "a", bootenv.NoteReboot))
	_, n, _ = bootenv.Decide(bootenv.WithEnd(r, bootenv.Classify(r, bootenv.Evidence{WatchdogRead: true}), bootenv.Policy{}), bootenv.Policy{}, nil)
	step(n, nil)
	step(bootenv.MarkBad(r, "a", "health check failed"))
	step(bootenv.RequestRecovery(r, "operator asked for recovery"))
	sel()
	return out
}

// BenchmarkLoadCommit measures one boot's worth of store work: Load, then
// Commit of the next record (what keel-init does to count a boot).
func BenchmarkLoadCommit(b *testing.B, open Opener) {
	s, err := open()
	if err != nil {
		b.Fatal(err)
	}
	r, err := bootenv.Init(nil, "a")
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Commit(r); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cur, err := s.Load()
		if err != nil {
			b.Fatal(err)
		}
		_, next := bootenv.Select(cur)
		if err := s.Commit(next); err != nil {
			b.Fatal(err)
		}
	}
}
