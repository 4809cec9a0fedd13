package vmtests

import (
	"bytes"
	"context"
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
	"time"

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

// TestDataSnapshotPowerCut: the power is cut (QEMU killed) while stage 2
// copies a's area to b's at b's first trial boot. The next power-on uses
// b's second try: stage 2 removes the half-made copy, makes it again from
// the start, and b boots with a complete copy; a's area, the source, is
// intact throughout (read from the disk image after the cut and at the
// end). The data partition is 640 MiB larger than the board's, and a's
// area holds 256 MiB in 1 MiB files, so that the copy takes long enough
// (about 8 s here) for ext4 to have committed part of it (its journal
// commits every 5 s) when the power is cut 5.5 s into it.
func TestDataSnapshotPowerCut(t *testing.T) {
	t.Parallel()
	art := *artefacts(t)
	art.Board.DiskMB += 640
	vm, err := vmkit.NewMachine(context.Background(), &art, t.TempDir(), map[string]vmkit.SlotSpec{
		"a": {Version: dataV1, SecurityVersion: 1, RootDir: dataRoot(t, dataV1, vmkit.Healthy)},
		"b": {Version: dataV2, SecurityVersion: 1, RootDir: dataRoot(t, dataV2, vmkit.Healthy)},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{t: t, Machine: vm}
	rnd := rand.NewChaCha8([32]byte{13})
	files := map[string]string{"slots/a/data/app/db.txt": "v1"}
	for i := 0; i < 256; i++ {
		b := make([]byte, 1<<20)
		rnd.Read(b)
		files[fmt.Sprintf("slots/a/data/blobs/%03d", i)] = string(b)
	}
	m.dataWrite(files)
	want := map[string]string{}
	for p, c := range files {
		want[p] = fmt.Sprintf("%x", sha256.Sum256([]byte(c)))
	}
	// intact checks that each file of a's area is as written, and that the
	// files under prefix dst (b's area) are copies of a's.
	intact := func(when, dst string) {
		t.Helper()
		img, _ := m.dataPartition()
		for p, sum := range want {
			paths := []string{p}
			if dst != "" {
				paths = append(paths, dst+strings.TrimPrefix(p, "slots/a/data/"))
			}
			for _, q := range paths {
				cmd := exec.Command("debugfs", "-R", "cat /"+q, img)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("debugfs cat /%s: %v", q, err)
				}
				if got := fmt.Sprintf("%x", sha256.Sum256(out)); got != sum {
					t.Errorf("%s: %s has sha256 %.16s, want %.16s (%d bytes)", when, q, got, sum, len(out))
				}
			}
		}
	}

	r := m.powerOn(4 * bootTimeout)
	r.booted("a", dataV1)
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 2", 0)
	r.reboot()
	r.expect("data: slot b's area: snapshot")
	r.expect("data: copying")
	time.Sleep(5500 * time.Millisecond)
	r.r.Kill()
	t.Log("power cut 5.5 s into the snapshot")
	img, _ := m.dataPartition()
	slots := debugfs(t, img, false, "ls -l /slots")
	t.Logf("the data partition's slots/ after the cut:\n%s", slots)
	halfMade := strings.Contains(slots, "b.new")
	if !halfMade {
		t.Errorf("no slots/b.new after the cut: the power was cut before ext4 committed any of the copy, or after it was complete")
	}
	intact("after the cut", "")

	r = m.powerOn(4 * bootTimeout)
	if halfMade {
		r.expect("data: removing b.new, left by a power cut")
	}
	r.expect("data: slot b's area: snapshot")
	if mode := r.booted("b", dataV2); mode != "trial" {
		t.Errorf("b booted in mode %s after the cut, want trial (its second try)", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	r.powerOff()
	intact("after the second trial boot", "slots/b/data/")
	img, _ = m.dataPartition()
	if slots := debugfs(t, img, false, "ls -l /slots"); strings.Contains(slots, ".new") || strings.Contains(slots, ".old") {
		t.Errorf("slots/ after the snapshot:\n%s", slots)
	}
}
