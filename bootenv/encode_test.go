package bootenv

import (
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func varsMap(vs []Var) map[string]string {
	m := map[string]string{}
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}

func sampleRecord(t testing.TB) Record {
	t.Helper()
	r := must(t)(Init(nil, "a"))
	r = must(t)(SetSlotInfo(r, "a", "1.0", 1))
	r = must(t)(SetSlotInfo(r, "b", "2.0 (build 7)", 2))
	r = must(t)(Try(r, "b", 3, testTrialID))
	_, r = Select(r)
	return r
}

// fallbackRecord is a record after a failed trial: it holds a last
// fallback.
func fallbackRecord(t testing.TB) Record {
	t.Helper()
	r := must(t)(Init(nil, "a"))
	r = must(t)(SetSlotInfo(r, "a", "1.0", 1))
	r = must(t)(SetSlotInfo(r, "b", "2.0", 2))
	r = must(t)(Try(r, "b", 1, testTrialID))
	_, r = Select(r)
	_, r = Select(r)
	return r
}

// endRecord is a record of a trial of b whose last two boots were cut
// (two uncounted ends, the last end a power loss), and whose running
// boot's OS noted a reboot.
func endRecord(t testing.TB) Record {
	t.Helper()
	r := sampleRecord(t)
	for range 2 {
		_, r, _ = Decide(WithEnd(r, Classify(r, Evidence{WatchdogRead: true}), Policy{}), Policy{}, nil)
	}
	return must(t)(NoteShutdown(r, "b", NoteReboot))
}

// installRecord is a record while an install run writes slot b.
func installRecord(t testing.TB) Record {
	t.Helper()
	return must(t)(BeginInstall(must(t)(Init(nil, "a")), "b", "2.0", testToken))
}

func TestEncodeGolden(t *testing.T) {
	for golden, r := range map[string]Record{"record.golden": sampleRecord(t), "record-fallback.golden": fallbackRecord(t), "record-end.golden": endRecord(t)} {
		t.Run(golden, func(t *testing.T) { checkGolden(t, golden, r) })
	}
}

func checkGolden(t *testing.T, name string, r Record) {
	var b strings.Builder
	for _, v := range Encode(r) {
		b.WriteString(v.Name + "=" + v.Value + "\n")
	}
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("encoding changed; got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	recs := []Record{mustInit(t), sampleRecord(t), fallbackRecord(t)}
	r := must(t)(MarkBad(sampleRecord(t), "b", "kernel digest mismatch: want 12ab, got 34cd"))
	r = must(t)(RequestRecovery(r, "user"))
	recs = append(recs, r, installRecord(t), endRecord(t))
	for _, r := range recs {
		vs := Encode(r)
		m := varsMap(vs)
		m["bootcmd"] = "run distro_bootcmd" // foreign vars are ignored
		got, err := Decode(m)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", r, err)
		}
		if !got.Equal(r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
		for _, v := range vs {
			if !IsRecordVar(v.Name) || v.Value == "" {
				t.Errorf("bad var %q=%q", v.Name, v.Value)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := varsMap(Encode(sampleRecord(t)))
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		if v == "\x00delete" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	if _, err := Decode(map[string]string{"bootcmd": "boot"}); !errors.Is(err, ErrNoState) {
		t.Errorf("no keel vars: %v, want ErrNoState", err)
	}
	for _, tc := range []struct {
		name string
		m    map[string]string
		want string
	}{
		{"no format", with("keel_format", "\x00delete"), "keel_format is missing"},
		{"newer format", with("keel_format", "2"), "update keel"},
		{"no slots", with("keel_slots", "\x00delete"), "keel_slots is missing"},
		{"bad slot name", with("keel_slots", "a,B"), `slot name "B"`},
		{"garbage generation", with("keel_generation", "x1"), "keel_generation"},
		{"garbage tries", with("keel_slot_b_tries", "-1"), "keel_slot_b_tries"},
		{"garbage secver", with("keel_slot_b_secver", "1.5"), "keel_slot_b_secver"},
		{"unknown state", with("keel_slot_a_state", "great"), `unknown state "great"`},
		{"missing state", with("keel_slot_a_state", "\x00delete"), "keel_slot_a_state is missing"},
		{"active not good", with("keel_active", "b"), "active slot b is trial"},
		{"active unknown", with("keel_active", "z"), `active slot "z" does not exist`},
		{"two trials", with("keel_slot_a_state", "trial"), "trial"},
		{"tries on good slot", with("keel_slot_a_tries", "2"), "only a trial slot has tries"},
		{"unknown mode", with("keel_last_mode", "turbo"), "unknown boot mode"},
		{"fallback without its slot", with("keel_last_fallback_reason", "x"), "last fallback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.m)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestDecodeFallbackErrors: the last fallback's variables are read and
// checked like the rest of the record.
func TestDecodeFallbackErrors(t *testing.T) {
	good := varsMap(Encode(fallbackRecord(t)))
	for name, tc := range map[string]struct{ k, v, want string }{
		"garbage generation": {"keel_last_fallback_generation", "12x", "keel_last_fallback_generation"},
		"future generation":  {"keel_last_fallback_generation", "99", "generation 99"},
		"unknown slot":       {"keel_last_fallback_failed", "z", `unknown failed slot "z"`},
		"unknown mode":       {"keel_last_fallback_mode", "turbo", `mode "turbo"`},
		"no generation":      {"keel_last_fallback_generation", "", "generation 0"},
	} {
		t.Run(name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range good {
				m[k] = v
			}
			if tc.v == "" {
				delete(m, tc.k)
			} else {
				m[tc.k] = tc.v
			}
			_, err := Decode(m)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode = %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
		})
	}
}

// TestDecodeRecordWithoutFallback: a record written before keel kept the
// last fallback (testdata/record-before-fallback.env, written by that keel
// after a failed trial) decodes with none and encodes back byte for byte.
func TestDecodeRecordWithoutFallback(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "record-before-fallback.env"))
	if err != nil {
		t.Fatal(err)
	}
	var vars []Var
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, _ := strings.Cut(line, "=")
		vars = append(vars, Var{k, v})
	}
	r, err := DecodeVars(vars)
	if err != nil {
		t.Fatal(err)
	}
	if !r.LastFallback.IsZero() || r.Last.Mode != ModeFallback || r.Generation != 6 {
		t.Errorf("decoded %+v", r)
	}
	var again strings.Builder
	for _, v := range Encode(r) {
		again.WriteString(v.Name + "=" + v.Value + "\n")
	}
	if again.String() != string(b) {
		t.Errorf("re-encoded:\n%s\nwant:\n%s", again.String(), b)
	}
}

// TestDecodeIDs: the trial id and the install token are read when they
// are ids and belong to a trial (an install); anything else in them is
// dropped, never a corrupt record: they are unauthenticated and must not
// be able to make keel-init start over, which would change what boots.
func TestDecodeIDs(t *testing.T) {
	trial := varsMap(Encode(sampleRecord(t)))
	install := varsMap(Encode(installRecord(t)))
	if trial["keel_trial_id"] != testTrialID || install["keel_install_token"] != testToken {
		t.Fatalf("encoded: %v %v", trial, install)
	}
	for _, tc := range []struct {
		name     string
		base     map[string]string
		key, val string
		want     string // the decoded value
	}{
		{"trial id", trial, "keel_trial_id", testTrialID, testTrialID},
		{"trial id, upper case", trial, "keel_trial_id", "ABCDEF0123456789ABCDEF0123456789", ""},
		{"trial id, a path", trial, "keel_trial_id", "../../../../etc/passwd", ""},
		{"trial id, too long", trial, "keel_trial_id", strings.Repeat("a", 65), ""},
		{"trial id, too short", trial, "keel_trial_id", strings.Repeat("a", 15), ""},
		{"trial id, 64 digits", trial, "keel_trial_id", strings.Repeat("f", 64), strings.Repeat("f", 64)},
		{"trial id, a newline", trial, "keel_trial_id", testTrialID + "\n", ""},
		{"trial id, none (an older keel)", trial, "keel_trial_id", "\x00delete", ""},
		{"trial id without a trial", install, "keel_trial_id", testTrialID, ""},
		{"token", install, "keel_install_token", testToken, testToken},
		{"token, not hex", install, "keel_install_token", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", ""},
		{"token, none (an older keel)", install, "keel_install_token", "\x00delete", ""},
		{"token without an install", trial, "keel_install_token", testToken, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode(withVar(tc.base, tc.key, tc.val))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got := r.TrialID
			if tc.key == "keel_install_token" {
				got = r.InstallToken
			}
			if got != tc.want {
				t.Errorf("%s=%q decoded as %q, want %q", tc.key, tc.val, got, tc.want)
			}
			// The rest of the record is as encoded.
			want, _ := Decode(tc.base)
			r.TrialID, r.InstallToken = want.TrialID, want.InstallToken
			if !r.Equal(want) {
				t.Errorf("the record changed:\n%+v\nwant\n%+v", r, want)
			}
		})
	}
}

// withVar is a copy of vars with key set to val, or deleted when val is
// "\x00delete".
func withVar(vars map[string]string, key, val string) map[string]string {
	m := maps.Clone(vars)
	if val == "\x00delete" {
		delete(m, key)
	} else {
		m[key] = val
	}
	return m
}

// FuzzDecode feeds Decode arbitrary variables (NUL-separated name=value
// pairs, as in a U-Boot env): it must never panic, and whatever it accepts
// must be valid and encode back to the same record.
func FuzzDecode(f *testing.F) {
	for _, r := range []Record{sampleRecord(f), fallbackRecord(f), endRecord(f)} {
		var b strings.Builder
		for _, v := range Encode(r) {
			b.WriteString(v.Name + "=" + v.Value + "\x00")
		}
		f.Add(b.String())
	}
	f.Add("keel_format=1\x00keel_slots=a\x00keel_generation=1\x00keel_slot_a_state=good\x00")
	f.Add("keel_format=1\x00keel_slots=a,b\x00keel_active=a\x00keel_generation=2\x00keel_installing=b\x00keel_install_token=" + testToken +
		"\x00keel_trial_id=" + testTrialID + "\x00keel_slot_a_state=good\x00keel_slot_b_state=empty\x00")
	f.Fuzz(func(t *testing.T, data string) {
		m := map[string]string{}
		for _, kv := range strings.Split(data, "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				m[k] = v
			}
		}
		r, err := Decode(m)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid record: %v", err)
		}
		again, err := Decode(varsMap(Encode(r)))
		if err != nil || !again.Equal(r) {
			t.Fatalf("re-encoding changed the record: %v\n%+v\n%+v", err, r, again)
		}
	})
}

// TestDecodeVarsRefusesDuplicates: a keel_* variable set twice is a corrupt
// record (issue 9 item 9); other variables may repeat.
func TestDecodeVarsRefusesDuplicates(t *testing.T) {
	r, _ := Init(nil, "a")
	vars := Encode(r)
	if _, err := DecodeVars(append(vars, Var{Name: "other", Value: "1"}, Var{Name: "other", Value: "2"})); err != nil {
		t.Errorf("a repeated non-keel variable: %v", err)
	}
	_, err := DecodeVars(append(vars, Var{Name: "keel_active", Value: "b"}))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "keel_active is set twice") {
		t.Errorf("DecodeVars = %v, want ErrCorrupt", err)
	}
}

// TestDecodeIgnoresUnknownVars: keel_* variables this keel does not know
// (a newer keel's optional ones, a variable of a slot the record does not
// list) are ignored, so an older keel still reads a newer keel's record
// (and commits the slot it fell back to); they cannot change the record,
// and writing it drops them.
func TestDecodeIgnoresUnknownVars(t *testing.T) {
	r := sampleRecord(t)
	vars := varsMap(Encode(r))
	vars["keel_colour"] = "red"
	vars["keel_slot_c_state"] = "good"
	vars["keel_slot_a_future"] = "x"
	got, err := Decode(vars)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(r) {
		t.Errorf("Decode with unknown variables = %+v, want %+v", got, r)
	}
	for _, v := range Encode(got) {
		if v.Name == "keel_colour" || v.Name == "keel_slot_c_state" || v.Name == "keel_slot_a_future" {
			t.Errorf("Encode wrote %s back", v.Name)
		}
	}
}

// TestDecodeEnds: how the last boot ended, the shutdown note and a
// trial's uncounted ends are read when they are what this keel writes;
// anything else in them is dropped (keel_last_end* as a whole), never a
// corrupt record: they are unauthenticated, decide only whether a trial's
// try was used, and must not make keel-init start over. Without them (a
// record an older keel wrote back, which drops them) the record is the
// same but for them.
func TestDecodeEnds(t *testing.T) {
	base := varsMap(Encode(endRecord(t)))
	if base["keel_last_end"] != "power-loss" || base["keel_last_end_slot"] != "b" || base["keel_shutdown"] != "reboot" || base["keel_slot_b_uncounted"] != "2" {
		t.Fatalf("encoded: %v", base)
	}
	want := endRecord(t)
	for _, tc := range []struct {
		name     string
		key, val string
		check    func(Record) bool
	}{
		{"as written", "keel_shutdown", "reboot", func(r Record) bool { return r.Equal(want) }},
		{"a newer keel's end", "keel_last_end", "brown-out", func(r Record) bool { return r.LastEnd.IsZero() }},
		{"an end of no slot", "keel_last_end_slot", "z", func(r Record) bool { return r.LastEnd.IsZero() }},
		{"an end without a slot", "keel_last_end_slot", "\x00delete", func(r Record) bool { return r.LastEnd.IsZero() }},
		{"an end of no mode", "keel_last_end_mode", "sideways", func(r Record) bool { return r.LastEnd.IsZero() }},
		{"a detail of two lines", "keel_last_end_detail", "a\nb", func(r Record) bool { return r.LastEnd.IsZero() }},
		{"a detail too long", "keel_last_end_detail", strings.Repeat("x", MaxText+1), func(r Record) bool { return r.LastEnd.IsZero() }},
		{"a detail with a backslash", "keel_last_end_detail", "a\\b", func(r Record) bool { return r.LastEnd.IsZero() }},
		{"an unknown note", "keel_shutdown", "reset", func(r Record) bool { return r.Shutdown == "" }},
		{"keel-init's note", "keel_shutdown", "keel-init", func(r Record) bool { return r.Shutdown == NoteKeelInit }},
		{"uncounted, not a number", "keel_slot_b_uncounted", "two", func(r Record) bool { return r.Slots[1].Uncounted == 0 }},
		{"uncounted, negative", "keel_slot_b_uncounted", "-1", func(r Record) bool { return r.Slots[1].Uncounted == 0 }},
		{"uncounted, too many", "keel_slot_b_uncounted", "1001", func(r Record) bool { return r.Slots[1].Uncounted == 0 }},
		{"uncounted of a good slot", "keel_slot_a_uncounted", "2", func(r Record) bool { return r.Slots[0].Uncounted == 0 && r.Slots[1].Uncounted == 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode(withVar(base, tc.key, tc.val))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !tc.check(r) {
				t.Errorf("%s=%q decoded as %+v", tc.key, tc.val, r)
			}
		})
	}
	// An older keel drops the variables it does not know when it writes
	// the record back: the rest reads as before.
	old := maps.Clone(base)
	for _, k := range []string{"keel_last_end", "keel_last_end_slot", "keel_last_end_mode", "keel_last_end_detail", "keel_shutdown", "keel_slot_b_uncounted"} {
		delete(old, k)
	}
	r, err := Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	w := want.Clone()
	w.LastEnd, w.Shutdown, w.Slots[1].Uncounted = End{}, "", 0
	if !r.Equal(w) {
		t.Errorf("without the new variables:\n%+v\nwant\n%+v", r, w)
	}
}
