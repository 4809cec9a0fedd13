package stage1

import (
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/memstore"
)

// fakeEnds is EndSources: what it returns, and how often it was read.
type fakeEnds struct {
	ev    bootenv.Evidence
	crash []string
	panic bool
	reads int
}

func (f *fakeEnds) Read(Logf) (bootenv.Evidence, []string) {
	f.reads++
	if f.panic {
		panic("boom")
	}
	return f.ev, f.crash
}

// trialStore is a store whose record's last decision booted b on trial
// with 2 tries armed (1 left).
func trialStore(t *testing.T) *memstore.Store {
	t.Helper()
	r, err := bootenv.Init(nil, "a")
	if err != nil {
		t.Fatal(err)
	}
	if r, err = bootenv.Try(r, "b", 2, bootenv.NewID()); err != nil {
		t.Fatal(err)
	}
	_, r = bootenv.Select(r)
	s := memstore.New()
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBootSettlesTheLastEnd: keel-init reads its sources once, before its
// decision, and commits how the last boot ended with the decision: a power
// cut gives the trial's try back (b's second boot leaves it 1 try, as
// before the cut), a watchdog reset or a panic keeps it used (0 left), no
// source at all (nil, or one that panics) is unknown and keeps it used. A crash's
// lines go to the slot in the handoff.
func TestBootSettlesTheLastEnd(t *testing.T) {
	panicLines := []string{"<0>[ 3.6] Kernel panic - not syncing: sysrq triggered crash", "<4>[ 3.6] CPU: 0 PID: 1"}
	for _, tc := range []struct {
		name      string
		ends      *fakeEnds
		how       bootenv.How
		triesLeft int // b's, after the decision boots it again
		uncounted int
		crash     string
	}{
		{"power cut", &fakeEnds{ev: bootenv.Evidence{WatchdogRead: true}}, bootenv.EndPowerLoss, 1, 1, ""},
		{"watchdog", &fakeEnds{ev: bootenv.Evidence{WatchdogRead: true, Watchdog: true}}, bootenv.EndWatchdog, 0, 0, ""},
		{"panic", &fakeEnds{ev: bootenv.Evidence{WatchdogRead: true, Panic: "Kernel panic - not syncing: sysrq triggered crash"}, crash: panicLines},
			bootenv.EndPanic, 0, 0, strings.Join(panicLines, "\n") + "\n"},
		{"no sources", nil, bootenv.EndUnknown, 0, 0, ""},
		{"sources that panic", &fakeEnds{panic: true}, bootenv.EndUnknown, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := trialStore(t)
			k := &fakeKexec{}
			cfg := Config{}
			if tc.ends != nil {
				cfg.Ends = tc.ends
			}
			r, err, log := runCfg(t, cfg, s, &fakeLoader{}, k)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ends != nil && tc.ends.reads != 1 {
				t.Errorf("the sources were read %d times, want once", tc.ends.reads)
			}
			if k.booted != "b" {
				t.Fatalf("booted %q, want b's second try; log:\n%s", k.booted, strings.Join(log, "\n"))
			}
			// The end is in the record the decision committed, before
			// the kexec.
			if k.state.LastEnd.How != tc.how || k.state.LastEnd.Slot != "b" || k.state.Shutdown != "" {
				t.Errorf("at kexec: last end %+v, note %q; want %s of b", k.state.LastEnd, k.state.Shutdown, tc.how)
			}
			if b, _ := r.Slot("b"); b.State != bootenv.StateTrial || b.TriesLeft != tc.triesLeft || b.Uncounted != tc.uncounted {
				t.Errorf("b = %+v, want on trial with %d tries left, %d uncounted ends", b, tc.triesLeft, tc.uncounted)
			}
			if string(k.crash) != tc.crash {
				t.Errorf("handed over crash %q, want %q", k.crash, tc.crash)
			}
			if !slicesContainsPrefix(log, "KEEL-END "+string(tc.how)+": the last boot (slot b, mode trial)") {
				t.Errorf("no KEEL-END %s line; log:\n%s", tc.how, strings.Join(log, "\n"))
			}
		})
	}
}

// TestBootEndCommittedWithTheDecision: a power cut before the decision's
// commit leaves the record as it was (the end is settled again at the
// next boot, once).
func TestBootEndCommittedWithTheDecision(t *testing.T) {
	s := trialStore(t)
	before, _ := s.Load()
	s.CutPower(0, false) // the next commit does not land
	k := &fakeKexec{}
	if _, err, _ := runCfg(t, Config{Ends: &fakeEnds{ev: bootenv.Evidence{WatchdogRead: true}}}, s, &fakeLoader{}, k); err == nil || k.booted != "" {
		t.Fatalf("Boot after a cut commit: %v, booted %q", err, k.booted)
	}
	s.PowerOn()
	after, err := s.Load()
	if err != nil || !after.Equal(before) {
		t.Fatalf("after a cut before the commit: %+v, %v; want the record as it was", after, err)
	}
}

func slicesContainsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
