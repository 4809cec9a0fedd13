//go:build linux

package dataarea

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ext4Mount is an ext4 image on a loop device (direct I/O: no second
// cache in the image file's pages), mounted at dir.
type ext4Mount struct {
	dir, dev string
}

// mountExt4 makes an ext4 image of size bytes in a temporary folder
// (allocated; mkfs.ext4, inode tables and journal written now: no lazy
// initialisation in the background), attaches it to a loop device and
// mounts it; all undone at the end of tb. Root only.
func mountExt4(tb testing.TB, size int64) ext4Mount {
	tb.Helper()
	tmp := tb.TempDir()
	img := filepath.Join(tmp, "data.img")
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	// Allocated, as a partition is: the loop device's writes do not wait
	// for the image file's blocks.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		tb.Fatalf("fallocate %s: %v", img, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	run := func(name string, args ...string) string {
		tb.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
	m := ext4Mount{dir: filepath.Join(tmp, "mnt"), dev: run("losetup", "--find", "--show", "--direct-io=on", img)}
	tb.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", m.dev).CombinedOutput(); err != nil {
			tb.Errorf("losetup -d %s: %v\n%s", m.dev, err, out)
		}
	})
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	m.mount(tb)
	tb.Cleanup(func() {
		if err := unix.Unmount(m.dir, 0); err != nil {
			tb.Errorf("unmounting %s: %v", m.dir, err)
		}
	})
	return m
}

func (m ext4Mount) mount(tb testing.TB) {
	tb.Helper()
	if err := unix.Mount(m.dev, m.dir, "ext4", 0, ""); err != nil {
		tb.Fatalf("mounting %s (ext4) on %s: %v", m.dev, m.dir, err)
	}
}

// remount unmounts and mounts the file system again: nothing of it stays
// in the page cache, as at a boot.
func (m ext4Mount) remount(tb testing.TB) {
	tb.Helper()
	if err := unix.Unmount(m.dir, 0); err != nil {
		tb.Fatalf("unmounting %s: %v", m.dir, err)
	}
	m.mount(tb)
}

// benchArea writes a realistic slot area of about 256 MiB under
// root/slots/a: 4 big files (200 MiB: databases, images) and 7000 small
// ones (0 to 16 KiB, 56 MiB: configuration, caches) in 70 folders, of
// random bytes. It returns the bytes and the entries written.
func benchArea(tb testing.TB, root string) (int64, int) {
	tb.Helper()
	src := filepath.Join(root, SlotsDir, "a", AreaData)
	bytes := rand.NewChaCha8([32]byte{'k', 'e', 'e', 'l'})
	rng := rand.New(bytes)
	buf := make([]byte, 80<<20)
	var total int64
	entries := 0
	write := func(p string, n int) {
		_, _ = bytes.Read(buf[:n])
		if err := os.WriteFile(p, buf[:n], 0o644); err != nil {
			tb.Fatal(err)
		}
		total += int64(n)
		entries++
	}
	if err := os.MkdirAll(filepath.Join(src, "big"), 0o755); err != nil {
		tb.Fatal(err)
	}
	entries++
	for i, mib := range []int{80, 60, 40, 20} {
		write(filepath.Join(src, "big", fmt.Sprint("file", i)), mib<<20)
	}
	for d := range 70 {
		dir := filepath.Join(src, "small", fmt.Sprint("dir", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		entries++
		for f := range 100 {
			write(filepath.Join(dir, fmt.Sprint("f", f)), rng.IntN(16<<10+1))
		}
	}
	entries++ // small
	if err := os.WriteFile(filepath.Join(root, SlotsDir, "a", InstallFile), []byte(installA+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return total, entries
}

// canClone says whether dir's file system has reflinks (FICLONE).
func canClone(tb testing.TB, dir string) bool {
	tb.Helper()
	a, err := os.Create(filepath.Join(dir, "clone.a"))
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(a.Name())
	defer a.Close()
	if _, err := a.Write(make([]byte, 4096)); err != nil {
		tb.Fatal(err)
	}
	b, err := os.Create(filepath.Join(dir, "clone.b"))
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(b.Name())
	defer b.Close()
	return unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
}

// BenchmarkSnapshot measures Prepare's snapshot of a 256 MiB area (4 big
// files, 7000 small ones; benchArea) at a trial's first boot, with a cold
// page cache (the file system mounted again before each), from the
// free-space check to the renamed, synced copy: on an ext4 image on a
// loop device (the data partition's file system, which has no reflinks:
// the byte copy), and on the temporary folder's file system when it has
// reflinks (FICLONE; with a warm page cache, which a reflink reads
// nothing of). It reports s/GiB (the boot's wait per GiB of data)
// and MB/s. Root only (mounts).
func BenchmarkSnapshot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root: mounts an ext4 image")
	}
	run := func(b *testing.B, root string, bytes int64, files int, before func()) {
		b.SetBytes(bytes)
		for i := range b.N {
			b.StopTimer()
			for _, d := range []string{"b", "b" + newSuffix, "b" + oldSuffix} {
				if err := os.RemoveAll(filepath.Join(root, SlotsDir, d)); err != nil {
					b.Fatal(err)
				}
			}
			unix.Sync()
			before()
			var log logs
			s := State{Slot: "b", Mode: ModeTrial, Install: fmt.Sprint("b", i), Source: "a"}
			b.StartTimer()
			p, _, err := prepare(root, s, Options{Logf: log.logf})
			b.StopTimer()
			if err != nil || p.Action != Snapshot {
				b.Fatalf("Prepare: %v, %v", p.Action, err)
			}
			line := log.summary(b)
			if n, _ := strconv.Atoi(line[2]); n != files {
				b.Errorf("the snapshot copied %d files, want %d", n, files)
			}
			b.Logf("%d of %d: %s files, %s MiB in %s s (%s s/GiB)", i+1, b.N, line[2], line[3], line[4], line[5])
		}
		perOp := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(perOp/(float64(bytes)/(1<<30)), "s/GiB")
		b.ReportMetric(perOp, "s/op")
		b.ReportMetric(0, "ns/op")
	}

	m := mountExt4(b, 1<<30)
	bytes, files := benchArea(b, m.dir)
	path := "bytes"
	if canClone(b, m.dir) {
		path = "reflink"
	}
	b.Run("ext4-"+path, func(b *testing.B) { run(b, m.dir, bytes, files, func() { m.remount(b) }) })

	tmp := b.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(tmp, &st); err != nil {
		b.Fatal(err)
	}
	if !canClone(b, tmp) {
		// Printed: a benchmark with sub-benchmarks shows no log of its own.
		fmt.Printf("BenchmarkSnapshot: the temporary folder's file system (%s, magic %#x) has no reflinks (FICLONE): no reflink run\n", tmp, st.Type)
		return
	}
	bytes, files = benchArea(b, tmp)
	b.Run(fmt.Sprintf("tmp-%#x-reflink", st.Type), func(b *testing.B) {
		run(b, tmp, bytes, files, func() {}) // a reflink reads no data: the page cache is not dropped
	})
}
