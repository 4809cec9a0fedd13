package bootenv

import (
	"errors"
	"strings"
	"testing"
)

// rec is a record with the active slot, the slot on trial and slots a, b,
// ... in the given states.
func rec(active, trial string, states ...State) Record {
	r := Record{Active: active, Trial: trial}
	for i, st := range states {
		r.Slots = append(r.Slots, Slot{Name: string(rune('a' + i)), State: st})
	}
	return r
}

func TestInstallTarget(t *testing.T) {
	good, empty, bad := StateGood, StateEmpty, StateBad
	for _, c := range []struct {
		name    string
		r       Record
		running string
		want    string // slot, or a piece of the refusal
		ok      bool
	}{
		{"a active, b empty", rec("a", "", good, empty), "a", "b", true},
		{"b active, a bad", rec("b", "", bad, good), "b", "a", true},
		{"offline: nothing running", rec("a", "", good, good), "", "b", true},
		{"running the other slot (after a fallback)", rec("a", "", good, good), "b", "every slot is active, on trial or running (a, b)", false},
		{"b on trial", rec("a", "b", good, StateTrial), "a", "every slot is active, on trial or running", false},
		{"three slots, c on trial", rec("a", "c", good, good, StateTrial), "a", "b", true},
		{"three slots: the first free one", rec("b", "", empty, good, empty), "b", "a", true},
		{"no active slot", rec("", "", bad, bad), "", "a", true},
		{"one slot", rec("a", "", good), "a", "no slot to install into", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := InstallTarget(c.r, c.running)
			switch {
			case c.ok && (err != nil || got != c.want):
				t.Errorf("got %q, %v; want %q", got, err, c.want)
			case !c.ok && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %q, %v; want a refusal saying %q", got, err, c.want)
			}
		})
	}
}

func TestRollbackTarget(t *testing.T) {
	good, bad, empty := StateGood, StateBad, StateEmpty
	for _, c := range []struct {
		name string
		r    Record
		want string // slot, or a piece of the refusal
		ok   bool
	}{
		{"b active, a good", rec("b", "", good, good), "a", true},
		{"a active, b good", rec("a", "", good, good), "b", true},
		{"other slot bad", rec("b", "", bad, good), "no good slot besides", false},
		{"other slot empty", rec("a", "", good, empty), "no good slot besides", false},
		{"trial pending", rec("a", "b", good, StateTrial), "keel mark-bad b", false},
		{"nothing active", rec("", "", bad, bad), "no slot is active", false},
		{"three good slots", rec("a", "", good, good, good), "keel set-active SLOT", false},
		{"three slots, one other good", rec("c", "", bad, good, good), "b", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := RollbackTarget(c.r)
			switch {
			case c.ok && (err != nil || got != c.want):
				t.Errorf("got %q, %v; want %q", got, err, c.want)
			case !c.ok && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %q, %v; want a refusal saying %q", got, err, c.want)
			}
		})
	}
}
