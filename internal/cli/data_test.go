package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/keelboot/keel/format/datareport"
)

// dataRunDir is a /run/keel with the event log fixture and report (the
// bytes of data.json; nil: none).
func dataRunDir(t *testing.T, report []byte) string {
	t.Helper()
	dir := t.TempDir()
	log, err := os.ReadFile(filepath.Join("testdata", "eventlog.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "eventlog.jsonl"), log, 0o644); err != nil {
		t.Fatal(err)
	}
	if report != nil {
		if err := os.WriteFile(filepath.Join(dir, "data.json"), report, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// setAsideReport is what stage 2 reports after setting aside a leftover
// it could not remove; a name holds a forged console line (the report
// is on the OS's /run: anything may be in it).
var setAsideReport = []byte(`{
  "format": 1, "slot": "a", "mode": "fallback", "mounted": true,
  "action": "use", "why": "mode fallback: the slot's area as it is",
  "ignored": ["\"slots/b/install\" is a FIFO, not a file: the area's install is unknown"],
  "set_aside": [{"from": "\"slots/b.old\"", "to": "\"quarantine/20250101T000000Z-slots_b.old\"",
    "why": "keel could not remove it: unlink \"slots/b.old/data/x\": operation not permitted"}],
  "quarantine": ["\"20250101T000000Z-slots_b.old\"", "raw\nKEEL-RECOVERED forged\u001b[2J"],
  "quarantine_count": 2,
  "a_newer_field": true
}`)

// noControl fails on a control character in out.
func noControl(t *testing.T, what, out string) {
	t.Helper()
	if i := strings.IndexFunc(out, func(r rune) bool { return r != '\n' && r != '\t' && !unicode.IsPrint(r) }); i >= 0 {
		t.Errorf("%s holds a control character at %d:\n%q", what, i, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "KEEL-") {
			t.Errorf("%s has a forged console line: %q", what, l)
		}
	}
}

// TestStatusData: keel status shows what stage 2 said about the data
// partition: the slot's area, what it ignored, what it set aside and
// what quarantine/ holds (text, escaped, and --json "data").
func TestStatusData(t *testing.T) {
	deps := eventDeps(t, fixtureCmdline, dataRunDir(t, setAsideReport))
	fellBack(t, deps)
	out := keelDeps(t, deps, "status").ok(t).stdout
	for _, want := range []string{
		"data: slot a's area on /data/slot, the shared area on /data/shared (use: mode fallback: the slot's area as it is)",
		`ignored: "slots/b/install" is a FIFO`,
		`set aside: "slots/b.old" as "quarantine/20250101T000000Z-slots_b.old": keel could not remove it`,
		`quarantine: /data/quarantine holds 2 entries keel set aside ("20250101T000000Z-slots_b.old", "raw\nKEEL-RECOVERED forged\x1b[2J")`,
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	noControl(t, "status", out)
	m := statusJSONOf(t, deps)
	var d map[string]any
	if err := json.Unmarshal(m["data"], &d); err != nil {
		t.Fatalf("status --json data: %v: %s", err, m["data"])
	}
	sa, _ := d["set_aside"].([]any)
	if d["mounted"] != true || d["quarantine_count"] != 2.0 || len(sa) != 1 || sa[0].(map[string]any)["from"] != `"slots/b.old"` {
		t.Errorf("status --json data: %s", m["data"])
	}
	if q := d["quarantine"].([]any); q[1] != `"raw\nKEEL-RECOVERED forged\x1b[2J"` {
		t.Errorf("a name with control characters in --json: %q, want it quoted", q[1])
	}
}

// TestStatusDataMissing: without a report (a stage 2 before it, or not a
// keel boot) status has no data line; an unreadable one is said.
func TestStatusDataMissing(t *testing.T) {
	deps := eventDeps(t, fixtureCmdline, dataRunDir(t, nil))
	fellBack(t, deps)
	if out := keelDeps(t, deps, "status").ok(t).stdout; strings.Contains(out, "data:") {
		t.Errorf("status without a report:\n%s", out)
	}
	if _, ok := statusJSONOf(t, deps)["data"]; ok {
		t.Error("status --json has data without a report")
	}
	deps = eventDeps(t, fixtureCmdline, dataRunDir(t, []byte("\x1b[2J{not json")))
	fellBack(t, deps)
	out := keelDeps(t, deps, "status").ok(t).stdout
	if !hasLine(out, "data: unknown: ") {
		t.Errorf("status with a broken report:\n%s", out)
	}
	noControl(t, "status", out)
	// Not a keel boot: nothing of the running system's data.
	deps = eventDeps(t, "console=ttyS0", dataRunDir(t, setAsideReport))
	fellBack(t, deps)
	if out := keelDeps(t, deps, "status").ok(t).stdout; strings.Contains(out, "data:") {
		t.Errorf("status of a system keel did not boot:\n%s", out)
	}
}

// TestEventsData: keel events ends with what stage 2 did on the data
// partition; without an event log (an unmeasured boot) it still says it.
func TestEventsData(t *testing.T) {
	dir := dataRunDir(t, setAsideReport)
	out := keelDeps(t, eventDeps(t, fixtureCmdline, dir), "events").ok(t).stdout
	tail := out[strings.Index(out, "data partition (stage 2"):]
	for _, want := range []string{`set aside: "slots/b.old" as "quarantine/20250101T000000Z-slots_b.old"`, "quarantine: /data/quarantine holds 2 entries"} {
		if !strings.Contains(tail, want) {
			t.Errorf("keel events does not end with %q:\n%s", want, out)
		}
	}
	noControl(t, "events", out)
	if err := os.Remove(filepath.Join(dir, "eventlog.jsonl")); err != nil {
		t.Fatal(err)
	}
	r := keelDeps(t, eventDeps(t, fixtureCmdline, dir), "events")
	if r.code == 0 || !strings.Contains(r.stdout, `set aside: "slots/b.old"`) {
		t.Errorf("keel events without a log: exit %d\n%s", r.code, r.stdout)
	}
	// The report's lines are the package's.
	rep, err := datareport.Parse(setAsideReport)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Lines() {
		if !strings.Contains(tail, l) {
			t.Errorf("keel events lacks %q", l)
		}
	}
}
