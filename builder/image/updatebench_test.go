//go:build linux

package image

// The update benchmarks (make bench-update): package update's installer
// against dd on a root file system of benchRootMiB, and the bytes a delta
// install fetches over HTTP. Both build their bundles with BuildBundle
// from generated root directories (random content, so nothing compresses
// or deduplicates by accident); generating and building are not timed.
// Each iteration is expensive: run them with -benchtime=1x.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/update"
	"github.com/keelboot/keel/update/source"
)

const (
	// benchRootMiB is the content of the generated root directories.
	benchRootMiB = 256
	// benchRootPartMB is the size of the root partitions of benchBoard:
	// the erofs image of benchRootMiB, its tree and room to spare.
	benchRootPartMB = 320
	// The slot's kernel and initrd: about a distribution kernel's size
	// and a small stage-2 initrd.
	benchKernelSize = 8<<20 + 4321
	benchInitrdSize = 2<<20 + 123
)

// benchBoard is qemu-x86_64-uefi with root partitions large enough for
// a benchRootMiB root.
func benchBoard(tb testing.TB) boards.Board {
	tb.Helper()
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		tb.Fatal(err)
	}
	b.Layout = slices.Clone(b.Layout)
	for i, p := range b.Layout {
		for _, s := range b.Slots {
			if p.Name == layout.RootPartition(s) {
				b.DiskMB += benchRootPartMB - p.SizeMB
				b.Layout[i].SizeMB = benchRootPartMB
			}
		}
	}
	return b
}

// benchFile is a file of a generated root tree.
type benchFile struct {
	rel  string
	size int
}

// benchLayout is a fixed tree of about total bytes in many files, mostly
// small (half of them 1-16 KiB, 40% 16-128 KiB, 10% 128 KiB-2 MiB),
// sorted by path.
func benchLayout(total int64) []benchFile {
	r := rand.New(rand.NewPCG(1, 2))
	var files []benchFile
	var sum int64
	for i := 0; sum < total; i++ {
		var size int
		switch x := r.IntN(10); {
		case x < 5:
			size = 1<<10 + r.IntN(15<<10)
		case x < 9:
			size = 16<<10 + r.IntN(112<<10)
		default:
			size = 128<<10 + r.IntN(1920<<10)
		}
		size = int(min(int64(size), total-sum))
		files = append(files, benchFile{rel: fmt.Sprintf("usr/lib/d%02d/f%05d", i%64, i), size: size})
		sum += int64(size)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files
}

// writeBenchTree writes the files of the layout into dir with random
// content drawn from seed, plus a few system files naming version.
func writeBenchTree(tb testing.TB, dir string, files []benchFile, seed byte, version string) {
	tb.Helper()
	var key [32]byte
	key[0] = seed
	c := rand.NewChaCha8(key)
	buf := make([]byte, 2<<20)
	for _, f := range files {
		b := buf[:f.size]
		_, _ = c.Read(b)
		writeFile(tb, filepath.Join(dir, f.rel), b)
	}
	writeFile(tb, filepath.Join(dir, "etc/os-release"), []byte("ID=keel-bench\nVERSION_ID="+version+"\n"))
	if err := os.Symlink("usr/bin", filepath.Join(dir, "bin")); err != nil {
		tb.Fatal(err)
	}
}

// copyTree copies the tree src (regular files, directories, symlinks) to
// dst, in lexical order.
func copyTree(tb testing.TB, src, dst string) {
	tb.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		tb.Fatalf("copying %s: %v", src, err)
	}
}

// benchEnv builds bundles of slot a of benchBoard and installs them.
type benchEnv struct {
	ctx                context.Context
	dir                string
	spec               Spec
	key                manifest.PrivateKey
	trusted            []manifest.PublicKey
	slotSize, rootSize int64
}

func newBenchEnv(tb testing.TB) *benchEnv {
	tb.Helper()
	for _, t := range []string{"mkfs.erofs", "dd", "zstd"} {
		tool(tb, t)
	}
	dir := tb.TempDir()
	board := benchBoard(tb)
	keyFile, pub := keyPair(tb, filepath.Join(dir, "keys"), "release")
	key, err := manifest.ReadPrivateKey(keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	e := &benchEnv{ctx: context.Background(), dir: dir, key: key, trusted: []manifest.PublicKey{pub},
		spec: Spec{Board: board, Seed: "bench-update", SigningKeys: []string{keyFile}}}
	if e.slotSize, err = partitionSize(board.Layout, layout.SlotPartition("a")); err != nil {
		tb.Fatal(err)
	}
	if e.rootSize, err = partitionSize(board.Layout, layout.RootPartition("a")); err != nil {
		tb.Fatal(err)
	}
	return e
}

// build writes the bundle of a slot a holding kernel, initrd and rootDir
// to out (BuildBundle: erofs, dm-verity, signed manifest, bundle).
func (e *benchEnv) build(tb testing.TB, version, kernel, initrd, rootDir, out string) *bundle.Header {
	tb.Helper()
	s := e.spec
	s.Slots = map[string]Slot{"a": {Kernel: kernel, Initrd: initrd, RootDir: rootDir,
		Version: version, SecurityVersion: 1, Cmdline: "console=ttyS0 keel.slot=a"}}
	f, err := os.Create(out)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	h, err := BuildBundle(e.ctx, s, "a", w)
	if err != nil {
		tb.Fatalf("BuildBundle %s: %v", version, err)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	return h
}

// openBundle opens and verifies the bundle file at path.
func (e *benchEnv) openBundle(tb testing.TB, path string) (*bundle.Bundle, source.Source) {
	tb.Helper()
	src, err := source.File(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { src.Close() })
	bb, err := bundle.Open(e.ctx, src, e.trusted, manifest.AnyBoard)
	if err != nil {
		tb.Fatal(err)
	}
	return bb, src
}

// rootImage writes the bytes a root partition gets from the bundle at
// path (the root file system, its dm-verity tree at the hash offset) to
// out and returns their size.
func (e *benchEnv) rootImage(tb testing.TB, path, out string) int64 {
	tb.Helper()
	bb, _ := e.openBundle(tb, path)
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rr, err := bb.RootReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	tp, _ := bb.Header.Part(bundle.PartTree)
	n := int64(bb.Params.HashOffset) + tp.Size
	o, err := os.Create(out)
	if err != nil {
		tb.Fatal(err)
	}
	defer o.Close()
	if _, err := io.Copy(o, io.NewSectionReader(rr, 0, n)); err != nil {
		tb.Fatal(err)
	}
	if err := o.Sync(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// emptyPartition creates a fresh file of size bytes (sparse, like a
// partition never written) and opens it read-write.
func emptyPartition(tb testing.TB, path string, size int64) *os.File {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	return f
}

// coldFile makes the next read of path come from the disk: the whole
// system's dirty pages are written back (so that no earlier write is
// flushed during a measurement), then path's pages dropped.
func coldFile(tb testing.TB, path string) {
	tb.Helper()
	syscall.Sync()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	slotwrite.DropFileCache(f, 0, 0)
}

// phaseTimes records when each phase of an install started.
type phaseTimes struct {
	names []string
	at    []time.Duration
}

func (p *phaseTimes) event(ev slotwrite.Event) {
	if n := len(p.names); n == 0 || p.names[n-1] != ev.Phase {
		p.names = append(p.names, ev.Phase)
		p.at = append(p.at, ev.Elapsed)
	}
}

// String is the time of each phase: "open" is everything before the
// first event (header, manifest, tree, plan with NoLocal), "write"
// includes the syncs, "verify" the read-back and the header write.
func (p *phaseTimes) String() string {
	if len(p.at) == 0 {
		return ""
	}
	parts := []string{fmt.Sprintf("open %.2fs", p.at[0].Seconds())}
	for i := 0; i+1 < len(p.names); i++ {
		parts = append(parts, fmt.Sprintf("%s %.2fs", p.names[i], (p.at[i+1]-p.at[i]).Seconds()))
	}
	return strings.Join(parts, ", ")
}

// installRun is one measured install.
type installRun struct {
	res    *slotwrite.Result
	took   time.Duration
	phases *phaseTimes
}

// install installs the bundle open gives into fresh, empty slot and root
// partition files in dir, active (may be nil) as the running slot; the
// time includes opening the source. The partition files are removed.
func (e *benchEnv) install(tb testing.TB, open func() (source.Source, error), dir string, active *slotwrite.Active, noLocal bool) installRun {
	tb.Helper()
	slotPath, rootPath := filepath.Join(dir, "target-slot.img"), filepath.Join(dir, "target-root.img")
	slot := emptyPartition(tb, slotPath, e.slotSize)
	root := emptyPartition(tb, rootPath, e.rootSize)
	defer func() {
		slot.Close()
		root.Close()
		os.Remove(slotPath)
		os.Remove(rootPath)
	}()
	pt := &phaseTimes{}
	o := update.Options{
		Trusted:  e.trusted,
		Board:    e.spec.Board.Name,
		Target:   slotwrite.Target{Slot: slot, SlotSize: e.slotSize, Root: root, RootSize: e.rootSize},
		Active:   active,
		NoLocal:  noLocal,
		Progress: pt.event,
	}
	start := time.Now()
	src, err := open()
	if err != nil {
		tb.Fatal(err)
	}
	res, err := update.Install(e.ctx, src, o)
	took := time.Since(start)
	src.Close()
	if err != nil {
		tb.Fatalf("update.Install: %v", err)
	}
	return installRun{res: res, took: took, phases: pt}
}

// writtenBytes is what an install writes: the root (blocks and tree), the
// kernel, initrd, manifest and signature.
func writtenBytes(bb *bundle.Bundle) int64 {
	n := int64(len(bb.ManifestBytes) + len(bb.Sig))
	for _, name := range []string{bundle.PartKernel, bundle.PartInitrd, bundle.PartTree, bundle.PartData} {
		p, _ := bb.Header.Part(name)
		n += p.Size
	}
	return n
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func table(rows [][]string) string {
	var sb strings.Builder
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
	return sb.String()
}

// BenchmarkInstallVsDD: update.Install of a full bundle from a file into
// empty partition files, against dd of the root partition's bytes into
// the same kind of file, in the same run. Both read their input from the
// disk (its cached pages dropped first), write fresh files of the same
// size on the same file system and end with fsync; the install also
// hashes every block before writing it and reads everything back from
// the disk (cache dropped) to check it. ns/op is the default install.
func BenchmarkInstallVsDD(b *testing.B) {
	e := newBenchEnv(b)
	dd := tool(b, "dd")
	files := benchLayout(benchRootMiB << 20)
	rootDir := filepath.Join(e.dir, "root")
	writeBenchTree(b, rootDir, files, 1, "1.0")
	kernel := filepath.Join(e.dir, "vmlinuz")
	initrd := filepath.Join(e.dir, "stage2.cpio")
	randomFile(b, kernel, benchKernelSize)
	randomFile(b, initrd, benchInitrdSize)
	bundlePath := filepath.Join(e.dir, "full.bundle")
	h := e.build(b, "1.0", kernel, initrd, rootDir, bundlePath)
	rootImg := filepath.Join(e.dir, "root.img")
	rootBytes := e.rootImage(b, bundlePath, rootImg)
	bb, _ := e.openBundle(b, bundlePath)
	written := writtenBytes(bb)
	if err := os.RemoveAll(rootDir); err != nil {
		b.Fatal(err)
	}
	openFile := func() (source.Source, error) { return source.File(bundlePath) }

	// Each iteration runs every measurement benchInstallRounds times, in a
	// rotating order; the medians are reported (the disk's speed varies
	// from one fsync to the next).
	var ddTimes, ddReadTimes, instTimes, noLocalTimes []time.Duration
	var inst, noLocal installRun
	steps := []func(){
		func() { // dd of the root partition's bytes
			target := filepath.Join(e.dir, "dd-root.img")
			emptyPartition(b, target, e.rootSize).Close()
			defer os.Remove(target)
			coldFile(b, rootImg)
			start := time.Now()
			out, err := exec.Command(dd, "if="+rootImg, "of="+target, "bs=1M", "conv=fsync,notrunc").CombinedOutput()
			ddTimes = append(ddTimes, time.Since(start))
			if err != nil {
				b.Fatalf("dd: %v\n%s", err, out)
			}
			// Then the read-back the install does and dd does not: the
			// target read from the medium (its cached pages dropped; dd's
			// fsync left them clean).
			if f, err := os.Open(target); err == nil {
				slotwrite.DropFileCache(f, 0, 0)
				f.Close()
			}
			out, err = exec.Command(dd, "if="+target, "of=/dev/null", "bs=1M").CombinedOutput()
			ddReadTimes = append(ddReadTimes, time.Since(start))
			if err != nil {
				b.Fatalf("dd: %v\n%s", err, out)
			}
		},
		func() { // the install with the default options
			coldFile(b, bundlePath)
			b.StartTimer()
			inst = e.install(b, openFile, e.dir, nil, false)
			b.StopTimer()
			instTimes = append(instTimes, inst.took)
		},
		func() { // the install without delta lookups
			coldFile(b, bundlePath)
			noLocal = e.install(b, openFile, e.dir, nil, true)
			noLocalTimes = append(noLocalTimes, noLocal.took)
		},
	}
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < benchInstallRounds; r++ {
			for k := range steps {
				steps[(k+r)%len(steps)]()
			}
		}
	}
	ddTime, instTime, noLocalTime := median(ddTimes), median(instTimes), median(noLocalTimes)
	ddMBs := mb(rootBytes) / ddTime.Seconds()
	instMBs := mb(written) / instTime.Seconds()
	noLocalMBs := mb(written) / noLocalTime.Seconds()
	b.ReportMetric(float64(instTime.Nanoseconds()), "ns/op") // the median default install
	b.ReportMetric(instMBs, "install-MB/s")
	b.ReportMetric(noLocalMBs, "install-nolocal-MB/s")
	b.ReportMetric(ddMBs, "dd-MB/s")
	b.ReportMetric(instMBs/ddMBs, "install/dd")
	b.ReportMetric(noLocalMBs/ddMBs, "nolocal/dd")
	b.ReportMetric(instMBs/(mb(rootBytes)/median(ddReadTimes).Seconds()), "install/dd+readback")

	row := func(what string, ts []time.Duration, bytes int64) []string {
		m := median(ts)
		return []string{what, fmt.Sprintf("%.2fs", m.Seconds()), fmt.Sprintf("%.1f", mb(bytes)/m.Seconds()),
			fmt.Sprintf("%.2f", mb(bytes)/m.Seconds()/ddMBs), durations(ts)}
	}
	summary(b, fmt.Sprintf("BenchmarkInstallVsDD: %d files, %.1f MB of content; bundle %.1f MB (root %d blocks + tree, kernel %.1f MB, initrd %.1f MB)\n"+
		"install writes %.1f MB (the root partition's %.1f MB + the slot container); dd writes the root partition's %.1f MB (file system + tree)\n"+
		"inputs read from disk (page cache dropped), targets fresh %d MiB files in %s, all ending with fsync;\n"+
		"%d rounds in rotating order, medians:\n%s"+
		"default install: blocks %v; fetched %.1f MB\n"+
		"phases of the last default install: %v\nphases of the last NoLocal install: %v\n"+
		"goal: install/dd >= 0.90 (ns/op is the median default install); the install reads back what it wrote\n"+
		"(issue 10: \"after the write: read back and verify\"), which dd does not: the second dd row is that baseline\n",
		len(files), mb(benchRootMiB<<20), mb(h.Size()), h.DataBlocks, mb(benchKernelSize), mb(benchInitrdSize),
		mb(written), mb(rootBytes), mb(rootBytes), e.rootSize>>20, e.dir, len(instTimes),
		table([][]string{
			{"", "time", "MB/s", "vs dd", "every round"},
			row("dd bs=1M conv=fsync,notrunc", ddTimes, rootBytes),
			row("  the same, then dd reads the target back", ddReadTimes, rootBytes),
			row("update.Install (delta lookups on)", instTimes, written),
			row("update.Install NoLocal", noLocalTimes, written),
		}),
		inst.res.Blocks, mb(inst.res.Fetched), inst.phases, noLocal.phases))
}

// benchInstallRounds is how many times BenchmarkInstallVsDD measures each
// way in one iteration.
const benchInstallRounds = 3

func median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func durations(ts []time.Duration) string {
	var p []string
	for _, t := range ts {
		p = append(p, fmt.Sprintf("%.2fs", t.Seconds()))
	}
	return strings.Join(p, " ")
}

// summary prints a benchmark's summary: on standard output with -v (go
// test keeps only 10 lines of a benchmark's log), else to the log.
func summary(b *testing.B, s string) {
	if testing.Verbose() {
		fmt.Print("\n" + s + "\n")
		return
	}
	b.Log("\n" + s)
}

// countingHandler counts the body bytes and requests h serves.
type countingHandler struct {
	h               http.Handler
	bytes, requests atomic.Int64
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	// Only http.ResponseWriter's methods: io.Copy cannot bypass Write.
	c.h.ServeHTTP(countingWriter{ResponseWriter: w, n: &c.bytes}, r)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// BenchmarkDeltaFetched: what an install over HTTP fetches when the
// device runs the old version (installed with update.Install into empty
// partition files, which then serve as the active slot), for three new
// versions: one changed file of a few KiB, a new kernel only, a new root
// (every file's content regenerated). For the one-file change it also
// reports, in the same run, zstd --patch-from between the two root
// partitions' bytes (file systems with their dm-verity trees) and the
// static delta bundle (as keel bundle delta writes it), all as
// percentages of the new version's full bundle.
func BenchmarkDeltaFetched(b *testing.B) {
	e := newBenchEnv(b)
	zstd := tool(b, "zstd")
	files := benchLayout(benchRootMiB << 20)
	oldDir := filepath.Join(e.dir, "root-old")
	writeBenchTree(b, oldDir, files, 1, "1.0")
	kernel1, kernel2 := filepath.Join(e.dir, "vmlinuz-1"), filepath.Join(e.dir, "vmlinuz-2")
	initrd := filepath.Join(e.dir, "stage2.cpio")
	randomFile(b, kernel1, benchKernelSize)
	randomFile(b, kernel2, benchKernelSize)
	randomFile(b, initrd, benchInitrdSize)
	srv := filepath.Join(e.dir, "srv")
	if err := os.MkdirAll(srv, 0o755); err != nil {
		b.Fatal(err)
	}
	oldBundle := filepath.Join(srv, "old.bundle")
	oldH := e.build(b, "1.0", kernel1, initrd, oldDir, oldBundle)

	// The device: the old version installed into empty partitions.
	active := e.installActive(b, oldBundle, e.dir)

	// (i) one changed file: the first file of 4-12 KiB.
	oneDir := filepath.Join(e.dir, "root-one-file")
	copyTree(b, oldDir, oneDir)
	var changed benchFile
	for _, f := range files {
		if f.size >= 4<<10 && f.size <= 12<<10 {
			changed = f
			break
		}
	}
	if changed.rel == "" {
		b.Fatal("no file of 4-12 KiB in the layout")
	}
	{
		p := filepath.Join(oneDir, changed.rel)
		c, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		for i := range c {
			c[i] ^= 0x5a
		}
		if err := os.WriteFile(p, c, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// (iii) a new root: the same files, every content regenerated.
	newDir := filepath.Join(e.dir, "root-new")
	writeBenchTree(b, newDir, files, 2, "1.0")

	type deltaCase struct {
		name, what, bundle string
		full               int64
		res                *slotwrite.Result
		took               time.Duration
		served, requests   int64
		stats              source.Stats
	}
	cases := []*deltaCase{
		{name: "one-file", what: fmt.Sprintf("one %d-byte file changed (%s)", changed.size, changed.rel)},
		{name: "kernel-only", what: "new kernel, same root directory"},
		{name: "new-root", what: "every file's content regenerated"},
	}
	for _, c := range cases {
		c.bundle = filepath.Join(srv, c.name+".bundle")
	}
	cases[0].full = e.build(b, "2.0", kernel1, initrd, oneDir, cases[0].bundle).Size()
	cases[1].full = e.build(b, "2.1", kernel2, initrd, oldDir, cases[1].bundle).Size()
	cases[2].full = e.build(b, "2.2", kernel1, initrd, newDir, cases[2].bundle).Size()
	for _, d := range []string{oldDir, oneDir, newDir} {
		if err := os.RemoveAll(d); err != nil {
			b.Fatal(err)
		}
	}

	// zstd --patch-from between the root partitions' bytes of (i).
	oldImg, newImg := filepath.Join(e.dir, "old-root.img"), filepath.Join(e.dir, "one-file-root.img")
	e.rootImage(b, oldBundle, oldImg)
	e.rootImage(b, cases[0].bundle, newImg)
	patch := filepath.Join(e.dir, "one-file.zst")
	start := time.Now()
	if out, err := exec.Command(zstd, "-q", "-f", "--long=31", "--patch-from="+oldImg, newImg, "-o", patch).CombinedOutput(); err != nil {
		b.Fatalf("zstd --patch-from: %v\n%s", err, out)
	}
	zstdTime := time.Since(start)
	st, err := os.Stat(patch)
	if err != nil {
		b.Fatal(err)
	}
	zstdSize := st.Size()

	// The static delta bundle of (i), as cli's bundle delta writes it.
	var delta *bundle.Header
	{
		ob, osrc := e.openBundle(b, oldBundle)
		nb, nsrc := e.openBundle(b, cases[0].bundle)
		of, err := os.Open(oldBundle)
		if err != nil {
			b.Fatal(err)
		}
		defer of.Close()
		nf, err := os.Open(cases[0].bundle)
		if err != nil {
			b.Fatal(err)
		}
		defer nf.Close()
		tree, _, err := nb.ReadTree(e.ctx, nsrc)
		if err != nil {
			b.Fatal(err)
		}
		oldTree, _, err := ob.ReadTree(e.ctx, osrc)
		if err != nil {
			b.Fatal(err)
		}
		oldRootR, err := ob.RootReader(of)
		if err != nil {
			b.Fatal(err)
		}
		m, err := bundle.DeltaMap(tree, oldRootR, oldTree)
		if err != nil {
			b.Fatal(err)
		}
		newRootR, err := nb.RootReader(nf)
		if err != nil {
			b.Fatal(err)
		}
		kp, _ := nb.Header.Part(bundle.PartKernel)
		ip, _ := nb.Header.Part(bundle.PartInitrd)
		parts, err := bundle.ReadParts(e.ctx, nsrc, kp, ip)
		if err != nil {
			b.Fatal(err)
		}
		if delta, err = bundle.Write(io.Discard, bundle.Input{Manifest: nb.ManifestBytes, Sig: nb.Sig, Kernel: parts[0], Initrd: parts[1], Root: newRootR,
			Delta: &bundle.Delta{From: ob.Header.Version, FromRootHash: ob.Manifest.Root.Verity.RootHash}, Map: m}, e.key); err != nil {
			b.Fatal(err)
		}
	}

	// The update server.
	counter := &countingHandler{h: http.FileServer(http.Dir(srv))}
	ts := httptest.NewServer(counter)
	defer ts.Close()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, c := range cases {
			b.StopTimer()
			syscall.Sync()
			counter.bytes.Store(0)
			counter.requests.Store(0)
			var hs *source.HTTPSource
			open := func() (source.Source, error) {
				s, err := source.HTTP(e.ctx, ts.URL+"/"+filepath.Base(c.bundle), source.HTTPOptions{})
				if err == nil {
					hs = s.(*source.HTTPSource)
				}
				return s, err
			}
			b.StartTimer()
			r := e.install(b, open, e.dir, active, false)
			b.StopTimer()
			c.res, c.took = r.res, r.took
			c.served, c.requests = counter.bytes.Load(), counter.requests.Load()
			c.stats = hs.Stats()
			b.StartTimer()
		}
	}
	b.StopTimer()

	pct := func(n, of int64) float64 { return 100 * float64(n) / float64(of) }
	for _, c := range cases {
		b.ReportMetric(pct(c.res.Fetched, c.full), c.name+"-fetched-%")
	}
	b.ReportMetric(pct(cases[0].served, cases[0].full), "one-file-served-%")
	b.ReportMetric(pct(zstdSize, cases[0].full), "zstd-patch-%")
	b.ReportMetric(pct(delta.Size(), cases[0].full), "static-delta-%")

	rows := [][]string{{"case", "full bundle", "fetched (Result)", "served (HTTP bodies)", "requests", "blocks", "kernel+initrd local", "install"}}
	for _, c := range cases {
		rows = append(rows, []string{c.name,
			fmt.Sprintf("%.1f MB", mb(c.full)),
			fmt.Sprintf("%.2f MB = %.2f%%", mb(c.res.Fetched), pct(c.res.Fetched, c.full)),
			fmt.Sprintf("%.2f MB = %.2f%%", mb(c.served), pct(c.served, c.full)),
			fmt.Sprint(c.requests),
			fmt.Sprintf("fetched %d, active %d, zero %d, copied %d", c.res.Blocks.Fetched, c.res.Blocks.Active, c.res.Blocks.Zero, c.res.Blocks.Copied),
			fmt.Sprintf("%.1f MB", mb(c.res.LocalContainer)),
			fmt.Sprintf("%.2fs", c.took.Seconds()),
		})
	}
	var whats []string
	for _, c := range cases {
		whats = append(whats, fmt.Sprintf("  %s: %s", c.name, c.what))
	}
	summary(b, fmt.Sprintf("BenchmarkDeltaFetched: old version %s (%d files, %.1f MB of content, root %d blocks, bundle %.1f MB), active slot installed with update.Install;\n"+
		"new versions over HTTP (127.0.0.1, http.FileServer), each into fresh empty partitions:\n%s\n%s"+
		"one-file, other ways (sizes as %% of its full bundle, %.1f MB):\n%s"+
		"goal: one-file fetched <= 10%% (ns/op: the three installs)\n",
		oldH.Version, len(files), mb(benchRootMiB<<20), oldH.DataBlocks, mb(oldH.Size()), strings.Join(whats, "\n"), table(rows), mb(cases[0].full),
		table([][]string{
			{"update.Install over HTTP (fetched)", fmt.Sprintf("%.2f MB", mb(cases[0].res.Fetched)), fmt.Sprintf("%.2f%%", pct(cases[0].res.Fetched, cases[0].full))},
			{"static delta bundle (bundle.DeltaMap + bundle.Write)", fmt.Sprintf("%.2f MB", mb(delta.Size())), fmt.Sprintf("%.2f%%", pct(delta.Size(), cases[0].full)),
				fmt.Sprintf("%d of %d blocks carried", delta.Delta.Blocks, delta.DataBlocks)},
			{"zstd --long=31 --patch-from (root partitions' bytes, with trees)", fmt.Sprintf("%.2f MB", mb(zstdSize)), fmt.Sprintf("%.2f%%", pct(zstdSize, cases[0].full)),
				fmt.Sprintf("%.1fs to make", zstdTime.Seconds())},
		})))
}
