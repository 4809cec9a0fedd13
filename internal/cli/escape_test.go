package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// terminalSafe returns an error naming the first byte or rune of out a
// terminal could act on: a control character but the newline (and the
// tab, which tabwriter does not write but an indent may), DEL, a C1
// control, invalid UTF-8, a format character (bidirectional overrides).
func terminalSafe(out string) error {
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return fmt.Errorf("invalid byte %#x at %d in %q", out[i], i, out)
		case r == '\n' || r == '\t' || r == ' ':
		case !unicode.IsPrint(r):
			return fmt.Errorf("rune %U at %d in %q", r, i, out)
		}
		i += n
	}
	return nil
}

// hostile are strings an attacker with write access to the record (the
// OS, anything that can write the U-Boot env or the EFI variable) or to
// the event log would put there: a window title and clear screen, a raw
// 8-bit CSI, a UTF-8 C1 CSI, DEL, a bidirectional override, a fake line.
var hostile = []string{
	"\x1b]0;owned\x07 \x1b[2J",
	"ok \x9b31m",
	"1.0\u009b2J",
	"del\x7f\x7f",
	"\u202egnp.exe",
	"x\rKEEL-BOOT slot=a",
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"slot b failed: verity", "slot b failed: verity"},
		{"version 1.0 (é, 中文, ✓)", "version 1.0 (é, 中文, ✓)"},
		{"\x1b[2J", `"\x1b[2J"`},
		{"a\x9bb", `"a\x9bb"`},
		{"a\u009bb", `"a\u009bb"`},
		{"a\x7f", `"a\x7f"`},
		{"\u202eabc", `"\u202eabc"`},
		{"a\tb\rc", `"a\tb\rc"`},
		{"", ""},
	} {
		got := printable(tc.in)
		if got != tc.want {
			t.Errorf("printable(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if err := terminalSafe(got); err != nil {
			t.Errorf("printable(%q): %v", tc.in, err)
		}
	}
}

func TestEscapeJSON(t *testing.T) {
	in := map[string]string{}
	for i, s := range hostile {
		in[fmt.Sprint(i)] = s
	}
	in["astral"] = "\U0001F600 \U000E0001" // printable, and a format character above U+FFFF
	in["plain"] = "<a & b> é"
	b, _ := json.Marshal(in)
	out := escapeJSON(b)
	if err := terminalSafe(string(out)); err != nil {
		t.Fatal(err)
	}
	var back map[string]string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Invalid UTF-8 is U+FFFD once encoded, as encoding/json writes it.
	want := map[string]string{}
	json.Unmarshal(b, &want)
	if !reflect.DeepEqual(back, want) {
		t.Errorf("escaped JSON decodes to %q, want %q", back, want)
	}
	if plain := []byte(`{"a":"b é ✓"}`); &escapeJSON(plain)[0] != &plain[0] {
		t.Error("escapeJSON copied JSON that needed nothing")
	}
	if got := string(escapeJSON([]byte("\"\xff\""))); got != `"\ufffd"` {
		t.Errorf("an invalid byte becomes %s", got)
	}
}

// TestStatusEscapesRecordText: whatever the record's text fields hold,
// keel status (text and --json) and keel select put no terminal control
// on the admin's terminal; the JSON still decodes to the record's text.
func TestStatusEscapesRecordText(t *testing.T) {
	cfg := envConfig(t, true)
	k := func(args ...string) result { return keel(t, append([]string{"-c", cfg}, args...)...) }
	k("init", "--active", "a").ok(t)
	k("try", "b", "--tries", "2").ok(t)
	set := map[string]string{
		"keel_recovery":                 hostile[0],
		"keel_last_slot":                "a",
		"keel_last_mode":                "normal",
		"keel_last_reason":              hostile[1],
		"keel_slot_a_version":           hostile[2],
		"keel_slot_b_version":           hostile[5],
		"keel_last_recovery":            hostile[3],
		"keel_started_over":             hostile[4],
		"keel_slot_b_reason":            hostile[4],
		"keel_last_fallback_failed":     "b",
		"keel_last_fallback_slot":       "a",
		"keel_last_fallback_mode":       "fallback",
		"keel_last_fallback_generation": "2",
		"keel_last_fallback_reason":     hostile[0] + hostile[1],
	}
	args := []string{"env", "set"}
	for k, v := range set {
		args = append(args, k+"="+v)
	}
	k(args...).ok(t)

	r := k("status").ok(t)
	if err := terminalSafe(r.stdout + r.stderr); err != nil {
		t.Errorf("keel status: %v", err)
	}
	if !strings.Contains(r.stdout, `\x1b]0;owned\a \x1b[2J`) || !strings.Contains(r.stdout, `1.0\u009b2J`) || !strings.Contains(r.stdout, `ok \x9b31m`) {
		t.Errorf("keel status does not show the escaped text:\n%s", r.stdout)
	}
	r = k("status", "--json").ok(t)
	if err := terminalSafe(r.stdout); err != nil {
		t.Errorf("keel status --json: %v", err)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if *st.Recovery != hostile[0] || st.Slots["a"].Version != hostile[2] || st.LastFallback == nil || st.LastFallback.Reason != hostile[0]+"ok \ufffd31m" {
		t.Errorf("status --json changed the text: recovery %q, a's version %q, fallback %q", *st.Recovery, st.Slots["a"].Version, fmt.Sprint(st.LastFallback))
	}
	for _, args := range [][]string{{"select"}, {"select", "--json"}} {
		r = k(args...).ok(t)
		if err := terminalSafe(r.stdout + r.stderr); err != nil {
			t.Errorf("keel %v: %v", args, err)
		}
	}
}

// TestEventsEscapesLogText: an event log the OS rewrote (it is in /run)
// prints no terminal control, as text or --json; a line with a raw
// control character in a string is not JSON, and is refused.
func TestEventsEscapesLogText(t *testing.T) {
	var log strings.Builder
	for i, s := range hostile {
		e := map[string]any{"pcr": 8, "type": "keel-" + s, "description": s, "data": "keel:x=" + s, "digests": map[string]string{"sha256": strings.Repeat("00", 32)}}
		if i%2 == 0 {
			e["data"] = s
		}
		b, _ := json.Marshal(e)
		log.Write(b)
		log.WriteString("\n")
	}
	file := filepath.Join(t.TempDir(), "eventlog.jsonl")
	mustWrite(t, file, []byte(log.String()), 0o644)
	deps := eventDeps(t, "", "")
	r := keelDeps(t, deps, "events", file).ok(t)
	if err := terminalSafe(r.stdout); err != nil {
		t.Errorf("keel events: %v", err)
	}
	if !strings.Contains(r.stdout, `\u202egnp.exe`) {
		t.Errorf("keel events does not show the escaped text:\n%s", r.stdout)
	}
	r = keelDeps(t, deps, "events", "--json", file).ok(t)
	if err := terminalSafe(r.stdout); err != nil {
		t.Errorf("keel events --json: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	orig := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != len(orig) {
		t.Fatalf("keel events --json printed %d lines for %d", len(lines), len(orig))
	}
	for i := range lines {
		var a, b any
		json.Unmarshal([]byte(lines[i]), &a)
		json.Unmarshal([]byte(orig[i]), &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("line %d decodes to %v, the log's to %v", i+1, a, b)
		}
	}
	raw := filepath.Join(t.TempDir(), "raw.jsonl")
	mustWrite(t, raw, []byte(orig[0]+"\n{\"pcr\":8,\"type\":\"x\",\"description\":\"\x1b[2J\"}\n"), 0o644)
	for _, args := range [][]string{{"events", raw}, {"events", "--json", raw}} {
		r := keelDeps(t, deps, args...)
		if r.code != ExitStorage || !strings.Contains(r.stderr, "line 2") {
			t.Errorf("keel %v with a raw ESC in a string: exit %d, %q", args, r.code, r.stderr)
		}
		if err := terminalSafe(r.stdout + r.stderr); err != nil {
			t.Errorf("keel %v: %v", args, err)
		}
	}
}

// FuzzPrintEventsJSON: whatever an event log holds (the OS can write it),
// keel events --json either refuses it or prints lines that put no
// terminal control on the screen and decode to the log's values; and
// printable makes any string safe.
func FuzzPrintEventsJSON(f *testing.F) {
	for _, s := range hostile {
		b, _ := json.Marshal(map[string]any{"pcr": 8, "description": s})
		f.Add(b)
	}
	f.Add([]byte("{\"a\":\"\x1b\"}\n{\"b\":\r1}\n\n"))
	f.Add([]byte("[\"\xc2\x9b\", \"\xff\"]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := terminalSafe(printable(string(b))); err != nil {
			t.Fatalf("printable: %v", err)
		}
		var out strings.Builder
		if err := printEventsJSON(&out, "log", b); err != nil {
			return
		}
		if err := terminalSafe(out.String()); err != nil {
			t.Fatal(err)
		}
		var in []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(l) != "" {
				in = append(in, l)
			}
		}
		got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(in) == 0 {
			return
		}
		if len(got) != len(in) {
			t.Fatalf("%d lines printed for %d", len(got), len(in))
		}
		for i := range in {
			var a, w any
			if err := json.Unmarshal([]byte(got[i]), &a); err != nil {
				t.Fatalf("line %d printed is not JSON: %v", i+1, err)
			}
			json.Unmarshal([]byte(in[i]), &w)
			if !reflect.DeepEqual(a, w) {
				t.Fatalf("line %d: %v, the log's %v", i+1, a, w)
			}
		}
	})
}
