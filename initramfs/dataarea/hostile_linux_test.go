//go:build linux

package dataarea

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/datareport"
)

// Issue 19 section 1: nothing on the data partition may make a slot's
// boot fail, only the data areas unavailable. The OS (root in it, or an
// application in its own area) can leave anything there; stage 2 reads it
// as PID 1 before the switch. These tests plant each hostile object at
// each path Prepare touches, on a real ext4 (a loop device), and run
// Prepare under a deadline for the boots that read that path.

// testOptions are the bounds a test lowers; statfs: the free space is
// the file system's (else plenty).
type testOptions struct {
	entries, depth int
	statfs         bool
}

// outcome is what one Prepare did.
type outcome struct {
	area   string
	err    error
	log    logs
	report datareport.Report
}

// said is everything the boot printed and reported, a line each.
func (o outcome) said() string {
	return strings.Join(append(append([]string{}, o.log...), o.report.Lines()...), "\n")
}

func runPrepare(root string, s State, o testOptions) outcome {
	var out outcome
	opts := Options{Free: plenty, Logf: out.log.logf, Limits: Limits{Entries: o.entries, Depth: o.depth}}
	if o.statfs {
		opts.Free = nil
	}
	r, err := Prepare(root, s, opts)
	out.area, out.err, out.report = r.Area, err, r.Report
	return out
}

// checkQuarantined checks that from (a path on the partition) was set
// aside in quarantine/ and reported, with inside (a path under it, ""
// none) still in it, and that quarantine/ is listed.
func checkQuarantined(t *testing.T, root string, b boot, out outcome, from, inside string) {
	t.Helper()
	var to string
	for _, s := range out.report.SetAside {
		if s.From == datareport.Quote(from) {
			to = s.To
		}
	}
	if to == "" {
		t.Errorf("%s: %s not set aside:\n%s", b.name, from, out.said())
		return
	}
	if _, err := os.Lstat(filepath.Join(root, from)); err == nil {
		t.Errorf("%s: %s is still there after it was set aside", b.name, from)
	}
	if inside != "" {
		name := strings.Trim(to, `"`)
		if _, err := os.Lstat(filepath.Join(root, name, inside)); err != nil {
			t.Errorf("%s: %s/%s: %v", b.name, name, inside, err)
		}
	}
	if out.report.QuarantineCount < 1 || !strings.Contains(out.said(), "quarantine") {
		t.Errorf("%s: quarantine/ not reported: %+v", b.name, out.report)
	}
}

// hostileDeadline: longer than any Prepare of these small trees takes,
// even on a loaded machine; a hang (a FIFO opened for reading, /dev/zero
// read to its end) never ends.
const hostileDeadline = 30 * time.Second

// boot is one Prepare of the table: the booted slot, its mode, its
// install and the other slot.
type boot struct {
	name string
	s    State
}

var (
	// bootNormalA: slot a, committed, boots normally (its area as it is).
	bootNormalA = boot{"normal-a", State{Slot: "a", Mode: "normal", Install: installA, Source: "b"}}
	// bootTrialB: the first boot of b's trial: a copy of a's area.
	bootTrialB = boot{"trial-b", trialB()}
	// bootTrialA: a later boot of a trial of a (a's area is this
	// install's: it reads slots/a/install, and slots/b as the source).
	bootTrialA = boot{"trial-a", State{Slot: "a", Mode: ModeTrial, Install: installA, Source: "b"}}
	allBoots   = []boot{bootNormalA, bootTrialB, bootTrialA}
)

// outside is a folder outside the data partition that links point to:
// nothing in it may be read, copied or changed.
type outside struct{ dir string }

func newOutside(t *testing.T) outside {
	t.Helper()
	o := outside{dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(o.dir, "secret"), []byte("outside the data partition\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return o
}

// object plants one kind of hostile object at a path (replacing what
// the device had there).
type object struct {
	name string
	// plant makes the object at p; out is the folder outside the
	// partition.
	plant func(t *testing.T, p string, out outside)
	// dirOnly / fileOnly: only planted where keel expects a folder / a
	// file (a folder where a folder is expected is nothing hostile).
	dirOnly, fileOnly bool
	// unblock, if set, ends a hang on the object (the old code's FIFO
	// read): called when the deadline passes.
	unblock func(p string)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var objects = []object{
	{name: "fifo", plant: func(t *testing.T, p string, _ outside) { must(t, unix.Mkfifo(p, 0o644)) },
		unblock: func(p string) {
			// Opening the write end lets a reader's open return; closing it
			// gives it end of file.
			if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				unix.Close(fd)
			}
		}},
	{name: "link-dev-zero", plant: func(t *testing.T, p string, _ outside) { must(t, os.Symlink("/dev/zero", p)) }},
	{name: "link-outside", plant: func(t *testing.T, p string, out outside) {
		target := out.dir
		if strings.HasSuffix(p, InstallFile) {
			target = filepath.Join(out.dir, "secret")
		}
		must(t, os.Symlink(target, p))
	}},
	{name: "link-up", plant: func(t *testing.T, p string, _ outside) { must(t, os.Symlink("../../../../../../..", p)) }},
	{name: "sparse-1TiB", plant: func(t *testing.T, p string, _ outside) {
		f, err := os.Create(p)
		must(t, err)
		must(t, f.Truncate(1<<40))
		must(t, f.Close())
	}},
	{name: "device-zero", plant: func(t *testing.T, p string, _ outside) {
		must(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	}},
	{name: "socket", plant: func(t *testing.T, p string, _ outside) { must(t, unix.Mknod(p, unix.S_IFSOCK|0o777, 0)) }},
	{name: "file", dirOnly: true, plant: func(t *testing.T, p string, _ outside) {
		must(t, os.WriteFile(p, []byte("a file where keel keeps a folder\n"), 0o644))
	}},
	{name: "folder", fileOnly: true, plant: func(t *testing.T, p string, _ outside) {
		must(t, os.MkdirAll(filepath.Join(p, "sub"), 0o755))
		must(t, os.WriteFile(filepath.Join(p, "sub", "x"), []byte("x"), 0o644))
	}},
}

// hostilePath is a path on the data partition Prepare touches, and the
// boots that read it (so must say what they found there).
type hostilePath struct {
	rel   string
	dir   bool   // keel keeps a folder there (else a file)
	said  []boot // the boots that report the object
	isNew bool   // a leftover: there is nothing there before planting
}

var hostilePaths = []hostilePath{
	{rel: SlotsDir, dir: true, said: allBoots},
	{rel: SharedDir, dir: true, said: allBoots},
	{rel: MountDir, dir: true, said: allBoots},
	{rel: "slots/a", dir: true, said: allBoots},
	{rel: "slots/a/data", dir: true, said: allBoots},
	{rel: "slots/a/install", said: []boot{bootTrialA}},
	{rel: "slots/b", dir: true, said: []boot{bootTrialB, bootTrialA}},
	{rel: "slots/b/data", dir: true, said: []boot{bootTrialB, bootTrialA}},
	{rel: "slots/b/install", said: []boot{bootTrialB}},
	// Leftovers of a power cut, as every kind of object.
	{rel: "slots/a.new", dir: true, isNew: true, said: allBoots},
	{rel: "slots/b.old", dir: true, isNew: true, said: allBoots},
}

// hostileExt4 is one ext4 file system (a loop device) for a test's
// cases, each in its own folder; root only.
func hostileExt4(t *testing.T, size int64) string {
	t.Helper()
	needRoot(t)
	return mountExt4(t, size).dir
}

// hostileDevice makes a device's data partition in dir: device's layout,
// as after a few boots (the mount point slot/ made).
func hostileDevice(t *testing.T, dir string) string {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	deviceAt(t, dir)
	must(t, os.MkdirAll(filepath.Join(dir, MountDir), 0o755))
	return dir
}

// run runs Prepare for b on root under the deadline; unblock (may be
// nil) is called if it passes.
func runHostile(t *testing.T, root string, b boot, o testOptions, unblock func()) (outcome, bool) {
	t.Helper()
	done := make(chan outcome, 1)
	go func() { done <- runPrepare(root, b.s, o) }()
	select {
	case out := <-done:
		t.Logf("%s said:\n%s", b.name, out.said())
		return out, true
	case <-time.After(hostileDeadline):
		t.Errorf("%s: Prepare did not return in %s: PID 1 hangs", b.name, hostileDeadline)
		if unblock != nil {
			unblock()
		}
		return outcome{}, false
	}
}

// checkOutcome checks what every boot must: a normal boot never fails and
// has an area; a trial fails only for wantTrialErr (substring; "" none);
// nothing printed or reported holds a control character.
func checkOutcome(t *testing.T, b boot, out outcome, wantTrialErr string) {
	t.Helper()
	switch {
	case b.s.Mode != ModeTrial && out.err != nil:
		t.Errorf("%s: the normal boot fails: %v", b.name, out.err)
	case b.s.Mode != ModeTrial && out.area == "":
		t.Errorf("%s: no area for the normal boot: %s", b.name, out.said())
	case b.s.Mode == ModeTrial && wantTrialErr == "" && out.err != nil:
		t.Errorf("%s: the trial fails: %v", b.name, out.err)
	case b.s.Mode == ModeTrial && wantTrialErr != "" && (out.err == nil || !strings.Contains(out.err.Error(), wantTrialErr)):
		t.Errorf("%s: the trial's error is %v, want one saying %q", b.name, out.err, wantTrialErr)
	}
	if out.area != "" {
		var st unix.Stat_t
		if err := unix.Lstat(out.area, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("%s: the area %s is not a folder: %v", b.name, out.area, err)
		}
	}
	all := out.said()
	if out.err != nil {
		all += "\n" + out.err.Error()
	}
	for _, line := range strings.Split(all, "\n") {
		if i := strings.IndexFunc(line, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }); i >= 0 {
			t.Errorf("%s: a line with a control character (%U): %q", b.name, []rune(line[i:])[0], line)
		}
	}
}

// checkOutside checks that nothing outside the partition was changed or
// copied in.
func checkOutside(t *testing.T, root string, out outside) {
	t.Helper()
	entries, err := os.ReadDir(out.dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("the folder outside the partition changed: %v, %v", entries, err)
	}
	if b, err := os.ReadFile(filepath.Join(out.dir, "secret")); err != nil || string(b) != "outside the data partition\n" {
		t.Errorf("the file outside the partition: %q, %v", b, err)
	}
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	for _, d := range []string{"slots/a/data", "slots/b/data", "slot", "shared"} {
		// Looked up as keel would: a link planted there by the test is
		// not followed (it points to the secret, which is not a copy).
		fd, err := unix.Openat2(rfd, d+"/secret", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveBeneath})
		if err == nil {
			unix.Close(fd)
			t.Errorf("%s/secret: a file from outside the partition was copied in", d)
		}
	}
}

// TestHostileObjects plants each kind of object (a FIFO, a link to
// /dev/zero, links out of the partition, a 1 TiB sparse file, a device
// node, a socket, a file where keel keeps a folder and a folder where it
// keeps a file) at each path Prepare touches (slots/, shared/, slot/, each
// slot's folder, area and install file, leftovers of a power cut) and
// boots: a normal boot of a, the first trial boot of b (a copy of a's
// area), a later trial boot of a. None hangs; a normal boot never fails
// and always has its area; the trials never fail (a hostile object is
// "no area", "unknown install" or a leftover removed, never an error);
// each boot that reads the path says what it found there, escaped; nothing
// outside the partition is read or changed.
func TestHostileObjects(t *testing.T) {
	fs := hostileExt4(t, 256<<20)
	out := newOutside(t)
	for _, hp := range hostilePaths {
		for _, obj := range objects {
			if obj.dirOnly && !hp.dir || obj.fileOnly && hp.dir {
				continue
			}
			for _, b := range allBoots {
				name := fmt.Sprintf("%s/%s/%s", strings.ReplaceAll(hp.rel, "/", "_"), obj.name, b.name)
				t.Run(name, func(t *testing.T) {
					root := hostileDevice(t, filepath.Join(fs, strings.ReplaceAll(name, "/", "-")))
					p := filepath.Join(root, hp.rel)
					must(t, os.RemoveAll(p))
					obj.plant(t, p, out)
					var unblock func()
					if obj.unblock != nil {
						unblock = func() { obj.unblock(p) }
					}
					res, ok := runHostile(t, root, b, testOptions{}, unblock)
					if !ok {
						return
					}
					checkOutcome(t, b, res, "")
					checkOutside(t, root, out)
					said := slicesContains(hp.said, b)
					quoted := fmt.Sprintf("%q", hp.rel)
					if said && !strings.Contains(res.said(), quoted) {
						t.Errorf("%s does not say what it found at %s:\n%s", b.name, quoted, res.said())
					}
				})
			}
		}
	}
}

func slicesContains(bs []boot, b boot) bool {
	for _, x := range bs {
		if x.name == b.name {
			return true
		}
	}
	return false
}

// chattr sets or clears an inode flag (chattr(1) from e2fsprogs: +i
// immutable, +a append-only).
func chattr(t *testing.T, flag string, paths ...string) {
	t.Helper()
	if out, err := exec.Command("chattr", append([]string{flag}, paths...)...).CombinedOutput(); err != nil {
		t.Fatalf("chattr %s %v: %v\n%s", flag, paths, err, out)
	}
}

// mkdeep makes a chain of depth folders with names of n bytes under
// dir/top (relative to folder descriptors: the path is longer than
// PATH_MAX) and a file "leaf" at its end; it returns the chain's path
// length.
func mkdeep(t *testing.T, dir, top string, depth, n int) int {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, top), 0o755))
	fd, err := unix.Open(filepath.Join(dir, top), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	name := strings.Repeat("d", n)
	length := len(dir) + 1 + len(top)
	for range depth {
		must(t, unix.Mkdirat(fd, name, 0o755))
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		unix.Close(fd)
		fd = next
		length += 1 + n
	}
	leaf, err := unix.Openat(fd, "leaf", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	must(t, err)
	if _, err := unix.Write(leaf, []byte("at the bottom\n")); err != nil {
		t.Fatal(err)
	}
	unix.Close(leaf)
	unix.Close(fd)
	return length + len("/leaf")
}

// readDeep reads the leaf mkdeep made under dir/top ("" when it is not
// there).
func readDeep(t *testing.T, dir, top string, depth, n int) string {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, top), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return ""
	}
	name := strings.Repeat("d", n)
	for range depth {
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			return ""
		}
		fd = next
	}
	defer unix.Close(fd)
	leaf, err := unix.Openat(fd, "leaf", unix.O_RDONLY, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(leaf)
	buf := make([]byte, 64)
	n2, _ := unix.Read(leaf, buf)
	return string(buf[:max(n2, 0)])
}

// fakeLine is a console line keel prints (and tools parse), put in a
// file name.
const fakeLine = "\nkeel-init: [   1.000] KEEL-RECOVERED slot a reinstalled (version evil)\n\x1b[2K"

// TestHostileTrees: what an application or the OS can leave in a tree
// Prepare walks: immutable and append-only files (in a leftover of a
// power cut, in the old area a snapshot replaces), an immutable leftover
// folder, a tree deeper than PATH_MAX (in the area a trial copies, in a
// leftover), names with control characters and a forged console line,
// more entries than a walk's bound (lowered for the test). None hangs; a
// normal boot never fails; what cannot be removed is set aside in
// quarantine/ and reported; the trial fails only when its copy cannot be
// made (the source area beyond the bound).
func TestHostileTrees(t *testing.T) {
	fs := hostileExt4(t, 256<<20)
	type check func(t *testing.T, root string, b boot, out outcome)
	cases := []struct {
		name  string
		plant func(t *testing.T, root string)
		boots []boot
		opts  testOptions
		// errs: the boots (by name) that fail, saying this; the others
		// must not.
		errs  map[string]string
		check check
	}{
		{
			name: "immutable-files-in-leftover",
			plant: func(t *testing.T, root string) {
				d := filepath.Join(root, "slots/b.old/data/app")
				must(t, os.MkdirAll(d, 0o755))
				for _, f := range []string{"locked", "log"} {
					must(t, os.WriteFile(filepath.Join(d, f), []byte(f), 0o644))
				}
				must(t, os.WriteFile(filepath.Join(d, "other"), []byte("removable"), 0o644))
				chattr(t, "+i", filepath.Join(d, "locked"))
				chattr(t, "+a", filepath.Join(d, "log"))
			},
			boots: allBoots,
			check: func(t *testing.T, root string, b boot, out outcome) {
				if _, err := os.Lstat(filepath.Join(root, "slots/b.old")); err == nil {
					t.Errorf("%s: slots/b.old is still there", b.name)
				}
				checkQuarantined(t, root, b, out, "slots/b.old", "data/app/locked")
			},
		},
		{
			name: "immutable-leftover-folder",
			plant: func(t *testing.T, root string) {
				d := filepath.Join(root, "slots/a.new/data")
				must(t, os.MkdirAll(d, 0o755))
				must(t, os.WriteFile(filepath.Join(d, "f"), []byte("f"), 0o644))
				chattr(t, "+i", filepath.Join(root, "slots/a.new"))
			},
			// a's trial cannot stage its copy where the leftover stays:
			// that trial fails its try; the others boot.
			boots: []boot{bootNormalA, bootTrialB, {"trial-a-first", State{Slot: "a", Mode: ModeTrial, Install: "a-new", Source: "b"}}},
			errs:  map[string]string{"trial-a-first": `"slots/a.new" stays`},
			check: func(t *testing.T, root string, b boot, out outcome) {
				if !strings.Contains(out.said(), `"slots/a.new"`) {
					t.Errorf("%s: does not say it cannot remove slots/a.new:\n%s", b.name, out.said())
				}
			},
		},
		{
			// a's area holds an immutable file; a's trial replaces a's
			// area with a copy of b's: the old area cannot be removed, and
			// must not fail the trial.
			name: "immutable-file-in-replaced-area",
			plant: func(t *testing.T, root string) {
				p := filepath.Join(root, "slots/a/data/app/immutable")
				must(t, os.WriteFile(p, []byte("x"), 0o644))
				chattr(t, "+i", p)
				p = filepath.Join(root, "slots/a/data/app/append-only")
				must(t, os.WriteFile(p, []byte("x"), 0o644))
				chattr(t, "+a", p)
			},
			boots: []boot{{"trial-a-first", State{Slot: "a", Mode: ModeTrial, Install: "a-new", Source: "b"}}, bootTrialB},
			check: func(t *testing.T, root string, b boot, out outcome) {
				switch b.s.Slot {
				case "a":
					// a's new area is b's copy; the old one is set aside.
					if got, err := os.ReadFile(filepath.Join(root, "slots/a/data/app/db")); err != nil || string(got) != "version 0 data" {
						t.Errorf("%s: a's new area: %q, %v", b.name, got, err)
					}
					// The old area was exchanged with the copy, so it is
					// at slots/a.new when its removal fails.
					checkQuarantined(t, root, b, out, "slots/a.new", "data/app/immutable")
				case "b":
					// The copy of an immutable file is an ordinary file: the
					// next update can replace it.
					p := filepath.Join(root, "slots/b/data/app/immutable")
					if err := os.Remove(p); err != nil {
						t.Errorf("%s: the copy of the immutable file cannot be removed: %v", b.name, err)
					}
				}
			},
		},
		{
			name: "deep-source-area",
			plant: func(t *testing.T, root string) {
				if n := mkdeep(t, root, "slots/a/data/deep", 24, 250); n <= unix.PathMax {
					t.Fatalf("the tree's path is %d bytes, not beyond PATH_MAX", n)
				}
			},
			boots: []boot{bootNormalA, bootTrialB},
			check: func(t *testing.T, root string, b boot, out outcome) {
				if b.s.Slot == "b" {
					if got := readDeep(t, root, "slots/b/data/deep", 24, 250); got != "at the bottom\n" {
						t.Errorf("%s: the copy's deepest file: %q", b.name, got)
					}
				}
			},
		},
		{
			name: "deep-leftover",
			plant: func(t *testing.T, root string) {
				mkdeep(t, root, "slots/b.new/data", 24, 250)
			},
			boots: allBoots,
			check: func(t *testing.T, root string, b boot, out outcome) {
				if _, err := os.Lstat(filepath.Join(root, "slots/b.new")); err == nil && b.s.Slot != "b" {
					t.Errorf("%s: the deep leftover is still there", b.name)
				}
			},
		},
		{
			name: "deeper-than-the-bound",
			plant: func(t *testing.T, root string) {
				mkdeep(t, root, "slots/a/data/deep", 40, 8)
				mkdeep(t, root, "slots/b.old/data", 40, 8)
			},
			opts:  testOptions{depth: 20},
			boots: allBoots,
			errs:  map[string]string{"trial-b": "deeper than 20 folders"},
			check: func(t *testing.T, root string, b boot, out outcome) {
				if b.s.Slot == "a" {
					checkQuarantined(t, root, b, out, "slots/b.old", "")
				}
			},
		},
		{
			name: "control-characters",
			plant: func(t *testing.T, root string) {
				must(t, os.MkdirAll(filepath.Join(root, "slots", "x"+fakeLine+".new", "y"+fakeLine), 0o755))
				must(t, unix.Mknod(filepath.Join(root, "slots/a/data", "sock"+fakeLine), unix.S_IFSOCK|0o777, 0))
				must(t, os.WriteFile(filepath.Join(root, "slots/a/data", "file"+fakeLine), []byte("x"), 0o644))
				must(t, os.WriteFile(filepath.Join(root, "slots/b/install"), []byte("b000"+fakeLine), 0o644))
			},
			boots: allBoots,
			check: func(t *testing.T, root string, b boot, out outcome) {
				if b.s.Slot == "b" {
					if _, err := os.Lstat(filepath.Join(root, "slots/b/data", "file"+fakeLine)); err != nil {
						t.Errorf("%s: the file with control characters was not copied: %v", b.name, err)
					}
				}
			},
		},
		{
			name: "many-entries-leftover",
			plant: func(t *testing.T, root string) {
				many(t, filepath.Join(root, "slots/b.new/data"), 300)
			},
			opts:  testOptions{entries: 100},
			boots: []boot{bootNormalA, bootTrialA},
			check: func(t *testing.T, root string, b boot, out outcome) {
				checkQuarantined(t, root, b, out, "slots/b.new", "")
			},
		},
		{
			name: "many-entries-source-area",
			plant: func(t *testing.T, root string) {
				many(t, filepath.Join(root, "slots/a/data/many"), 300)
			},
			opts:  testOptions{entries: 100},
			boots: []boot{bootNormalA, bootTrialB},
			errs:  map[string]string{"trial-b": "more than 100 entries"},
		},
		{
			name: "many-entries-in-slots",
			plant: func(t *testing.T, root string) {
				many(t, filepath.Join(root, "slots"), 300)
			},
			opts:  testOptions{entries: 100},
			boots: allBoots,
		},
	}
	for _, c := range cases {
		for _, b := range c.boots {
			name := c.name + "/" + b.name
			t.Run(name, func(t *testing.T) {
				root := hostileDevice(t, filepath.Join(fs, strings.ReplaceAll(name, "/", "-")))
				c.plant(t, root)
				out, ok := runHostile(t, root, b, c.opts, nil)
				if !ok {
					return
				}
				checkOutcome(t, b, out, c.errs[b.name])
				if c.check != nil {
					c.check(t, root, b, out)
				}
			})
		}
	}
}

// many makes n empty files in dir.
func many(t *testing.T, dir string, n int) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	for i := range n {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), nil, 0o644))
	}
}

// TestHostileFullFileSystem: a data partition with no free block. A
// normal boot of a slot with an area uses it; a normal boot without one
// boots without it (no error); a trial's snapshot fails its try, saying
// there is no space.
func TestHostileFullFileSystem(t *testing.T) {
	for _, c := range []struct {
		name     string
		b        boot
		noArea   bool
		trialErr string
	}{
		{name: "normal-a", b: bootNormalA},
		{name: "normal-a-without-area", b: bootNormalA, noArea: true},
		{name: "trial-b", b: bootTrialB, trialErr: "not enough free space"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := hostileDevice(t, filepath.Join(hostileExt4(t, 16<<20), "dev"))
			if c.noArea {
				must(t, os.RemoveAll(filepath.Join(root, "slots/a")))
			}
			fill(t, root)
			out, ok := runHostile(t, root, c.b, testOptions{statfs: true}, nil)
			if !ok {
				return
			}
			if c.noArea {
				if out.err != nil {
					t.Errorf("the normal boot fails: %v", out.err)
				}
				if out.area != "" || !strings.Contains(out.said(), "no space") {
					t.Errorf("area %q; want none, and saying why:\n%s", out.area, out.said())
				}
				return
			}
			checkOutcome(t, c.b, out, c.trialErr)
		})
	}
}

// fill writes a file in dir until the file system is full (as root: its
// reserved blocks too).
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "shared", "fill"))
	must(t, err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for {
		if _, err := f.Write(buf[:1024]); err != nil {
			break
		}
	}
	must(t, f.Sync())
}

// TestBind: Bind mounts the slot's area on slot/ through descriptors;
// a link at slots/<slot>/data or slot/ is refused, nothing mounted.
func TestBind(t *testing.T) {
	fs := hostileExt4(t, 64<<20)
	root := hostileDevice(t, filepath.Join(fs, "dev"))
	if _, err := Prepare(root, bootNormalA.s, Options{Free: plenty}); err != nil {
		t.Fatal(err)
	}
	if err := Bind(root, "a"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, MountDir, "app/db"))
	if uerr := unix.Unmount(filepath.Join(root, MountDir), 0); uerr != nil {
		t.Errorf("unmounting the area: %v", uerr)
	}
	if err != nil || string(got) != "version 1 data" {
		t.Errorf("slot/app/db through the bind mount: %q, %v", got, err)
	}
	out := newOutside(t)
	for _, link := range []string{"slots/b/data", MountDir} {
		p := filepath.Join(root, link)
		must(t, os.Rename(p, p+".keep"))
		must(t, os.Symlink(out.dir, p))
		if err := Bind(root, "b"); err == nil {
			unix.Unmount(filepath.Join(root, MountDir), unix.MNT_DETACH)
			t.Errorf("Bind with %s a link: no error", link)
		}
		must(t, os.Remove(p))
		must(t, os.Rename(p+".keep", p))
	}
	if err := Bind(root, "../a"); err == nil {
		t.Error("Bind of slot ../a: no error")
	}
}
