package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/tpm"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// eventDeps are the Deps of a system keel booted with the kernel command
// line line, keel's hand-over in runDir.
func eventDeps(t *testing.T, line, runDir string) Deps {
	var opened, disarmed int
	d := cmdlineDeps(t, line, nil, &opened, &disarmed)
	d.RunDir = runDir
	return d
}

const fixtureCmdline = "console=ttyS0 quiet keel.stage=2 keel.slot=a keel.mode=fallback keel.rootfstype=erofs keel.secver=3 keel.store=efivars"

// TestEvents: `keel events` prints this boot's event log (the fixture:
// what keel-init logs for a measured fallback boot of slot a, taken from a
// TPM simulator) one line per event; the golden file is
// testdata/events.golden (go test -update rewrites it).
func TestEvents(t *testing.T) {
	out := keelDeps(t, eventDeps(t, fixtureCmdline, "testdata"), "events").ok(t).stdout
	golden := filepath.Join("testdata", "events.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if out != string(want) {
		t.Errorf("keel events:\n%s\nwant:\n%s", out, want)
	}
	// One line per event, and the fixture is a log keel can replay.
	log, err := os.ReadFile(filepath.Join("testdata", "eventlog.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.ReplayLog(bytes.NewReader(log)); err != nil {
		t.Fatalf("the fixture does not replay: %v", err)
	}
	events := bytes.Count(log, []byte("\n"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != events+3 || !strings.Contains(out, "boot mode: fallback") || !strings.Contains(out, "keel.separator") {
		t.Errorf("%d events, output:\n%s", events, out)
	}
	// A file named on the command line is read instead.
	if got := keelDeps(t, eventDeps(t, "", t.TempDir()), "events", filepath.Join("testdata", "eventlog.jsonl")).ok(t).stdout; got != out {
		t.Errorf("events FILE:\n%s", got)
	}
}

// TestEventsJSON: --json prints the log byte for byte.
func TestEventsJSON(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "eventlog.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := keelDeps(t, eventDeps(t, fixtureCmdline, "testdata"), "events", "--json").ok(t).stdout; got != string(want) {
		t.Errorf("events --json:\n%s\nwant:\n%s", got, want)
	}
}

// TestEventsMissing: without the log the error names the file and says
// why it may be missing, from the kernel command line.
func TestEventsMissing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "eventlog.jsonl")
	for line, want := range map[string]string{
		"console=ttyS0":                         "this system was not booted by keel",
		fixtureCmdline + " keel.tpm=unmeasured": "keel-init did not measure this boot",
		fixtureCmdline:                          "not booted by keel, or /run/keel was removed",
	} {
		r := keelDeps(t, eventDeps(t, line, dir), "events")
		r.fails(t, ExitStorage, "no event log at "+file+": "+want)
		keelDeps(t, eventDeps(t, line, dir), "events", "--json").fails(t, ExitStorage, file)
	}
	keelDeps(t, eventDeps(t, "", dir), "events", "a", "b").fails(t, ExitUsage, "usage")
}

// TestEventsBadLine: a line that is not an event names the file and line.
func TestEventsBadLine(t *testing.T) {
	dir := t.TempDir()
	log, err := os.ReadFile(filepath.Join("testdata", "eventlog.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "eventlog.jsonl"), append(log, "not json\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	keelDeps(t, eventDeps(t, fixtureCmdline, dir), "events").fails(t, ExitStorage, filepath.Join(dir, "eventlog.jsonl")+" line 9")
}

// TestEventWhat: binary, unlogged and control-character data are shown
// safely.
func TestEventWhat(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, tc := range []struct {
		e    tpm.LogEntry
		want string
	}{
		{tpm.LogEntry{Type: tpm.EventSlot, Description: "boot slot", Data: s("keel:slot=b")}, "boot slot: b"},
		{tpm.LogEntry{Type: "x", Description: "firmware", DataHex: "00ff"}, "firmware (2 bytes of binary data)"},
		{tpm.LogEntry{Type: "x", Description: "big"}, "big (data not logged)"},
		{tpm.LogEntry{Type: tpm.EventMode, Description: "boot mode", Data: s("keel:mode=tri\x1bal")}, `boot mode: "tri\x1bal"`},
		{tpm.LogEntry{Type: "x", Description: "long", Data: s(strings.Repeat("é", 100))}, "long: " + strings.Repeat("é", 80) + "…"},
	} {
		if got := eventWhat(tc.e); got != tc.want {
			t.Errorf("eventWhat(%+v) = %q, want %q", tc.e, got, tc.want)
		}
	}
}
