//go:build linux

package image

// The compressed bundle's benchmarks (make bench-update), on the Debian +
// systemd slot root of make debian-root (build/debian-root/root, or
// $KEEL_DEBIAN_ROOT): the chunk size's trade-off between the bundle's size
// and the bytes an adaptive delta fetches, and the install throughput of a
// format-2 bundle against a format-1 one of the same root.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/update"
	"github.com/keelboot/keel/update/source"
)

// debianRoot is the slot root make debian-root made.
func debianRoot(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("KEEL_DEBIAN_ROOT")
	if dir == "" {
		dir = "../../build/debian-root/root"
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err != nil {
		tb.Fatalf("no Debian slot root at %s (%v): run make debian-root (make bench-update does)", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return abs
}

// debianTrees copies the Debian root twice, with a different 1 MiB
// application file in each (workload W1: one application file changed),
// and returns the two directories.
func debianTrees(tb testing.TB, dir string) (string, string) {
	tb.Helper()
	src := debianRoot(tb)
	var out [2]string
	for i := range out {
		out[i] = filepath.Join(dir, fmt.Sprintf("root-%d", i+1))
		if b, err := exec.Command("cp", "-a", src, out[i]).CombinedOutput(); err != nil {
			tb.Fatalf("cp -a %s: %v\n%s", src, err, b)
		}
		randomFile(tb, filepath.Join(out[i], "usr/lib/keel-bench/app.bin"), 1<<20)
	}
	return out[0], out[1]
}

// reencode writes the bundle at path again to out, in format 1 (plain) or
// format 2 with chunks of size bytes, and returns its size.
func (e *benchEnv) reencode(tb testing.TB, path, out string, plain bool, size int64) int64 {
	tb.Helper()
	bb, src := e.openBundle(tb, path)
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	root, err := bb.RootReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	kp, _ := bb.Header.Part(bundle.PartKernel)
	ip, _ := bb.Header.Part(bundle.PartInitrd)
	parts, err := bundle.ReadParts(e.ctx, bb.View(src), kp, ip)
	if err != nil {
		tb.Fatal(err)
	}
	o, err := os.Create(out)
	if err != nil {
		tb.Fatal(err)
	}
	defer o.Close()
	w := bufio.NewWriterSize(o, 1<<20)
	h, err := bundle.Write(w, bundle.Input{Manifest: bb.ManifestBytes, Sig: bb.Sig, Kernel: parts[0], Initrd: parts[1],
		Root: root, Plain: plain, ChunkSize: size}, e.key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := o.Sync(); err != nil {
		tb.Fatal(err)
	}
	return h.Size()
}

// installActive installs the bundle at path into fresh partition files
// and returns them, read-only, as the running slot.
func (e *benchEnv) installActive(tb testing.TB, path, dir string) *slotwrite.Active {
	tb.Helper()
	slotPath, rootPath := filepath.Join(dir, "active-slot.img"), filepath.Join(dir, "active-root.img")
	slot := emptyPartition(tb, slotPath, e.slotSize)
	root := emptyPartition(tb, rootPath, e.rootSize)
	src, err := source.File(path)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = update.Install(e.ctx, src, update.Options{Trusted: e.trusted, Board: e.spec.Board.Name,
		Target: slotwrite.Target{Slot: slot, SlotSize: e.slotSize, Root: root, RootSize: e.rootSize}})
	src.Close()
	slot.Close()
	root.Close()
	if err != nil {
		tb.Fatalf("installing the old version: %v", err)
	}
	as, err := os.Open(slotPath)
	if err != nil {
		tb.Fatal(err)
	}
	ar, err := os.Open(rootPath)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { as.Close(); ar.Close() })
	return &slotwrite.Active{Slot: as, SlotSize: e.slotSize, Root: ar, RootSize: e.rootSize}
}

// BenchmarkChunkSize: for each chunk size, the full bundle's size and the
// bytes an adaptive delta install (version 1 active, from a file: the
// bytes it reads are those an HTTP install fetches) of W1 (one 1 MiB
// application file changed in the Debian root) reads; format 1 for
// reference. Not timed: ns/op means nothing here.
func BenchmarkChunkSize(b *testing.B) {
	e := newBenchEnv(b)
	d1, d2 := debianTrees(b, e.dir)
	kernel := filepath.Join(e.dir, "vmlinuz")
	initrd := filepath.Join(e.dir, "stage2.cpio")
	randomFile(b, kernel, benchKernelSize)
	randomFile(b, initrd, benchInitrdSize)
	v1, v2 := filepath.Join(e.dir, "v1.bundle"), filepath.Join(e.dir, "v2.bundle")
	e.build(b, "1.0", kernel, initrd, d1, v1)
	e.build(b, "2.0", kernel, initrd, d2, v2)
	for _, d := range []string{d1, d2} {
		os.RemoveAll(d)
	}
	active := e.installActive(b, v1, e.dir)
	type row struct {
		name          string
		size, fetched int64
		encode        time.Duration
	}
	var rows []row
	for i := 0; i < b.N; i++ {
		rows = rows[:0]
		for _, cs := range []int64{0, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20} {
			name := "format 1 (plain)"
			if cs > 0 {
				name = fmt.Sprintf("%d KiB", cs>>10)
			}
			out := filepath.Join(e.dir, "v2-re.bundle")
			start := time.Now()
			size := e.reencode(b, v2, out, cs == 0, cs)
			enc := time.Since(start)
			run := e.install(b, func() (source.Source, error) { return source.File(out) }, e.dir, active, false)
			rows = append(rows, row{name, size, run.res.Fetched, enc})
			os.Remove(out)
		}
	}
	t := [][]string{{"chunks", "full bundle MB", "vs format 1", "W1 adaptive delta MB", "encode s"}}
	for _, r := range rows {
		t = append(t, []string{r.name, fmt.Sprintf("%.1f", mb(r.size)), fmt.Sprintf("%.3f", float64(r.size)/float64(rows[0].size)),
			fmt.Sprintf("%.2f", mb(r.fetched)), fmt.Sprintf("%.1f", r.encode.Seconds())})
		if r.name != rows[0].name {
			b.ReportMetric(float64(r.size), "B_full_"+r.name[:len(r.name)-4]+"K")
			b.ReportMetric(float64(r.fetched), "B_W1_"+r.name[:len(r.name)-4]+"K")
		}
	}
	summary(b, "Chunk size on the Debian slot root (W1: one 1 MiB file changed, version 1 active)\n"+table(t))
}

// BenchmarkInstallCompressed: a full install (empty target, nothing
// local) of the Debian root's bundle from a file, format 2 (the default
// chunks) against format 1; benchInstallRounds of each in turns, medians.
// ns/op is the format-2 install; install_ratio_compressed is format 1's
// time over format 2's (the throughput ratio; the goal is >= 0.9).
func BenchmarkInstallCompressed(b *testing.B) {
	e := newBenchEnv(b)
	d1, _ := debianTrees(b, e.dir)
	kernel := filepath.Join(e.dir, "vmlinuz")
	initrd := filepath.Join(e.dir, "stage2.cpio")
	randomFile(b, kernel, benchKernelSize)
	randomFile(b, initrd, benchInitrdSize)
	chunked, plain := filepath.Join(e.dir, "v1.bundle"), filepath.Join(e.dir, "v1-plain.bundle")
	e.build(b, "1.0", kernel, initrd, d1, chunked)
	os.RemoveAll(filepath.Join(e.dir, "root-2"))
	os.RemoveAll(d1)
	plainSize := e.reencode(b, chunked, plain, true, 0)
	st, err := os.Stat(chunked)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var pt, ct []time.Duration
	for i := 0; i < b.N; i++ {
		p, c := installTimes(b, e, chunked, plain)
		pt, ct = append(pt, p...), append(ct, c...)
	}
	b.ReportMetric(float64(median(ct).Nanoseconds()), "ns/op")
	ratio := median(pt).Seconds() / median(ct).Seconds()
	b.ReportMetric(ratio, "install_ratio_compressed")
	summary(b, fmt.Sprintf("Full install from a file of the Debian root's bundle (nothing local), medians of %d:\n"+
		"  format 1: %.1f MB in %.2fs (%s)\n  format 2: %.1f MB in %.2fs (%s)\n  install_ratio_compressed = %.3f\n",
		len(pt), mb(plainSize), median(pt).Seconds(), durations(pt), mb(st.Size()), median(ct).Seconds(), durations(ct), ratio))
}

// installTimes installs (from a file, nothing local, the file's cache
// dropped) the bundles plain and chunked benchInstallRounds times each, in
// turns, and returns their times.
func installTimes(tb testing.TB, e *benchEnv, chunked, plain string) (pt, ct []time.Duration) {
	tb.Helper()
	for r := 0; r < benchInstallRounds; r++ {
		for k := 0; k < 2; k++ {
			path := []string{chunked, plain}[(k+r)%2]
			coldFile(tb, path)
			run := e.install(tb, func() (source.Source, error) { return source.File(path) }, e.dir, nil, true)
			if path == chunked {
				ct = append(ct, run.took)
			} else {
				pt = append(pt, run.took)
			}
		}
	}
	return pt, ct
}

// installRatio is the install throughput of the format-2 bundle chunked
// over that of the format-1 bundle plain of the same slot (format 1's
// median time over format 2's).
func installRatio(tb testing.TB, e *benchEnv, chunked, plain string) float64 {
	tb.Helper()
	pt, ct := installTimes(tb, e, chunked, plain)
	return median(pt).Seconds() / median(ct).Seconds()
}
