package ubootenv

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustEnv(t testing.TB, kv ...string) *Env {
	t.Helper()
	e := &Env{}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := e.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func TestEnvSetGetDelete(t *testing.T) {
	var e Env
	if _, ok := e.Get("a"); ok {
		t.Fatal("zero Env has a")
	}
	for _, kv := range [][2]string{{"b", "1"}, {"a", "2"}, {"c", "3"}, {"b", "4"}} {
		if err := e.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := []Var{{"b", "4"}, {"a", "2"}, {"c", "3"}}
	if got := e.Vars(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Vars = %v, want %v (existing keeps its place, new appends)", got, want)
	}
	if v, ok := e.Get("b"); !ok || v != "4" {
		t.Fatalf("Get(b) = %q, %v", v, ok)
	}
	if !e.Delete("a") || e.Delete("a") {
		t.Fatal("Delete(a) twice")
	}
	if got := e.Vars(); !reflect.DeepEqual(got, []Var{{"b", "4"}, {"c", "3"}}) {
		t.Fatalf("after delete: %v", got)
	}
	// Vars is a copy.
	vs := e.Vars()
	vs[0].Value = "x"
	if v, _ := e.Get("b"); v != "4" {
		t.Fatal("Vars aliases the env")
	}
	// Clone is independent.
	c := e.Clone()
	_ = c.Set("b", "5")
	_ = c.Set("z", "6")
	if v, _ := e.Get("b"); v != "4" || e.Len() != 2 || c.Len() != 3 {
		t.Fatal("Clone aliases the env")
	}
	// Empty values are allowed.
	if err := e.Set("empty", ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := e.Get("empty"); !ok || v != "" {
		t.Fatal("empty value lost")
	}
}

func TestEnvSetValidates(t *testing.T) {
	tests := []struct {
		name, value, errHas string
	}{
		{"", "v", "empty variable name"},
		{"a=b", "v", "contains '='"},
		{"a\x00b", "v", "NUL"},
		{"a", "v\x00w", "NUL"},
	}
	for _, tt := range tests {
		var e Env
		err := e.Set(tt.name, tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("Set(%q, %q) = %v, want error containing %q", tt.name, tt.value, err, tt.errHas)
		}
		if e.Len() != 0 {
			t.Errorf("Set(%q, %q) failed but stored", tt.name, tt.value)
		}
	}
	// Odd but legal.
	var e Env
	for _, n := range []string{" lead", "#hash", "ü", "a b", "x\ny"} {
		if err := e.Set(n, "v=w\\z"); err != nil {
			t.Errorf("Set(%q): %v", n, err)
		}
	}
}

func TestParseData(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    []Var
		wantErr bool
	}{
		{"empty env", "\x00\x00\x00", nil, false},
		{"one", "a=1\x00\x00", []Var{{"a", "1"}}, false},
		{"order kept", "b=1\x00a=2\x00\x00", []Var{{"b", "1"}, {"a", "2"}}, false},
		{"stops at empty entry", "a=1\x00\x00b=2\x00\x00", []Var{{"a", "1"}}, false},
		{"padding 0xFF ignored", "a=1\x00\x00\xff\xff\xff", []Var{{"a", "1"}}, false},
		{"stale entries after end ignored", "a=1\x00\x00old=stale\x00\x00", []Var{{"a", "1"}}, false},
		{"ends right after an entry", "a=1\x00", []Var{{"a", "1"}}, false},
		{"value with =", "a=b=c\x00\x00", []Var{{"a", "b=c"}}, false},
		{"empty value", "a=\x00\x00", []Var{{"a", ""}}, false},
		{"no = skipped", "junk\x00a=1\x00\x00", []Var{{"a", "1"}}, false},
		{"empty name skipped", "=x\x00a=1\x00\x00", []Var{{"a", "1"}}, false},
		{"duplicate: first place, last value", "a=1\x00b=2\x00a=3\x00\x00", []Var{{"a", "3"}, {"b", "2"}}, false},
		{"newline in value", "a=x\ny\x00\x00", []Var{{"a", "x\ny"}}, false},
		{"unterminated", "a=1", nil, true},
		{"unterminated after entries", "a=1\x00b=2", nil, true},
		{"zero-length area", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseData([]byte(tt.data))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %v, want error", e.Vars())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Vars(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEncodeData(t *testing.T) {
	e := mustEnv(t, "b", "1", "a", "xy")
	got, err := encodeData(e, 16)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("b=1\x00a=xy\x00"), make([]byte, 7)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Exactly fits: entries + final NUL.
	if _, err := encodeData(e, 10); err != nil {
		t.Fatalf("exact fit: %v", err)
	}
	if _, err := encodeData(e, 9); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte short: %v", err)
	}
	// Empty env.
	if got, err := encodeData(&Env{}, 2); err != nil || !bytes.Equal(got, []byte{0, 0}) {
		t.Fatalf("empty: %q %v", got, err)
	}
	// An Env filled behind Set's back is still checked.
	bad := &Env{vars: []Var{{"a=b", "c"}}}
	if _, err := encodeData(bad, 64); err == nil {
		t.Fatal("encoded an invalid name")
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	envs := []*Env{
		{},
		mustEnv(t, "a", "1"),
		mustEnv(t, "bootcmd", "run keel_boot", "keel_state_a", "good", "keel_next", "", "x", "a=b;c d\n\t\\"),
	}
	for _, e := range envs {
		for _, red := range []bool{false, true} {
			img, err := encodeImage(e, 256, red, 7)
			if err != nil {
				t.Fatal(err)
			}
			st := decodeCopy(img, red)
			if !st.valid() {
				t.Fatalf("round trip invalid: %v", st.bad)
			}
			if red && st.flag != 7 {
				t.Fatalf("flag %d", st.flag)
			}
			if !reflect.DeepEqual(st.env.Vars(), e.Vars()) {
				t.Fatalf("round trip %v -> %v", e.Vars(), st.env.Vars())
			}
		}
	}
}
