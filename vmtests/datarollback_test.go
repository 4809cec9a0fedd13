package vmtests

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// Issue 13: data that rolls back with the slot (package
// initramfs/dataarea). The slots' roots are the test roots with a /data
// folder, so that stage 2 mounts the data partition there with the booted
// slot's area on /data/slot. The test init's `data put/get` write the
// partition's root, not a slot's area, so the host plays the OS's part
// between power-ons: it reads and writes the areas on the disk image's
// data partition with debugfs (e2fsprogs).

// dataRootMu serializes dataRoot: Artefacts.RootDir makes a root once,
// and a second caller must not copy it half made. The versions of this
// file (dataV1, dataV2) are its own, so no other test makes their roots.
var dataRootMu sync.Mutex

const dataV1, dataV2 = "1.0-data", "2.0-data"

// dataRoot is the test root of version and health with a /data folder.
func dataRoot(t *testing.T, version string, h vmkit.Health) string {
	t.Helper()
	dataRootMu.Lock()
	defer dataRootMu.Unlock()
	src, err := artefacts(t).RootDir(version, h)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "root-"+version)
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dataPartition copies the machine's data partition to a file, checked
// (e2fsck), and returns it with a function that writes it back into the
// disk image.
func (m *machine) dataPartition() (string, func()) {
	t := m.t
	t.Helper()
	p := diskPartition(t, m.Disk, layout.Data)
	img := filepath.Join(t.TempDir(), "data.ext4")
	if err := os.WriteFile(img, readPartition(t, m.Disk, layout.Data), 0o644); err != nil {
		t.Fatal(err)
	}
	// The guest powers off with the partition mounted: replay its
	// journal first, or the next mount would replay it over what debugfs
	// writes. e2fsck exits 1 or 2 when it corrected something.
	fsck := exec.Command("e2fsck", "-fy", img)
	if out, err := fsck.CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 2 {
			t.Fatalf("e2fsck of the data partition: %v\n%s", err, out)
		}
	}
	return img, func() {
		t.Helper()
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(m.Disk, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, p.Offset()); err != nil {
			t.Fatal(err)
		}
	}
}

func debugfs(t *testing.T, img string, write bool, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "-"}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.Command("debugfs", append(args, img)...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs %v: %v\n%s", cmds, err, errb.String())
	}
	return out.String()
}

// dataWrite writes files (path on the data partition -> content) into the
// machine's data partition, making their folders.
func (m *machine) dataWrite(files map[string]string) {
	t := m.t
	t.Helper()
	img, writeBack := m.dataPartition()
	var cmds []string
	for p, content := range files {
		src := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			cmds = append(cmds, "mkdir /"+strings.Join(parts[:i], "/"))
		}
		cmds = append(cmds, "rm /"+p, "write "+src+" /"+p)
	}
	debugfs(t, img, true, cmds...)
	writeBack()
}

// dataRead reads a file of the machine's data partition ("<none>" when
// it is not there).
func (m *machine) dataRead(p string) string {
	t := m.t
	t.Helper()
	img, _ := m.dataPartition()
	cmd := exec.Command("debugfs", "-R", "cat /"+p, img)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs cat /%s: %v\n%s", p, err, errb.String())
	}
	if strings.Contains(errb.String(), "File not found") {
		return "<none>"
	}
	return out.String()
}

// TestDataRollback: slot a's area holds version 1's data; b's trial
// starts from a copy of it and is committed; version 2 changes its copy;
// `keel rollback` returns to a, whose area is as it was, and b's keeps
// version 2's change.
func TestDataRollback(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: dataV1, SecurityVersion: 1, RootDir: dataRoot(t, dataV1, vmkit.Healthy)},
		"b": {Version: dataV2, SecurityVersion: 1, RootDir: dataRoot(t, dataV2, vmkit.Healthy)},
	})
	m.dataWrite(map[string]string{"slots/a/data/app/db.txt": "v1", "shared/log.txt": "shared"})

	r := m.powerOn(3 * bootTimeout)
	r.expect("data: slot a's area: use")
	r.booted("a", dataV1)
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 2", 0)
	r.reboot()
	r.expect("data: slot b's area: snapshot")
	if mode := r.booted("b", dataV2); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	r.powerOff()
	if got := m.dataRead("slots/b/data/app/db.txt"); got != "v1" {
		t.Errorf("b's area after its trial: %q, want a copy of a's (v1)", got)
	}
	if got := m.dataRead("slots/b/install"); len(strings.TrimSpace(got)) != 64 {
		t.Errorf("b's area belongs to %q, want b's root hash", got)
	}

	// Version 2 migrates its data.
	m.dataWrite(map[string]string{"slots/b/data/app/db.txt": "v2"})
	r = m.powerOn(3 * bootTimeout)
	r.expect("data: slot b's area: use")
	if mode := r.booted("b", dataV2); mode != "normal" {
		t.Errorf("b booted in mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	r.keel("rollback", 0)
	r.reboot()
	r.expect("data: slot a's area: use")
	if mode := r.booted("a", dataV1); mode != "normal" {
		t.Errorf("a booted in mode %s after the rollback, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	r.powerOff()
	for p, want := range map[string]string{
		"slots/a/data/app/db.txt": "v1", "slots/b/data/app/db.txt": "v2", "shared/log.txt": "shared",
	} {
		if got := m.dataRead(p); got != want {
			t.Errorf("%s after the rollback: %q, want %q", p, got, want)
		}
	}
}

// TestDataFallback: b's trial fails its health check; the fallback boots
// a with its area as it was before the update.
func TestDataFallback(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: dataV1, SecurityVersion: 1, RootDir: dataRoot(t, dataV1, vmkit.Healthy)},
		"b": {Version: dataV2, SecurityVersion: 1, RootDir: dataRoot(t, dataV2, vmkit.HealthFail)},
	})
	m.dataWrite(map[string]string{"slots/a/data/app/db.txt": "v1", "slots/a/data/app/conf/x": "x1"})
	r := m.powerOn(4 * bootTimeout)
	r.booted("a", dataV1)
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 1", 0)
	r.reboot()
	r.expect("data: slot b's area: snapshot")
	if mode := r.booted("b", dataV2); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("data: slot a's area: use")
	if mode := r.booted("a", dataV1); mode != "fallback" {
		t.Errorf("a came back in mode %s, want fallback", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	r.powerOff()
	for p, want := range map[string]string{
		"slots/a/data/app/db.txt": "v1", "slots/a/data/app/conf/x": "x1", "slots/b/data/app/db.txt": "v1",
	} {
		if got := m.dataRead(p); got != want {
			t.Errorf("%s after the fallback: %q, want %q", p, got, want)
		}
	}
}

// bigArea is what a's area holds for the power-cut test: 256 MiB in
// 1 MiB files of random bytes and a small one, by path on the data
// partition, and the sha256 of each.
func bigArea() (files, sums map[string]string) {
	rnd := rand.NewChaCha8([32]byte{13})
	files = map[string]string{"slots/a/data/app/db.txt": "v1"}
	for i := 0; i < 256; i++ {
		b := make([]byte, 1<<20)
		rnd.Read(b)
		files[fmt.Sprintf("slots/a/data/blobs/%03d", i)] = string(b)
	}
	sums = map[string]string{}
	for p, c := range files {
		sums[p] = fmt.Sprintf("%x", sha256.Sum256([]byte(c)))
	}
	return files, sums
}

// checkArea checks that each file of sums (path on the data partition ->
// sha256) is intact on the machine's data partition, and, with dst (a
// slot's area, "slots/b/data/"), that dst has a copy of each file of a's.
func (m *machine) checkArea(when string, sums map[string]string, dst string) {
	t := m.t
	t.Helper()
	img, _ := m.dataPartition()
	for p, sum := range sums {
		paths := []string{p}
		if dst != "" {
			paths = append(paths, dst+strings.TrimPrefix(p, "slots/a/data/"))
		}
		for _, q := range paths {
			out, err := exec.Command("debugfs", "-R", "cat /"+q, img).Output()
			if err != nil {
				t.Fatalf("debugfs cat /%s: %v", q, err)
			}
			if got := fmt.Sprintf("%x", sha256.Sum256(out)); got != sum {
				t.Errorf("%s: %s has sha256 %.16s, want %.16s (%d bytes)", when, q, got, sum, len(out))
			}
		}
	}
}

// slotsDir lists slots/ on the machine's data partition (debugfs ls -l).
func (m *machine) slotsDir() string {
	m.t.Helper()
	img, _ := m.dataPartition()
	return debugfs(m.t, img, false, "ls -l /slots")
}
