//go:build linux

package dataarea

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	return deviceAt(t, t.TempDir())
}

// deviceAt makes device's layout in the folder root.
func deviceAt(t *testing.T, root string) string {
	t.Helper()
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
	// A file with two links, a FIFO.
	w("slots/a/data/app/shared.conf", "linked", 0o644)
	if err := os.Link(filepath.Join(root, "slots/a/data/app/shared.conf"), filepath.Join(root, "slots/a/data/app/sub/shared.conf")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "slots/a/data/fifo"), 0o620); err != nil {
		t.Fatal(err)
	}
	w("slots/b/install", installBOld+"\n", 0o644)
	w("slots/b/data/app/db", "version 0 data", 0o600)
	w("shared/log", "shared", 0o644)
	// Fixed times: every device() is the same, and a copy must keep them.
	fixTimes(t, filepath.Join(root, SlotsDir))
	for i, p := range []string{"slots/a/data/app/db", "slots/a/data/app/sub/deep.txt", "slots/a/data/empty", "slots/b/data/app/db", "slots/a/install", "slots/b/install"} {
		ts := time.Date(2020, 1, 2, 3, 4, i, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(root, p), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fixTimes sets the times of every entry under dir (links themselves
// included) to the same fixed time.
func fixTimes(t *testing.T, dir string) {
	t.Helper()
	ts := unix.NsecToTimespec(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tree describes every entry under dir: type, mode, owner, content, link
// target or device number, modification time (but dir's own and an
// install file's), extended attributes, and for a file with several links
// its link count and the first of its names in dir.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	first := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%s %d:%d", fi.Mode(), st.Uid, st.Gid)
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
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		case fi.Mode()&fs.ModeDevice != 0:
			v += fmt.Sprintf(" dev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if rel != "." && d.Name() != InstallFile {
			v += fmt.Sprint(" mtime ", fi.ModTime().UnixNano())
		}
		names, err := listXattrs(p)
		if err != nil {
			return err
		}
		slices.Sort(names)
		for _, n := range names {
			b, err := getXattr(p, n, nil)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %s=%q", n, b)
		}
		if !fi.IsDir() && st.Nlink > 1 {
			if _, ok := first[st.Ino]; !ok {
				first[st.Ino] = rel
			}
			v += fmt.Sprintf(" links %d, first %s", st.Nlink, first[st.Ino])
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

// prepare is Prepare as the tests before issue 19 call it: the plan, the
// area, the error.
func prepare(root string, s State, o Options) (Plan, string, error) {
	r, err := Prepare(root, s, o)
	return r.Plan, r.Area, err
}

func trialB() State {
	return State{Slot: "b", Mode: ModeTrial, Install: installBNew, Source: "a"}
}

func plenty(string) (uint64, error) { return 1 << 40, nil }

// snapshotLine matches the summary a snapshot prints, which VM tests
// parse.
var snapshotLine = regexp.MustCompile(`^data: snapshot of slot (\w+)'s area to slot (\w+): (\d+) files, (\d+\.\d) MiB in (\d+\.\d\d) s \((\d+\.\d\d) s/GiB\)$`)

// logs collects the lines Prepare prints.
type logs []string

func (l *logs) logf(format string, args ...any) { *l = append(*l, fmt.Sprintf(format, args...)) }

// summary returns the fields of the one snapshot summary in l: source and
// target slots, files, MiB, seconds, seconds per GiB.
func (l logs) summary(t testing.TB) []string {
	t.Helper()
	var found []string
	for _, s := range l {
		if m := snapshotLine.FindStringSubmatch(s); m != nil {
			if found != nil {
				t.Fatalf("two snapshot summaries:\n%s", strings.Join(l, "\n"))
			}
			found = m[1:]
		} else if strings.HasPrefix(s, "data: snapshot") {
			t.Errorf("a summary not in the form VM tests parse: %q", s)
		}
	}
	if found == nil {
		t.Fatalf("no snapshot summary in:\n%s", strings.Join(l, "\n"))
	}
	return found
}

func TestSnapshotOnFirstTrialBoot(t *testing.T) {
	root := device(t)
	srcBefore := tree(t, filepath.Join(root, "slots/a"))
	var log logs
	p, area, err := prepare(root, trialB(), Options{Free: plenty, Logf: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	if p.Action != Snapshot || p.Source != "a" || area != filepath.Join(root, "slots/b/data") {
		t.Fatalf("plan %+v, area %s", p, area)
	}
	if got := tree(t, filepath.Join(root, "slots/a")); !equal(got, srcBefore) {
		t.Errorf("the source changed:\n%v\nwant\n%v", got, srcBefore)
	}
	want := tree(t, filepath.Join(root, "slots/a/data"))
	if got := tree(t, area); !equal(got, want) {
		t.Errorf("the trial's area is not a copy:\n%v\nwant\n%v", got, want)
	}
	// Every entry but the area's folder; the data of app/db, deep.txt,
	// shared.conf (once).
	if sum, files := log.summary(t), fmt.Sprint(len(want)-1); sum[0] != "a" || sum[1] != "b" || sum[2] != files || sum[3] != "0.0" {
		t.Errorf("summary %q, want slot a to b, %s files, 0.0 MiB", sum, files)
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
	p, _, err = prepare(root, trialB(), Options{Free: plenty})
	if err != nil || p.Action != Use {
		t.Fatalf("second trial boot: %+v, %v", p, err)
	}
	if b, _ := os.ReadFile(filepath.Join(area, "app/db")); string(b) != "version 2 data" {
		t.Errorf("the trial's data after its second boot: %q", b)
	}

	// The trial fails: the fallback boots a with its area as it was.
	p, areaA, err := prepare(root, State{Slot: "a", Mode: "fallback", Install: installA, Source: "b"}, Options{Free: plenty})
	if err != nil || p.Action != Use || areaA != filepath.Join(root, "slots/a/data") {
		t.Fatalf("fallback: %+v %s, %v", p, areaA, err)
	}
	if got := tree(t, filepath.Join(root, "slots/a")); !equal(got, srcBefore) {
		t.Errorf("slot a's area after the fallback:\n%v\nwant\n%v", got, srcBefore)
	}
}

func TestCreateEmptyArea(t *testing.T) {
	root := t.TempDir()
	p, area, err := prepare(root, State{Slot: "a", Mode: "normal", Install: installA, Source: "b"}, Options{})
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
	_, _, err := prepare(root, trialB(), Options{Free: small})
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
	if _, _, err := prepare(device(t), trialB(), Options{Free: plenty, Cut: func() error { steps++; return nil }}); err != nil {
		t.Fatal(err)
	}
	if steps < 5 {
		t.Fatalf("only %d steps", steps)
	}
	ref := device(t)
	srcBefore := tree(t, filepath.Join(ref, "slots/a"))
	oldB := tree(t, filepath.Join(ref, "slots/b"))
	if _, _, err := prepare(ref, trialB(), Options{Free: plenty}); err != nil {
		t.Fatal(err)
	}
	newB := tree(t, filepath.Join(ref, "slots/b"))
	for k := range steps {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			root := device(t)
			n := 0
			_, _, err := prepare(root, trialB(), Options{Free: plenty, Cut: func() error {
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
			p, _, err := prepare(root, trialB(), Options{Free: plenty})
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
	if _, _, err := prepare(root, trialB(), Options{Free: plenty, Progress: func() { n++ }}); err != nil {
		t.Fatal(err)
	}
	if want := len(tree(t, filepath.Join(root, "slots/a/data"))); n < want {
		t.Errorf("%d progress calls for %d entries", n, want)
	}
	// A later boot copies nothing: it reads slots/ (a, b), petting the
	// watchdog for each.
	n = 0
	if _, _, err := prepare(root, trialB(), Options{Free: plenty, Progress: func() { n++ }}); err != nil || n > 2 {
		t.Errorf("a later boot: %d progress calls, %v", n, err)
	}
}

// TestPrepareRefusesLinks: a symbolic link planted by the OS where keel
// expects a folder (the slots folder, a slot, its area, the mount point)
// is never followed: nothing is read through it, it is reported, and the
// trial still gets its area (issue 19: a link is "not an area", or set
// aside, never an error).
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
			var log logs
			_, area, err := prepare(root, State{Slot: "b", Source: "a", Mode: ModeTrial, Install: "i2"}, Options{Free: plenty, Logf: log.logf})
			if err != nil || area == "" {
				t.Fatalf("Prepare with %s a link: %q, %v", link, area, err)
			}
			if !slices.ContainsFunc(log, func(l string) bool { return strings.Contains(l, fmt.Sprintf("%q is a symbolic link", link)) }) {
				t.Errorf("the link %s is not reported:\n%s", link, strings.Join(log, "\n"))
			}
			if _, err := os.Stat(filepath.Join(root, SlotsDir, "b", AreaData, "secret")); err == nil {
				t.Error("copied through the link")
			}
			if entries, err := os.ReadDir(outside); err != nil || len(entries) != 1 {
				t.Errorf("the folder the link points to changed: %v, %v", entries, err)
			}
		})
	}
}

// TestSnapshotLinksAndHoles: a file with three links in the area is
// copied once and linked twice (the free-space check and the summary
// count it once), and a sparse file's holes stay holes.
func TestSnapshotLinksAndHoles(t *testing.T) {
	root := device(t)
	src := filepath.Join(root, "slots/a/data")
	big := strings.Repeat("0123456789abcdef", 4<<20/16) // 4 MiB
	names := []string{"big", "app/big.1", "app/sub/big.2"}
	if err := os.WriteFile(filepath.Join(src, names[0]), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		if err := os.Link(filepath.Join(src, names[0]), filepath.Join(src, n)); err != nil {
			t.Fatal(err)
		}
	}
	// 64 MiB, of which 8 KiB at 1 MiB and 4 KiB at 32 MiB are data.
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off int64
		n   int
	}{{1 << 20, 8192}, {32 << 20, 4096}} {
		if _, err := f.WriteAt([]byte(strings.Repeat("s", c.n)), c.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, filepath.Join(src, "sparse")); a >= 1<<20 {
		t.Fatalf("the temp file system made no holes (%d bytes allocated)", a)
	}
	fixTimes(t, src)

	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	need, err := size(fd, "", newWalk(Options{}.withDefaults(), "slots/a/data"), newLinkTable(), 0)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	// 4 MiB once, the sparse file's 12 KiB, a block an entry.
	if entries := len(tree(t, src)); need < 4<<20+12<<10 || need > 4<<20+12<<10+uint64(entries+8)*4096 {
		t.Errorf("size = %d for 4 MiB + 12 KiB of data in %d entries", need, entries)
	}
	srcBefore := tree(t, src)
	// Room for the copy only if the linked file counts once and the
	// sparse file's holes not at all.
	enough := func(string) (uint64, error) { return Reserve + 5<<20, nil }
	var log logs
	_, area, err := prepare(root, trialB(), Options{Free: enough, Logf: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(t, src); !equal(got, srcBefore) {
		t.Errorf("the source changed:\n%v\nwant\n%v", got, srcBefore)
	}
	if got := tree(t, area); !equal(got, srcBefore) {
		t.Errorf("the copy:\n%v\nwant\n%v", got, srcBefore)
	}
	var ino uint64
	for i, n := range names {
		var st, sst unix.Stat_t
		if err := unix.Lstat(filepath.Join(area, n), &st); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(filepath.Join(src, n), &sst); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			ino = st.Ino
		}
		if st.Ino != ino || st.Nlink != 3 || st.Ino == sst.Ino || sst.Nlink != 3 {
			t.Errorf("%s: copy inode %d with %d links (first %d), source inode %d with %d links", n, st.Ino, st.Nlink, ino, sst.Ino, sst.Nlink)
		}
	}
	if a := allocated(t, filepath.Join(area, "sparse")); a >= 1<<20 {
		t.Errorf("the copy of the sparse file has %d bytes allocated: holes filled", a)
	}
	// The data once: 4 MiB and 12 KiB, and a few bytes.
	if sum := log.summary(t); sum[3] != "4.0" {
		t.Errorf("summary %q: want 4.0 MiB", sum)
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// needRoot fails a test that needs root (owners, trusted.* and security.*
// attributes, device nodes, mounts) when not root, except under -short
// (make unit), where it is skipped.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if testing.Short() {
		t.Skip("needs root (runs in make test)")
	}
	t.Fatal("needs root: owners, trusted.* and security.* extended attributes, device nodes, mounts")
}

// xattrDir is a folder on a file system with user extended attributes:
// a temporary folder, or, when its file system has none, an ext4 image
// mounted (as root) for the test.
func xattrDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := unix.Lsetxattr(probe, "user.keel.probe", []byte("1"), 0)
	if err == nil {
		return dir
	}
	t.Logf("%s has no user extended attributes (%v): an ext4 image", dir, err)
	needRoot(t)
	return mountExt4(t, 64<<20).dir
}

// The extended attributes of the test: a file capability
// (cap_net_bind_service, effective; VFS_CAP_REVISION_2), an access ACL
// (user::rw- user:1000:r-- group::r-- mask::r-- other::---) and a
// default ACL (user::rwx user:1000:rwx group::r-x mask::rwx other::r-x),
// in the kernel's format (posix_acl_xattr: version 2, then tag, perm, id).
var (
	capNetBind = []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
)

func acl(entries ...[3]uint32) []byte {
	b := []byte{2, 0, 0, 0}
	for _, e := range entries {
		b = append(b, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8), byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	return b
}

const (
	aclUserObj, aclUser, aclGroupObj, aclMask, aclOther = 0x01, 0x02, 0x04, 0x10, 0x20
	aclNoID                                             = 0xffffffff
)

// TestSnapshotXattrs: the copy keeps extended attributes of every
// namespace (user.*, trusted.*, security.capability, ACLs; on a symbolic
// link too), owners and set-ID bits, device nodes and FIFOs (hard-linked
// too), and leaves sockets out; an ACL inherited from a default ACL in
// the copy is not added. The source does not change.
func TestSnapshotXattrs(t *testing.T) {
	needRoot(t)
	root := xattrDir(t)
	src := filepath.Join(root, "slots/a/data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file := func(rel string, mode uint32, uid, gid int, xattrs map[string][]byte) {
		t.Helper()
		p := filepath.Join(src, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte("content of "+rel), 0o600))
		must(os.Chown(p, uid, gid))
		must(unix.Chmod(p, mode))
		for n, v := range xattrs {
			must(unix.Lsetxattr(p, n, v, 0))
		}
	}
	file("bin/server", 0o4755, 1234, 5678, map[string][]byte{
		"user.note":           []byte("hello"),
		"trusted.keel":        []byte{0, 1, 2},
		"security.capability": capNetBind,
	})
	accessACL := acl([3]uint32{aclUserObj, 6, aclNoID}, [3]uint32{aclUser, 4, 1000}, [3]uint32{aclGroupObj, 4, aclNoID}, [3]uint32{aclMask, 4, aclNoID}, [3]uint32{aclOther, 0, aclNoID})
	file("acl/file", 0o640, 1000, 1000, map[string][]byte{"system.posix_acl_access": accessACL})
	// A folder with a default ACL, set after its entry was made: the entry
	// has no ACL, and its copy must have none either.
	file("inherit/old", 0o644, 0, 0, nil)
	defaultACL := acl([3]uint32{aclUserObj, 7, aclNoID}, [3]uint32{aclUser, 7, 1000}, [3]uint32{aclGroupObj, 5, aclNoID}, [3]uint32{aclMask, 7, aclNoID}, [3]uint32{aclOther, 5, aclNoID})
	must(unix.Lsetxattr(filepath.Join(src, "inherit"), "system.posix_acl_default", defaultACL, 0))
	must(unix.Lsetxattr(filepath.Join(src, "inherit"), "user.dir", []byte("folder"), 0))
	must(os.Mkdir(filepath.Join(src, "tmp"), 0o755))
	must(unix.Chmod(filepath.Join(src, "tmp"), 0o1777))
	must(os.Symlink("../bin/server", filepath.Join(src, "acl/link")))
	must(unix.Lchown(filepath.Join(src, "acl/link"), 1000, 1000))
	must(unix.Lsetxattr(filepath.Join(src, "acl/link"), "trusted.overlay.redirect", []byte("/x"), 0))
	// Devices: an overlayfs whiteout (0:0) and a block device; a FIFO
	// with two links; a socket with two links (left out).
	must(unix.Mknod(filepath.Join(src, "whiteout"), unix.S_IFCHR|0o600, 0))
	must(unix.Lsetxattr(filepath.Join(src, "whiteout"), "trusted.overlay.whiteout", nil, 0))
	must(unix.Mknod(filepath.Join(src, "blk"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))))
	must(unix.Chown(filepath.Join(src, "blk"), 0, 6))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	must(os.Link(filepath.Join(src, "fifo"), filepath.Join(src, "tmp/fifo")))
	must(unix.Mknod(filepath.Join(src, "sock"), unix.S_IFSOCK|0o777, 0))
	must(os.Link(filepath.Join(src, "sock"), filepath.Join(src, "tmp/sock")))
	must(os.WriteFile(filepath.Join(root, "slots/a/install"), []byte(installA+"\n"), 0o644))
	fixTimes(t, src)
	// A default ACL on slots/: the copy's folders inherit it, and the
	// copy must not keep what its source has not.
	must(unix.Lsetxattr(filepath.Join(root, SlotsDir), "system.posix_acl_default", defaultACL, 0))
	srcBefore := tree(t, src)
	// The test sets what it means to: setting the ACL set the mode's
	// group bits; the capability outlived the owner change.
	for rel, want := range map[string]string{
		"bin/server": "security.capability=",
		"acl/file":   "-rw-r----- 1000:1000",
		"acl/link":   "trusted.overlay.redirect=",
		"inherit":    "system.posix_acl_default=",
	} {
		if !strings.Contains(srcBefore[rel], want) {
			t.Fatalf("source %s: %s, want %s", rel, srcBefore[rel], want)
		}
	}

	var log logs
	if _, _, err := prepare(root, trialB(), Options{Free: plenty, Logf: log.logf}); err != nil {
		t.Fatal(err)
	}
	area := filepath.Join(root, "slots/b/data")
	if got := tree(t, src); !equal(got, srcBefore) {
		t.Errorf("the source changed:\n%v\nwant\n%v", got, srcBefore)
	}
	want := maps.Clone(srcBefore)
	delete(want, "sock")
	delete(want, "tmp/sock")
	if got := tree(t, area); !equal(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s:\n got %s\nwant %s", k, got[k], want[k])
			}
		}
		t.Errorf("the copy differs: %d entries, want %d", len(got), len(want))
	}
	for rel, n := range map[string]string{"bin/server": "security.capability", "acl/file": "system.posix_acl_access", "inherit": "system.posix_acl_default"} {
		a, err := getXattr(filepath.Join(src, rel), n, nil)
		must(err)
		b, err := getXattr(filepath.Join(area, rel), n, nil)
		if err != nil || string(a) != string(b) {
			t.Errorf("%s of %s: %x, %v; want %x", n, rel, b, err, a)
		}
	}
	if !slices.ContainsFunc(log, func(l string) bool { return strings.Contains(l, `sock": a socket`) }) {
		t.Errorf("the socket left out is not logged:\n%s", strings.Join(log, "\n"))
	}
	// Files: bin bin/server acl acl/file acl/link inherit inherit/old tmp
	// tmp/fifo whiteout blk fifo.
	if sum := log.summary(t); sum[2] != "12" {
		t.Errorf("summary %q: want 12 files", sum)
	}
}

// TestXattrNotSupported: an attribute the copy's file system cannot
// store fails the copy with an error naming it and the files.
func TestXattrNotSupported(t *testing.T) {
	needRoot(t)
	from := filepath.Join(xattrDir(t), "file")
	if err := os.WriteFile(from, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(from, "user.note", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	ramfs := t.TempDir()
	if err := unix.Mount("ramfs", ramfs, "ramfs", 0, ""); err != nil {
		t.Fatalf("mounting a ramfs (no extended attributes): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(ramfs, 0); err != nil {
			t.Error(err)
		}
	})
	to := filepath.Join(ramfs, "file")
	if err := os.WriteFile(to, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := copyXattrs(from, to)
	if !errors.Is(err, unix.ENOTSUP) {
		t.Fatalf("copyXattrs to ramfs: %v, want ENOTSUP", err)
	}
	for _, s := range []string{"user.note", from, to, "does not support"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}
