package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
)

func TestRollbackTarget(t *testing.T) {
	good, bad, empty := bootenv.StateGood, bootenv.StateBad, bootenv.StateEmpty
	rec := func(active, trial string, states ...bootenv.State) bootenv.Record {
		r := bootenv.Record{Active: active, Trial: trial}
		for i, st := range states {
			r.Slots = append(r.Slots, bootenv.Slot{Name: string(rune('a' + i)), State: st})
		}
		return r
	}
	for _, c := range []struct {
		name string
		r    bootenv.Record
		want string // slot, or a piece of the refusal
		ok   bool
	}{
		{"b active, a good", rec("b", "", good, good), "a", true},
		{"a active, b good", rec("a", "", good, good), "b", true},
		{"other slot bad", rec("b", "", bad, good), "no good slot besides", false},
		{"other slot empty", rec("a", "", good, empty), "no good slot besides", false},
		{"trial pending", rec("a", "b", good, bootenv.StateTrial), "keel mark-bad b", false},
		{"nothing active", rec("", "", bad, bad), "no slot is active", false},
		{"three good slots", rec("a", "", good, good, good), "keel set-active SLOT", false},
		{"three slots, one other good", rec("c", "", bad, good, good), "b", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := rollbackTarget(c.r)
			switch {
			case c.ok && (err != nil || got != c.want):
				t.Errorf("got %q, %v; want %q", got, err, c.want)
			case !c.ok && (!errors.Is(err, bootenv.ErrRefused) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %q, %v; want a refusal saying %q", got, err, c.want)
			}
		})
	}
}

// TestRollback: an update commits, then `keel rollback` makes the old
// slot active in one commit, and back again; refusals write nothing.
func TestRollback(t *testing.T) {
	cfg := envConfig(t, true)
	k := func(args ...string) result { return keel(t, append([]string{"-c", cfg}, args...)...) }
	k("init", "--active", "a").ok(t)
	k("rollback").fails(t, ExitUsage, "no good slot besides")
	k("try", "b", "--tries", "3").ok(t)
	k("rollback").fails(t, ExitUsage, "is on trial")
	if got := strings.TrimSpace(k("select", "--commit").ok(t).stdout); got != "b" {
		t.Fatalf("trial boot: %q", got)
	}
	k("mark-good").ok(t)
	gen := status(t, "-c", cfg).Generation
	out := k("rollback").ok(t).stdout
	if !strings.Contains(out, "from slot b to slot a") {
		t.Errorf("rollback said %q", out)
	}
	s := status(t, "-c", cfg)
	if *s.Active != "a" || s.Generation != gen+1 || s.Slots["b"].State != "good" {
		t.Fatalf("after rollback: %+v", s)
	}
	if got := strings.TrimSpace(k("select").ok(t).stdout); got != "a" {
		t.Errorf("the next boot takes %q, want a", got)
	}
	k("rollback", "b").fails(t, ExitUsage, "usage")
	k("rollback").ok(t)
	if s := status(t, "-c", cfg); *s.Active != "b" {
		t.Fatalf("after the second rollback: %+v", s)
	}
}
