package vmtests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// Issue 19, section 1: nothing on the data partition can make a slot's
// boot fail, only the data areas unavailable. The host plants what the
// OS (root in it, or an application in its area) could leave on the data
// partition, on a test root with /data (vmkit.SlotSpec.Data: stage 2
// mounts the partition and prepares the areas), and the slot boots and
// says what it ignored and set aside.

// dataMount mounts the machine's data partition on the host (a loop
// device), runs f on it and writes it back into the disk image.
func (m *machine) dataMount(f func(dir string)) {
	t := m.t
	t.Helper()
	img, writeBack := m.dataPartition()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting the data partition on the host: %v\n%s", err, out)
	}
	func() {
		defer func() {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Fatalf("umount %s: %v\n%s", dir, err, out)
			}
		}()
		f(dir)
	}()
	writeBack()
}

// forged is a console line keel's tools parse, in a file name.
const forged = "x\nKEEL-FORGED-LINE slot a reinstalled\n.new"

// plantHostile makes a's area (a file, a 1 TiB sparse file, a link to
// /dev/zero), b's old area with an application's immutable file, and what
// must not stop a boot: a FIFO as b's install file, a leftover of a power
// cut with an immutable file, a leftover whose name forges a console
// line, shared/ a link out of the partition, slot/ a FIFO.
func plantHostile(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(dir, p)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(s), 0o644))
	}
	chattr := func(p string) {
		t.Helper()
		if out, err := exec.Command("chattr", "+i", filepath.Join(dir, p)).CombinedOutput(); err != nil {
			t.Fatalf("chattr +i %s: %v\n%s", p, err, out)
		}
	}
	write("slots/a/data/app/db", "a's data\n")
	write("slots/a/install", "a-install\n")
	f, err := os.Create(filepath.Join(dir, "slots/a/data/sparse"))
	must(err)
	must(f.Truncate(1 << 40))
	must(f.Close())
	must(os.Symlink("/dev/zero", filepath.Join(dir, "slots/a/data/zero")))
	write("slots/b/data/app/db", "b's old data\n")
	write("slots/b/data/app/locked", "an application's immutable file\n")
	chattr("slots/b/data/app/locked")
	must(unix.Mkfifo(filepath.Join(dir, "slots/b/install"), 0o644))
	write("slots/a.new/data/app/locked", "immutable, in a leftover\n")
	chattr("slots/a.new/data/app/locked")
	must(os.MkdirAll(filepath.Join(dir, "slots", forged, "y"), 0o755))
	must(os.Symlink("/", filepath.Join(dir, "shared")))
	must(unix.Mkfifo(filepath.Join(dir, "slot"), 0o644))
}

// TestHostileDataPartition: a device whose data partition holds all of
// plantHostile's objects. a's first boot (normal) sets aside what it
// cannot remove or use (the immutable leftover, shared/ a link, slot/ a
// FIFO), removes the leftover with the forged name (escaped on the
// console: no forged line), boots with its area, and keel status and
// keel events in a show it. `keel try b`: b's first trial boot finds a
// FIFO as b's install (unknown install, never opened to block), copies
// a's area (the sparse file stays sparse, the link stays a link), sets
// aside b's old area (its immutable file cannot be removed) and boots b,
// which marks itself good. On the host afterwards: b's copy, and
// quarantine/ with the four objects.
func TestHostileDataPartition(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1, Data: true},
		"b": {Version: "2.0", SecurityVersion: 1, Data: true},
	})
	m.dataMount(func(dir string) { plantHostile(t, dir) })

	d := powerOnDebian(t, m.Machine, 3*bootTimeout)
	slot, version, mode, err := d.r.Booted()
	if err != nil || slot != "a" || version != "1.0" || mode != "normal" {
		t.Fatalf("booted %s %s %s, %v; want a 1.0 normal", slot, version, mode, err)
	}
	for _, re := range []string{
		`data: set "slots/a.new" aside as "quarantine/[^"]*-slots_a.new": keel could not remove it: unlink "slots/a.new/data/app/locked": operation not permitted`,
		regexp.QuoteMeta(`data: removing "slots/x\nKEEL-FORGED-LINE slot a reinstalled\n.new", left by a power cut`),
		`data: set "shared" aside as "quarantine/[^"]*-shared": "shared" is a symbolic link, not a folder`,
		`data: set "slot" aside as "quarantine/[^"]*-slot": "slot" is a FIFO, not a folder`,
		`data: slot a's area: use \(mode normal`,
		`data: data on /data, slot a's area on /data/slot`,
	} {
		d.since(regexp.MustCompile(re), 0)
	}
	if _, err := d.r.Expect("KEEL-MARKED-GOOD"); err != nil {
		t.Fatal(err)
	}
	s, err := d.r.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.Data == nil || !s.Data.Mounted || s.Data.Action != "use" || len(s.Data.SetAside) != 3 || s.Data.QuarantineCount != 3 {
		t.Errorf("keel status --json in a: data %s", s.Raw)
	}
	for _, cmd := range []struct{ args, want string }{
		{"status", `set aside: "shared" as "quarantine/`},
		{"events", `set aside: "slots/a.new" as "quarantine/`},
	} {
		rc, out, err := d.r.KeelOutput(cmd.args)
		if err != nil || rc != 0 || !strings.Contains(out, cmd.want) || !strings.Contains(out, "quarantine: /data/quarantine holds 3 entries") {
			t.Errorf("keel %s in a: rc %d, %v, want %q and the quarantine:\n%s", cmd.args, rc, err, cmd.want, out)
		}
	}
	if rc, err := d.r.Keel("try b --tries 1"); err != nil || rc != 0 {
		t.Fatalf("keel try b: %d, %v", rc, err)
	}
	if err := d.r.Reboot(); err != nil {
		t.Fatal(err)
	}
	slot, version, mode, err = d.r.Booted()
	if err != nil || slot != "b" || version != "2.0" || mode != "trial" {
		t.Fatalf("booted %s %s %s, %v; want b 2.0 trial", slot, version, mode, err)
	}
	from := d.since(reDebStage2, d.since(regexp.MustCompile(`KEEL-SLOT a`), 0))
	for _, re := range []string{
		`data: "slots/b/install" is a FIFO, not a file: the area's install is unknown`,
		`data: slot b's area: snapshot \(the first boot of this trial: a copy of slot a's area as it is now\)`,
		`data: snapshot of slot a's area to slot b: \d+ files`,
		`data: set "slots/b.new" aside as "quarantine/[^"]*-slots_b.new": keel could not remove it: unlink "slots/b.new/data/app/locked": operation not permitted`,
	} {
		d.since(regexp.MustCompile(re), from)
	}
	if _, err := d.r.Expect("KEEL-MARKED-GOOD"); err != nil {
		t.Fatal(err)
	}
	if s, err = d.r.Status(); err != nil {
		t.Fatal(err)
	}
	if s.Data == nil || !s.Data.Mounted || s.Data.Action != "snapshot" || len(s.Data.SetAside) != 1 || s.Data.QuarantineCount != 4 || len(s.Data.Ignored) != 1 {
		t.Errorf("keel status --json in b: data %s", s.Raw)
	}
	if err := d.r.PowerOff(); err != nil {
		t.Fatal(err)
	}
	// No console line was forged by the file name.
	d.log.mu.Lock()
	for _, l := range d.log.lines {
		if strings.Contains(l.line, "KEEL-FORGED-LINE") && !strings.Contains(l.line, `x\nKEEL-FORGED-LINE`) {
			t.Errorf("a forged console line: %q", l.line)
		}
	}
	d.log.mu.Unlock()

	m.dataMount(func(dir string) {
		if b, err := os.ReadFile(filepath.Join(dir, "slots/b/data/app/db")); err != nil || string(b) != "a's data\n" {
			t.Errorf("b's area: app/db %q, %v; want a copy of a's", b, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "slots/b/data/sparse"), &st); err != nil || st.Size != 1<<40 || st.Blocks > 8 {
			t.Errorf("b's copy of the 1 TiB sparse file: %d bytes, %d blocks, %v", st.Size, st.Blocks, err)
		}
		if l, err := os.Readlink(filepath.Join(dir, "slots/b/data/zero")); err != nil || l != "/dev/zero" {
			t.Errorf("b's copy of the link: %q, %v", l, err)
		}
		entries, err := os.ReadDir(filepath.Join(dir, "quarantine"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if err != nil || len(names) != 4 {
			t.Errorf("quarantine/: %q, %v; want the four objects set aside", names, err)
		}
		slots, _ := os.ReadDir(filepath.Join(dir, "slots"))
		for _, e := range slots {
			if e.Name() != "a" && e.Name() != "b" {
				t.Errorf("left in slots/: %s", strconv.Quote(e.Name()))
			}
		}
	})
}

// TestDataPartitionMissing: a disk whose GPT has no data partition (the
// OS removed it, or a broken re-partition): keel-init still finds the
// boot disk (the data partition does not identify it) and boots a; stage
// 2 says there is no data partition and the OS boots without /data;
// keel status in a says why.
func TestDataPartitionMissing(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1, Data: true},
		"b": {Empty: true},
	})
	p := diskPartition(t, m.Disk, layout.Data)
	if out, err := exec.Command("sgdisk", fmt.Sprintf("--delete=%d", p.Index), m.Disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk --delete: %v\n%s", err, out)
	}
	d := powerOnDebian(t, m.Machine, 2*bootTimeout)
	slot, _, mode, err := d.r.Booted()
	if err != nil || slot != "a" || mode != "normal" {
		t.Fatalf("booted %s %s, %v; want a normal", slot, mode, err)
	}
	d.since(regexp.MustCompile(`warning: data: the boot disk /dev/vda has no GPT partition named "data".*: the OS boots without /data`), 0)
	if _, err := d.r.Expect("KEEL-MARKED-GOOD"); err != nil {
		t.Fatal(err)
	}
	s, err := d.r.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.Data == nil || s.Data.Mounted || !strings.Contains(s.Data.Unavailable, `no GPT partition named "data"`) {
		t.Errorf("keel status --json: data %s", s.Raw)
	}
	if rc, out, err := d.r.KeelOutput("status"); err != nil || rc != 0 || !strings.Contains(out, `no /data: the boot disk /dev/vda has no GPT partition named "data"`) {
		t.Errorf("keel status: rc %d, %v:\n%s", rc, err, out)
	}
	if err := d.r.PowerOff(); err != nil {
		t.Fatal(err)
	}
}
