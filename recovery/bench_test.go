package recovery

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkReinstall measures Reinstall on files (a seed of an 8 MiB
// kernel, a 4 MiB initrd and a 24 MiB root with its verity tree) against
// dd writing the same seed image to a file of the same size, in one run:
// dd if=recovery.img of=target bs=1M conv=fsync,notrunc. Both fsync; the
// reinstall also reads everything back (the page cache dropped first) and
// verifies it. MB/s counts the bytes written.
func BenchmarkReinstall(b *testing.B) {
	dir := b.TempDir()
	fx := makeSeed(b, seedOpts{kernel: 8 << 20, initrd: 4 << 20, rootBlocks: 6000})
	seedPath := filepath.Join(dir, "recovery.img")
	src := openFile(b, seedPath, fx.img)
	seed, err := VerifySeed(src, int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		b.Fatal(err)
	}
	written := int64(len(fx.kernel)+len(fx.initrd)+len(fx.slotManifest)+len(fx.slotSig)) + int64(len(fx.root))
	const slotSize, rootSize = 16 << 20, 32 << 20

	b.Run("keel", func(b *testing.B) {
		slot := openFile(b, filepath.Join(dir, "slot.img"), make([]byte, slotSize))
		root := openFile(b, filepath.Join(dir, "root.img"), make([]byte, rootSize))
		b.SetBytes(written)
		for b.Loop() {
			if err := reinstallDev(seed, src, slot, slotSize, root, rootSize); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dd", func(b *testing.B) {
		openFile(b, filepath.Join(dir, "dd.img"), make([]byte, len(fx.img)))
		b.SetBytes(int64(len(fx.img)))
		for b.Loop() {
			out, err := exec.Command("dd", "if="+seedPath, "of="+filepath.Join(dir, "dd.img"), "bs=1M",
				"conv=fsync,notrunc", "status=none").CombinedOutput()
			if err != nil {
				b.Fatalf("dd: %v\n%s", err, out)
			}
		}
	})
	b.Run("verify-seed", func(b *testing.B) {
		b.SetBytes(int64(len(fx.img)))
		for b.Loop() {
			if _, err := VerifySeed(src, int64(len(fx.img)), fx.trusted, testBoard); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecover256 is a recovery as keel-init runs it (VerifySeed, then
// Reinstall) of a seed with a 256 MiB root (65536 random 4 KiB blocks, its
// dm-verity tree), an 8 MiB kernel and a 4 MiB initrd, from a seed file into
// a slot and a root file, every file's page cache dropped before each
// iteration (keel-init reads a cold seed). The target slot has no valid
// header (a slot recovery rewrites is bad, or a cut reinstall left it so);
// its root is
//
//	all-wrong     other random blocks (a slot of another version)
//	mostly-right  the seed's root with every 64th block changed (a reinstall
//	              cut near its end, a few damaged blocks)
//
// on two media:
//
//	file  the files as they are (this machine's disk and page cache, where
//	      a write costs about what a read does)
//	emmc  the same files behind a model of an eMMC-class flash medium: one
//	      operation at a time, reads at 200 MB/s, writes at 40 MB/s (a
//	      read of the seed that the page cache would serve is charged too,
//	      for both reinstalls alike)
//
// The metrics verify-s and reinstall-s split each iteration's time.
func BenchmarkRecover256(b *testing.B) {
	const (
		rootBlocks         = 65536
		slotSize, rootSize = 16 << 20, 264 << 20
	)
	dir := b.TempDir()
	fx := makeSeed(b, seedOpts{kernel: 8 << 20, initrd: 4 << 20, rootBlocks: rootBlocks})
	src := openFile(b, filepath.Join(dir, "recovery.img"), fx.img)
	seedSize := int64(len(fx.img))
	slot := openFile(b, filepath.Join(dir, "slot.img"), make([]byte, slotSize))
	root := openFile(b, filepath.Join(dir, "root.img"), make([]byte, rootSize))
	wrong := random(b, rootSize)
	mostly := append(bytes.Clone(fx.root), make([]byte, rootSize-len(fx.root))...)
	for i := 0; i < rootBlocks; i += 64 {
		mostly[i*4096+7] ^= 0xff
	}
	fx.img = nil
	// prepare writes the target's state and drops every cache.
	prepare := func(rootBytes []byte) {
		b.Helper()
		if _, err := slot.WriteAt(make([]byte, slotSize), 0); err != nil {
			b.Fatal(err)
		}
		if _, err := root.WriteAt(rootBytes, 0); err != nil {
			b.Fatal(err)
		}
		for _, f := range []*os.File{slot, root, src} {
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			dropFile(f)
		}
	}
	for _, medium := range []string{"file", "emmc"} {
		var srcDev io.ReaderAt = src
		var slotDev, rootDev benchDevice = slot, root
		if medium == "emmc" {
			m := &flash{read: 200e6, write: 40e6}
			srcDev, slotDev, rootDev = m.on(src), m.on(slot), m.on(root)
		}
		for _, tc := range []struct {
			name string
			root []byte
		}{{"all-wrong", wrong}, {"mostly-right", mostly}} {
			b.Run(medium+"/"+tc.name, func(b *testing.B) {
				var verify, reinstall time.Duration
				b.SetBytes(int64(len(fx.root)))
				for b.Loop() {
					b.StopTimer()
					prepare(tc.root)
					b.StartTimer()
					t0 := time.Now()
					seed, err := VerifySeed(srcDev, seedSize, fx.trusted, testBoard)
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if err := reinstallDev(seed, srcDev, slotDev, slotSize, rootDev, rootSize); err != nil {
						b.Fatal(err)
					}
					verify += t1.Sub(t0)
					reinstall += time.Since(t1)
				}
				b.ReportMetric(verify.Seconds()/float64(b.N), "verify-s")
				b.ReportMetric(reinstall.Seconds()/float64(b.N), "reinstall-s")
			})
		}
	}
}

// benchDevice is a partition the benchmark writes.
type benchDevice interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// flash models a flash medium under files: one operation at a time, each
// taking its bytes over the read or write rate (bytes per second) on top
// of the file's own time.
type flash struct {
	read, write float64
	mu          sync.Mutex
	free        time.Time // when the medium is done with what it was given
}

// take charges n bytes at rate and waits until the medium has done them.
func (m *flash) take(n int, rate float64) {
	m.mu.Lock()
	start := time.Now()
	if m.free.After(start) {
		start = m.free
	}
	m.free = start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	end := m.free
	m.mu.Unlock()
	time.Sleep(time.Until(end))
}

func (m *flash) on(f *os.File) *flashFile { return &flashFile{m: m, f: f} }

// flashFile is a file on the flash medium; it drops and syncs ranges of
// its page cache as the file does (the page cache helpers see through it).
type flashFile struct {
	m *flash
	f *os.File
}

func (d *flashFile) ReadAt(b []byte, off int64) (int, error) {
	n, err := d.f.ReadAt(b, off)
	d.m.take(n, d.m.read)
	return n, err
}

func (d *flashFile) WriteAt(b []byte, off int64) (int, error) {
	d.m.take(len(b), d.m.write)
	return d.f.WriteAt(b, off)
}

func (d *flashFile) Sync() error { return d.f.Sync() }
