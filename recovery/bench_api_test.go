package recovery

import (
	"context"
	"io"
	"os"

	"github.com/keelboot/keel/slotwrite"
)

// The calls of BenchmarkRecover256 that depend on the API (kept apart so
// that the benchmark runs on the code before issue 20 §1 too).

// reinstallDev is Reinstall into the benchmark's devices.
func reinstallDev(seed *Seed, src io.ReaderAt, slot benchDevice, slotSize int64, root benchDevice, rootSize int64) error {
	return reinstall(context.Background(), seed, src, slotwrite.Target{Slot: slot, SlotSize: slotSize, Root: root, RootSize: rootSize})
}

// dropFile drops f's page cache.
func dropFile(f *os.File) { slotwrite.DropFileCache(f, 0, 0) }

// DropCache and SyncRange: the page cache helpers see through the model.
func (d *flashFile) DropCache(off, n int64)       { slotwrite.DropFileCache(d.f, off, n) }
func (d *flashFile) SyncRange(off, n int64) error { return slotwrite.SyncFileRange(d.f, off, n) }
