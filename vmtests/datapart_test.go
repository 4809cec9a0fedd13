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
	"testing"

	"github.com/keelboot/keel/format/layout"
)

// Issue 13: data that rolls back with the slot (package
// initramfs/dataarea). The scenarios run on the Debian slots
// (debian_test.go); the host plays its part between power-ons with these
// helpers: it reads and writes the areas on the disk image's data
// partition with debugfs (e2fsprogs).

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
