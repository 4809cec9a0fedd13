//go:build linux

package stage2

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/datareport"
)

func TestOtherSlot(t *testing.T) {
	for _, c := range []struct {
		slots  []string
		booted string
		want   string
	}{
		{[]string{"a", "b"}, "a", "b"},
		{[]string{"a", "b"}, "b", "a"},
		{[]string{"a", "b"}, "c", ""},
		{[]string{"a"}, "a", ""},
		{[]string{"a", "b", "c"}, "a", ""},
		{nil, "a", ""},
	} {
		if got := otherSlot(c.slots, c.booted); got != c.want {
			t.Errorf("otherSlot(%v, %q) = %q, want %q", c.slots, c.booted, got, c.want)
		}
	}
}

func TestDataFatal(t *testing.T) {
	for mode, want := range map[string]bool{"trial": true, "normal": false, "fallback": false, "": false} {
		if got := dataFatal(mode); got != want {
			t.Errorf("dataFatal(%q) = %v, want %v", mode, got, want)
		}
	}
}

func TestInstallOf(t *testing.T) {
	if got := installOf(cmdline.Handoff{}); got != "" {
		t.Errorf("no verity: %q", got)
	}
	h := cmdline.Handoff{Verity: &cmdline.Verity{RootHash: "ab12"}}
	if got := installOf(h); got != "ab12" {
		t.Errorf("verity: %q", got)
	}
}

// TestWriteReport: the report stage 2 leaves the OS is one
// format/datareport reads back.
func TestWriteReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keel", "data.json")
	rep := datareport.Report{Format: datareport.Format, Slot: "a", Mode: "normal", Mounted: true, Action: "use",
		SetAside: []datareport.SetAside{{From: `"slots/b.old"`, To: `"quarantine/x"`, Why: "immutable"}}, QuarantineCount: 1}
	var lines []string
	writeReport(path, rep, func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	b, err := os.ReadFile(path)
	if err != nil || len(lines) != 0 {
		t.Fatalf("%v %q", err, lines)
	}
	got, err := datareport.Parse(b)
	if err != nil || !got.Mounted || len(got.SetAside) != 1 || got.SetAside[0] != rep.SetAside[0] {
		t.Errorf("read back %+v, %v", got, err)
	}
	// A failure is a warning, not an error.
	writeReport(filepath.Join(path, "under-a-file"), rep, func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	if len(lines) != 1 || !strings.Contains(lines[0], "warning: data: the report for the OS") {
		t.Errorf("a report that cannot be written: %q", lines)
	}
}
