//go:build linux

package stage2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/datareport"
	"github.com/keelboot/keel/initramfs/dataarea"
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

func TestDataState(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	h := cmdline.Handoff{Slot: "b", Mode: "trial", Verity: &cmdline.Verity{RootHash: "ab12"}}
	for _, c := range []struct {
		h       cmdline.Handoff
		trialID string
		want    dataarea.State
	}{
		{h, id, dataarea.State{Slot: "b", Mode: "trial", Install: id, Source: "a"}},
		{h, "", dataarea.State{Slot: "b", Mode: "trial", Install: "ab12", Source: "a"}},
		{cmdline.Handoff{Slot: "b", Mode: "trial"}, "", dataarea.State{Slot: "b", Mode: "trial", Source: "a"}},
		{cmdline.Handoff{Slot: "a", Mode: "normal", Verity: h.Verity}, "", dataarea.State{Slot: "a", Mode: "normal", Source: "b"}},
	} {
		if got := dataState(c.h, []string{"a", "b"}, c.trialID); got != c.want {
			t.Errorf("dataState(%+v, %q) = %+v, want %+v", c.h, c.trialID, got, c.want)
		}
	}
}

// TestReadTrialID: the trial id keel-init handed over is read only from a
// regular file of a bounded size holding an id; anything else is no id,
// never a hang or a failed boot.
func TestReadTrialID(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		name string
		make func(t *testing.T, p string)
		want string
	}{
		{"as stage 1 writes it", func(t *testing.T, p string) { write(t, p, id+"\n") }, id},
		{"without the newline", func(t *testing.T, p string) { write(t, p, id) }, id},
		{"none (an older keel-init)", func(t *testing.T, p string) {}, ""},
		{"empty", func(t *testing.T, p string) { write(t, p, "") }, ""},
		{"not an id", func(t *testing.T, p string) { write(t, p, "../../etc/passwd\n") }, ""},
		{"two lines", func(t *testing.T, p string) { write(t, p, id+"\n"+id+"\n") }, ""},
		{"huge", func(t *testing.T, p string) { write(t, p, strings.Repeat("a", 1<<20)) }, ""},
		{"a symbolic link to an id", func(t *testing.T, p string) {
			write(t, p+".real", id+"\n")
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a FIFO", func(t *testing.T, p string) {
			if err := unix.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a folder", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.make(t, filepath.Join(dir, "trial-id"))
			var log []string
			got := readTrialID(dir, func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) })
			if got != c.want {
				t.Errorf("readTrialID = %q, want %q", got, c.want)
			}
			if c.want == "" && len(log) != 1 {
				t.Errorf("no id, and the console says: %q", log)
			}
		})
	}
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o444); err != nil {
		t.Fatal(err)
	}
}

// dataBoot is one boot in a data-area story: the slot, its mode, its
// root hash and the trial id keel-init hands over ("" none).
type dataBoot struct{ slot, mode, root, id string }

// bootData prepares the booted slot's area as stage 2 does and appends a
// line to its log file (what the OS writes in that boot); it returns the
// log as the boot found it.
func bootData(t *testing.T, dir string, b dataBoot) string {
	t.Helper()
	h := cmdline.Handoff{Slot: b.slot, Mode: b.mode, Verity: &cmdline.Verity{RootHash: b.root}}
	res, err := dataarea.Prepare(dir, dataState(h, []string{"a", "b"}, b.id), dataarea.Options{Free: func(string) (uint64, error) { return 1 << 40, nil }})
	if err != nil {
		t.Fatal(err)
	}
	area := res.Area
	found, err := os.ReadFile(filepath.Join(area, "log"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(area, "log"), append(found, b.line()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return string(found)
}

func (b dataBoot) line() string { return fmt.Sprintf("%s %s %s %s\n", b.slot, b.mode, b.root, b.id) }

// TestTrialStartsFromRunningArea: whatever the trial installs, its first
// boot starts from the running slot's area as it is now, and its later
// boots keep what it wrote; other boots find their slot's area as they
// left it. Through dataarea.Prepare on a real folder, with the trial ids
// keel-init hands over (the install and keel try draw one per trial).
func TestTrialStartsFromRunningArea(t *testing.T) {
	const r1, r2 = "1111", "2222" // root hashes
	const t1, t2, t3, t4 = "11111111111111111111111111111111", "22222222222222222222222222222222",
		"33333333333333333333333333333333", "44444444444444444444444444444444"
	for _, c := range []struct {
		name  string
		boots []dataBoot
	}{
		{"a kernel-only update twice", []dataBoot{
			{"a", "normal", r1, ""}, {"b", "trial", r1, t1}, {"b", "normal", r1, ""}, {"a", "trial", r1, t2}, {"a", "normal", r1, ""},
			{"b", "trial", r1, t3}, {"b", "trial", r1, t3}, {"b", "normal", r1, ""},
		}},
		{"the same bundle installed twice", []dataBoot{
			{"a", "normal", r1, ""}, {"b", "trial", r2, t1}, {"b", "normal", r2, ""}, {"a", "trial", r1, t2}, {"a", "normal", r1, ""},
			{"b", "trial", r2, t3},
		}},
		{"a bundle retried after a failed trial", []dataBoot{
			{"a", "normal", r1, ""}, {"b", "trial", r2, t1}, {"b", "trial", r2, t1}, {"a", "fallback", r1, ""}, {"a", "normal", r1, ""},
			{"b", "trial", r2, t2},
		}},
		{"keel try of an installed slot, no new install", []dataBoot{
			{"a", "normal", r1, ""}, {"b", "trial", r2, t1}, {"a", "fallback", r1, ""}, {"a", "normal", r1, ""},
			{"b", "trial", r2, t4}, {"b", "normal", r2, ""},
		}},
		{"an older keel-init (no ids): its trials by root hash", []dataBoot{
			{"a", "normal", r1, ""}, {"b", "trial", r2, ""}, {"b", "trial", r2, ""}, {"b", "normal", r2, ""}, {"a", "trial", r1, ""},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			running := map[string]string{} // slot: its area's log after its last boot
			for i, b := range c.boots {
				found := bootData(t, dir, b)
				from := b.slot // a boot finds its slot's area as it left it...
				if b.mode == "trial" && (i == 0 || c.boots[i-1] != b) {
					from = otherSlot([]string{"a", "b"}, b.slot) // ...but a trial's first boot the running slot's
				}
				if found != running[from] {
					t.Errorf("boot %d (%v) found\n%s\nwant slot %s's area as it is now:\n%s", i, b, found, from, running[from])
				}
				running[b.slot] = found + b.line()
			}
		})
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
