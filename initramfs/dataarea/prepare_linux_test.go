//go:build linux

package dataarea

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	installA    = "aaaa" // slot a's install, committed
	installBOld = "b000" // what slot b held before the update
	installBNew = "b111" // the update on trial in slot b
)

// device makes a data partition: slot a's area with a few kinds of
// entries, slot b's area of its previous install, a shared area.
func device(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	w := func(p, data string, perm fs.FileMode) {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	w("slots/a/install", installA+"\n", 0o644)
	w("slots/a/data/app/db", "version 1 data", 0o600)
	w("slots/a/data/app/sub/deep.txt", strings.Repeat("x", 10000), 0o644)
	w("slots/a/data/empty", "", 0o640)
	if err := os.Mkdir(filepath.Join(root, "slots/a/data/emptydir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app/db", filepath.Join(root, "slots/a/data/link")); err != nil {
		t.Fatal(err)
	}
	w("slots/b/install", installBOld+"\n", 0o644)
	w("slots/b/data/app/db", "version 0 data", 0o600)
	w("shared/log", "shared", 0o644)
	// Fixed times: every device() is the same, and a copy must keep them.
	for i, p := range []string{"slots/a/data/app/db", "slots/a/data/app/sub/deep.txt", "slots/a/data/empty", "slots/b/data/app/db", "slots/a/install", "slots/b/install"} {
		ts := time.Date(2020, 1, 2, 3, 4, i, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(root, p), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tree describes every entry under dir: type, mode, content or link
// target, and a regular file's modification time.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(b) > 32 {
				b = fmt.Appendf(nil, "sha256:%x", sha256.Sum256(b))
			}
			v += fmt.Sprintf(" %q", b)
			if d.Name() != InstallFile {
				v += fmt.Sprint(" ", fi.ModTime().UnixNano())
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		m[rel] = v
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func trialB() State {
	return State{Slot: "b", Mode: ModeTrial, Install: installBNew, Source: "a"}
}

func plenty(string) (uint64, error) { return 1 << 40, nil }

func TestSnapshotOnFirstTrialBoot(t *testing.T) {
	root := device(t)
	srcBefore := tree(t, filepath.Join(root, "slots/a"))
	p, area, err := Prepare(root, trialB(), Options{Free: plenty})
	if err != nil {
		t.Fatal(err)
	}
	if p.Action != Snapshot || p.Source != "a" || area != filepath.Join(root, "slots/b/data") {
		t.Fatalf("plan %+v, area %s", p, area)
	}
	if got := tree(t, filepath.Join(root, "slots/a")); !equal(got, srcBefore) {
		t.Errorf("the source changed:\n%v\nwant\n%v", got, srcBefore)
	}
	if got, want := tree(t, area), tree(t, filepath.Join(root, "slots/a/data")); !equal(got, want) {
		t.Errorf("the trial's area is not a copy:\n%v\nwant\n%v", got, want)
	}
	checkInstall(t, root, "b", installBNew)
	for _, d := range []string{"shared", "slot"} {
		if st, err := os.Stat(filepath.Join(root, d)); err != nil || !st.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "shared/log")); string(b) != "shared" {
		t.Errorf("shared area: %q", b)
	}

	// The trial writes; its next boot keeps what it wrote.
	if err := os.WriteFile(filepath.Join(area, "app/db"), []byte("version 2 data"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _, err = Prepare(root, trialB(), Options{Free: plenty})
	if err != nil || p.Action != Use {
		t.Fatalf("second trial boot: %+v, %v", p, err)
	}
	if b, _ := os.ReadFile(filepath.Join(area, "app/db")); string(b) != "version 2 data" {
		t.Errorf("the trial's data after its second boot: %q", b)
	}

	// The trial fails: the fallback boots a with its area as it was.
	p, areaA, err := Prepare(root, State{Slot: "a", Mode: "fallback", Install: installA, Source: "b"}, Options{Free: plenty})
	if err != nil || p.Action != Use || areaA != filepath.Join(root, "slots/a/data") {
		t.Fatalf("fallback: %+v %s, %v", p, areaA, err)
	}
	if got := tree(t, filepath.Join(root, "slots/a")); !equal(got, srcBefore) {
		t.Errorf("slot a's area after the fallback:\n%v\nwant\n%v", got, srcBefore)
	}
}

func TestCreateEmptyArea(t *testing.T) {
	root := t.TempDir()
	p, area, err := Prepare(root, State{Slot: "a", Mode: "normal", Install: installA, Source: "b"}, Options{})
	if err != nil || p.Action != Create {
		t.Fatalf("%+v, %v", p, err)
	}
	if got := tree(t, area); len(got) != 1 {
		t.Errorf("new area: %v", got)
	}
	checkInstall(t, root, "a", installA)
}

func TestNoSpace(t *testing.T) {
	root := device(t)
	before := tree(t, root)
	small := func(string) (uint64, error) { return Reserve, nil }
	_, _, err := Prepare(root, trialB(), Options{Free: small})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "install again") {
		t.Fatalf("got %v, want %v naming the fix", err, ErrNoSpace)
	}
	after := tree(t, root)
	for _, d := range []string{"shared", "slot", "slots"} {
		delete(after, d)
	}
	delete(before, "shared")
	delete(before, "slots")
	if !equal(before, after) {
		t.Errorf("the partition changed:\n%v\nwant\n%v", after, before)
	}
}

var errCut = errors.New("power cut")

// TestPowerCut cuts the power before every change the snapshot makes:
// the source never changes, the trial's area is its old one, absent or
// the complete copy (never a partial copy in place), and the next boot
// ends with the complete copy.
func TestPowerCut(t *testing.T) {
	steps := 0
	if _, _, err := Prepare(device(t), trialB(), Options{Free: plenty, Cut: func() error { steps++; return nil }}); err != nil {
		t.Fatal(err)
	}
	if steps < 5 {
		t.Fatalf("only %d steps", steps)
	}
	ref := device(t)
	srcBefore := tree(t, filepath.Join(ref, "slots/a"))
	oldB := tree(t, filepath.Join(ref, "slots/b"))
	if _, _, err := Prepare(ref, trialB(), Options{Free: plenty}); err != nil {
		t.Fatal(err)
	}
	newB := tree(t, filepath.Join(ref, "slots/b"))
	for k := range steps {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			root := device(t)
			n := 0
			_, _, err := Prepare(root, trialB(), Options{Free: plenty, Cut: func() error {
				if n == k {
					return errCut
				}
				n++
				return nil
			}})
			if !errors.Is(err, errCut) {
				t.Fatalf("cut at step %d: %v", k, err)
			}
			if got := tree(t, filepath.Join(root, "slots/a")); !equal(got, srcBefore) {
				t.Fatalf("the source changed")
			}
			switch got := tree(t, filepath.Join(root, "slots/b")); {
			case got == nil, equal(got, oldB), equal(got, newB):
			default:
				t.Fatalf("slot b's area after the cut: %v", got)
			}
			p, _, err := Prepare(root, trialB(), Options{Free: plenty})
			if err != nil {
				t.Fatal(err)
			}
			if got := tree(t, filepath.Join(root, "slots/b")); !equal(got, newB) {
				t.Fatalf("after the next boot (%v): %v, want %v", p.Action, got, newB)
			}
			if got := tree(t, filepath.Join(root, "slots/a")); !equal(got, srcBefore) {
				t.Fatalf("the source changed at the next boot")
			}
			entries, _ := os.ReadDir(filepath.Join(root, "slots"))
			if len(entries) != 2 {
				t.Errorf("left over: %v", entries)
			}
		})
	}
}

func checkInstall(t *testing.T, root, slot, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "slots", slot, InstallFile))
	if err != nil || strings.TrimSpace(string(b)) != want {
		t.Errorf("slot %s's install: %q, %v; want %q", slot, b, err, want)
	}
}

// TestProgress: a snapshot reports progress for every entry it copies
// (stage 2 pets the watchdog there); a later boot copies nothing.
func TestProgress(t *testing.T) {
	root := device(t)
	n := 0
	if _, _, err := Prepare(root, trialB(), Options{Free: plenty, Progress: func() { n++ }}); err != nil {
		t.Fatal(err)
	}
	if want := len(tree(t, filepath.Join(root, "slots/a/data"))); n < want {
		t.Errorf("%d progress calls for %d entries", n, want)
	}
	n = 0
	if _, _, err := Prepare(root, trialB(), Options{Free: plenty, Progress: func() { n++ }}); err != nil || n != 0 {
		t.Errorf("a later boot: %d progress calls, %v", n, err)
	}
}

// TestPrepareRefusesLinks: a symbolic link planted by the OS where keel
// expects a folder (the slots folder, a slot, its area, the mount point)
// is refused, and nothing is read through it.
func TestPrepareRefusesLinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{SlotsDir, SlotsDir + "/a", SlotsDir + "/a/" + AreaData, MountDir} {
		t.Run(link, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
			_, _, err := Prepare(root, State{Slot: "b", Source: "a", Mode: ModeTrial, Install: "i2"}, Options{Free: func(string) (uint64, error) { return 1 << 40, nil }})
			if err == nil || !strings.Contains(err.Error(), "is not a folder") {
				t.Fatalf("Prepare with %s a link: %v", link, err)
			}
			if _, err := os.Stat(filepath.Join(root, SlotsDir, "b", AreaData, "secret")); err == nil {
				t.Error("copied through the link")
			}
		})
	}
}
