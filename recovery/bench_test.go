package recovery

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
	if err := os.WriteFile(seedPath, fx.img, 0o644); err != nil {
		b.Fatal(err)
	}
	src, err := os.Open(seedPath)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	seed, err := VerifySeed(src, int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		b.Fatal(err)
	}
	written := int64(len(fx.kernel)+len(fx.initrd)+len(fx.slotManifest)+len(fx.slotSig)) + int64(len(fx.root))
	const slotSize, rootSize = 16 << 20, 32 << 20
	open := func(name string, size int64) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		return f
	}

	b.Run("keel", func(b *testing.B) {
		slot, root := open("slot.img", slotSize), open("root.img", rootSize)
		defer slot.Close()
		defer root.Close()
		b.SetBytes(written)
		for b.Loop() {
			if err := Reinstall(context.Background(), seed, src, Target{slot, slotSize, root, rootSize}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dd", func(b *testing.B) {
		target := open("dd.img", int64(len(fx.img)))
		target.Close()
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
