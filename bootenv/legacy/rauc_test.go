package legacy

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
)

// slotString is how a test names a slot's state: "good", "good/1" (one
// unconfirmed boot), "trial/2" (two tries left), "bad", "empty".
func slotString(s bootenv.Slot) string {
	switch {
	case s.State == bootenv.StateTrial:
		return "trial/" + strconv.Itoa(s.TriesLeft)
	case s.State == bootenv.StateGood && s.Unconfirmed > 0:
		return "good/" + strconv.Itoa(s.Unconfirmed)
	}
	return string(s.State)
}

type recordWant struct {
	slots         map[string]string // keel slot -> slotString
	active, trial string
	next          string // "slot mode" of bootenv.Select
}

func checkRecord(t *testing.T, r bootenv.Record, w recordWant) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("invalid record: %v", err)
	}
	got := map[string]string{}
	for _, s := range r.Slots {
		got[s.Name] = slotString(s)
	}
	if !reflect.DeepEqual(got, w.slots) {
		t.Errorf("slots %v, want %v", got, w.slots)
	}
	if r.Active != w.active || r.Trial != w.trial {
		t.Errorf("active %q trial %q, want %q %q", r.Active, r.Trial, w.active, w.trial)
	}
	d, _ := bootenv.Select(r)
	if next := d.Slot + " " + string(d.Mode); next != w.next {
		t.Errorf("next boot %q, want %q (%s)", next, w.next, d.Reason)
	}
	if r.Generation != 1 {
		t.Errorf("generation %d, want 1", r.Generation)
	}
}

func TestFromRAUC(t *testing.T) {
	for _, tc := range []struct {
		name string
		vars map[string]string
		want recordWant
	}{
		{"steady state, A confirmed", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			recordWant{map[string]string{"a": "good", "b": "good"}, "a", "", "a normal"}},
		{"steady state on B", map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			recordWant{map[string]string{"a": "good", "b": "good"}, "b", "", "b normal"}},
		{"A booted, not yet marked good", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
			recordWant{map[string]string{"a": "good/1", "b": "good"}, "a", "", "a normal"}},
		{"one attempt left", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "3"},
			recordWant{map[string]string{"a": "good/2", "b": "good"}, "a", "", "a normal"}},
		{"B failed: RAUC falls back to A", map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
			recordWant{map[string]string{"a": "good", "b": "trial/0"}, "a", "b", "a fallback"}},
		{"B marked bad by RAUC", map[string]string{"BOOT_ORDER": "A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
			recordWant{map[string]string{"a": "good", "b": "bad"}, "a", "", "a normal"}},
		{"B never counted", map[string]string{"BOOT_ORDER": "A", "BOOT_A_LEFT": "3"},
			recordWant{map[string]string{"a": "good", "b": "bad"}, "a", "", "a normal"}},
		{"fallback used up", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
			recordWant{map[string]string{"a": "good", "b": "bad"}, "a", "", "a normal"}},
		{"RAUC hex, boot-attempts 10", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "a", "BOOT_B_LEFT": "f"},
			recordWant{map[string]string{"a": "good", "b": "good"}, "a", "", "a normal"}},
		{"0x prefix", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0x2", "BOOT_B_LEFT": "0X3"},
			recordWant{map[string]string{"a": "good/1", "b": "good"}, "a", "", "a normal"}},
		{"decimal (bootmeth_rauc)", map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "10", "BOOT_B_LEFT": "01"},
			recordWant{map[string]string{"a": "good", "b": "good/2"}, "a", "", "a normal"}},
		{"stray spaces", map[string]string{"BOOT_ORDER": " B  A ", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			recordWant{map[string]string{"a": "good", "b": "good"}, "b", "", "b normal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := FromRAUC(tc.vars, DefaultRAUCSlots())
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, r, tc.want)
			for _, s := range r.Slots {
				if s.State == bootenv.StateBad && !strings.Contains(s.Reason, "not bootable in RAUC's BOOT_ORDER/BOOT_x_LEFT") {
					t.Errorf("slot %s is bad with reason %q", s.Name, s.Reason)
				}
			}
		})
	}
}

func TestFromRAUCThreeSlots(t *testing.T) {
	slots := map[string]string{"A": "a", "B": "b", "R": "r"}
	r, err := FromRAUC(map[string]string{"BOOT_ORDER": "B R A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "BOOT_R_LEFT": "3"}, slots)
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, r, recordWant{map[string]string{"a": "good", "b": "trial/0", "r": "good"}, "r", "b", "r fallback"})
	if got := r.SlotNames(); !reflect.DeepEqual(got, []string{"a", "b", "r"}) {
		t.Errorf("slot order %v", got)
	}
}

func TestFromRAUCRefuses(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<unset>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{base("BOOT_ORDER", "<unset>"), "BOOT_ORDER is not set"},
		{base("BOOT_ORDER", "A C"), `names slot "C"`},
		{base("BOOT_ORDER", "A B A"), "names slot A twice"},
		{base("BOOT_B_LEFT", "<unset>"), "BOOT_B_LEFT is not set"},
		{base("BOOT_A_LEFT", "x"), `BOOT_A_LEFT="x"`},
		{base("BOOT_A_LEFT", ""), `BOOT_A_LEFT=""`},
		{base("BOOT_A_LEFT", "-1"), `BOOT_A_LEFT="-1"`},
		{base("BOOT_A_LEFT", "3 "), `BOOT_A_LEFT="3 "`},
		{base("BOOT_A_LEFT", "0x"), `BOOT_A_LEFT="0x"`},
		{base("BOOT_B_LEFT", "3g"), `BOOT_B_LEFT="3g"`},
		{base("BOOT_A_LEFT", "fffffffffffff"), "too large"},
		{base("BOOT_A_LEFT", "0", "BOOT_B_LEFT", "0"), "no slot is bootable"},
		{base("BOOT_ORDER", " "), "no slot is bootable"},
		{base("BOOT_ORDER", "B", "BOOT_B_LEFT", "0x0"), "no slot is bootable"},
	} {
		_, err := FromRAUC(tc.vars, DefaultRAUCSlots())
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want ErrMalformed mentioning %q", tc.vars, err, tc.want)
		}
	}
	for _, slots := range []map[string]string{
		{}, {"A": "a", "B": "a"}, {"A B": "a"}, {"A": "Big"}, {"A=": "a"}, {"": "a"},
	} {
		if _, err := FromRAUC(base(), slots); !errors.Is(err, ErrMapping) {
			t.Errorf("mapping %v: error %v, want ErrMapping", slots, err)
		}
	}
}

// mustRecord applies transitions to a fresh two-slot record (a active).
func mustRecord(t *testing.T, steps ...func(bootenv.Record) (bootenv.Record, error)) bootenv.Record {
	t.Helper()
	r, err := bootenv.Init([]string{"a", "b"}, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range steps {
		if r, err = f(r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func try(slot string, tries int) func(bootenv.Record) (bootenv.Record, error) {
	return func(r bootenv.Record) (bootenv.Record, error) { return bootenv.Try(r, slot, tries, bootenv.NewID()) }
}

func markGood(slot string) func(bootenv.Record) (bootenv.Record, error) {
	return func(r bootenv.Record) (bootenv.Record, error) { return bootenv.MarkGood(r, slot) }
}

func markBad(slot string) func(bootenv.Record) (bootenv.Record, error) {
	return func(r bootenv.Record) (bootenv.Record, error) { return bootenv.MarkBad(r, slot, "test") }
}

func boot(r bootenv.Record) (bootenv.Record, error) {
	_, n := bootenv.Select(r)
	return n, nil
}

func requestRecovery(r bootenv.Record) (bootenv.Record, error) {
	return bootenv.RequestRecovery(r, "test")
}

func TestToRAUC(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    bootenv.Record
		want map[string]string
	}{
		{"new device", mustRecord(t), map[string]string{"BOOT_ORDER": "A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}},
		{"both good", mustRecord(t, try("b", 2), markGood("b"), markGood("a")),
			map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}},
		{"trial of b", mustRecord(t, try("b", 2)), map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"}},
		{"trial booted once", mustRecord(t, try("b", 2), boot), map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1"}},
		{"trial used up", mustRecord(t, try("b", 1), boot), map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}},
		{"many tries are capped", mustRecord(t, try("b", 50)), map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "9"}},
		{"unconfirmed boots", mustRecord(t, boot, boot), map[string]string{"BOOT_ORDER": "A", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "0"}},
		{"b active, a bad", mustRecord(t, try("b", 3), markGood("b"), markBad("a")),
			map[string]string{"BOOT_ORDER": "B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"}},
		{"nothing bootable", mustRecord(t, markBad("a")), map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ToRAUC(tc.r, DefaultRAUCSlots()); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ToRAUC = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckRAUC(t *testing.T) {
	m := DefaultRAUCSlots()
	if err := CheckRAUC(mustRecord(t, try("b", 2)), m); err != nil {
		t.Errorf("a trial: %v", err)
	}
	for _, tc := range []struct {
		r    bootenv.Record
		want error
		text string
	}{
		{mustRecord(t, requestRecovery), ErrInexpressible, "recovery"},
		{mustRecord(t, markBad("a")), ErrInexpressible, "recovery"},
		{mustRecord(t, boot, boot, boot), ErrInexpressible, "recovery"}, // a unconfirmed 3 times, b empty
	} {
		if err := CheckRAUC(tc.r, m); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("CheckRAUC: %v, want %v mentioning %q", err, tc.want, tc.text)
		}
	}
	if err := CheckRAUC(mustRecord(t), map[string]string{"A": "a"}); !errors.Is(err, ErrMapping) || !strings.Contains(err.Error(), "b are not mapped") {
		t.Errorf("unmapped slot: %v", err)
	}
	if err := CheckRAUC(mustRecord(t), map[string]string{"A": "a", "B": "b", "C": "c"}); !errors.Is(err, ErrMapping) || !strings.Contains(err.Error(), "does not have") {
		t.Errorf("mapped slot missing from the record: %v", err)
	}
}

func TestParseMappings(t *testing.T) {
	if m, err := ParseRAUCSlots("A=a,B=b"); err != nil || !reflect.DeepEqual(m, DefaultRAUCSlots()) {
		t.Errorf("ParseRAUCSlots: %v %v", m, err)
	}
	if m, err := ParseRAUCSlots("system0=a,system1=b,R=r"); err != nil || m["system1"] != "b" || len(m) != 3 {
		t.Errorf("ParseRAUCSlots: %v %v", m, err)
	}
	for _, s := range []string{"", "A", "A=a,A=b", "A=a,B=a", "=a", "A=", "A=A", "A B=a"} {
		if _, err := ParseRAUCSlots(s); !errors.Is(err, ErrMapping) {
			t.Errorf("ParseRAUCSlots(%q): %v, want ErrMapping", s, err)
		}
	}
	if m, err := ParseMenderParts("2=a,3=b"); err != nil || !reflect.DeepEqual(m, DefaultMenderParts()) {
		t.Errorf("ParseMenderParts: %v %v", m, err)
	}
	for _, s := range []string{"", "2=a", "2=a,3=b,4=c", "x=a,3=b", "2=a,2=b", "2=a,3=a", "-1=a,3=b", "2=a,3=B", "2a,3=b"} {
		if _, err := ParseMenderParts(s); !errors.Is(err, ErrMapping) {
			t.Errorf("ParseMenderParts(%q): %v, want ErrMapping", s, err)
		}
	}
}
