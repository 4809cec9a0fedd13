package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// Device is a partition recovery writes: a block device or a file.
// *os.File is one.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes earlier writes durable (fsync).
	Sync() error
}

// Target is the slot Reinstall rewrites: its slot container partition
// (slot-<name>) and its root partition (root-<name>), with their sizes in
// bytes.
type Target struct {
	Slot     Device
	SlotSize int64
	Root     Device
	RootSize int64
}

// Progress is called as a reinstall (or wipe) advances: done of total
// bytes (each byte counts once written and once read back for the check),
// at mbps megabytes (10^6 bytes) per second since the start. It is never
// called concurrently; the last call has done == total.
type Progress func(done, total int64, mbps float64)

// ChunkSize is how much Reinstall reads and writes at a time.
const ChunkSize = 1 << 20

// progress counts bytes for a Progress.
type progress struct {
	mu          sync.Mutex
	ctx         context.Context
	fn          Progress
	done, total int64
	start       time.Time
}

func newProgress(ctx context.Context, fn Progress, total int64) *progress {
	return &progress{ctx: ctx, fn: fn, total: total, start: time.Now()}
}

// add counts n bytes and reports; it returns the context's error.
func (p *progress) add(n int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.fn != nil {
		s := time.Since(p.start).Seconds()
		mbps := 0.0
		if s > 0 {
			mbps = float64(p.done) / 1e6 / s
		}
		p.fn(min(p.done, p.total), p.total, mbps)
	}
	if err := p.ctx.Err(); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	return nil
}

// finish reports done == total.
func (p *progress) finish() {
	p.mu.Lock()
	p.done = p.total
	p.mu.Unlock()
	_ = p.add(0)
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r    io.ReaderAt
	read func(n int64) error
}

func (c *countingReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	if perr := c.read(int64(n)); perr != nil && err == nil {
		err = perr
	}
	return n, err
}

// copyRange streams n bytes from src at srcOff to dst at dstOff in chunks.
func copyRange(dst io.WriterAt, dstOff int64, src io.ReaderAt, srcOff, n int64, buf []byte, p *progress, what string) error {
	for done := int64(0); done < n; {
		c := min(int64(len(buf)), n-done)
		b := buf[:c]
		if m, err := src.ReadAt(b, srcOff+done); int64(m) != c {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("recovery: reading %s from the seed at %d: %w", what, srcOff+done, err)
		}
		if _, err := dst.WriteAt(b, dstOff+done); err != nil {
			return fmt.Errorf("recovery: writing %s at %d: %w", what, dstOff+done, err)
		}
		done += c
		if err := p.add(c); err != nil {
			return err
		}
	}
	return nil
}

// slotEntries are the entries of a reinstalled slot container, in order.
func (s *Seed) slotEntries() []slotimg.Entry {
	return []slotimg.Entry{
		{Name: slotimg.EntryKernel, Size: s.Kernel.Size},
		{Name: slotimg.EntryInitrd, Size: s.Initrd.Size},
		{Name: slotimg.EntryManifest, Size: int64(len(s.SlotManifestBytes))},
		{Name: manifest.SigEntry, Size: int64(len(s.SlotSig))},
	}
}

// Reinstall rewrites the slot dst from the verified seed in src (the
// recovery partition VerifySeed read): a fresh slot container with the
// seed's kernel and initrd and its slot manifest (seedimg.EntrySlotManifest
// and seedimg.EntrySlotSig, as the slot's manifest and manifest.sig) on
// dst.Slot, and the seed's root entry (file system and dm-verity tree) on
// dst.Root, streamed in ChunkSize chunks and read back and verified before
// the container's header is written. The order of the writes (see the package
// documentation) makes it safe against power cuts: after a cut the slot
// has no valid header, or is the seed's content, verified; call Reinstall
// again to finish. A target too small is refused before anything is
// written. progress may be nil.
func Reinstall(ctx context.Context, seed *Seed, src io.ReaderAt, dst Target, progress Progress) error {
	if seed == nil || !seed.verified {
		return errors.New("recovery: reinstall from a seed that VerifySeed did not return")
	}
	hdr, ents, err := slotimg.Layout(seed.slotEntries())
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	last := ents[len(ents)-1]
	if need := last.Offset + last.Size; need > dst.SlotSize {
		return fmt.Errorf("recovery: the slot container needs %d bytes, the slot partition has %d", need, dst.SlotSize)
	}
	if seed.Root.Size > dst.RootSize {
		return fmt.Errorf("recovery: the root file system and its verity tree need %d bytes, the root partition has %d", seed.Root.Size, dst.RootSize)
	}
	write := seed.Root.Size
	for _, e := range ents {
		write += e.Size
	}
	p := newProgress(ctx, progress, 2*write)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	sync := func(d Device, what string) error {
		if err := d.Sync(); err != nil {
			return fmt.Errorf("recovery: syncing the %s partition: %w", what, err)
		}
		return nil
	}

	// 1. No valid header from here until step 5.
	if _, err := dst.Slot.WriteAt(make([]byte, slotimg.HeaderSize), 0); err != nil {
		return fmt.Errorf("recovery: clearing the slot container header: %w", err)
	}
	if err := sync(dst.Slot, "slot"); err != nil {
		return err
	}
	// 2. The root.
	buf := make([]byte, ChunkSize)
	if err := copyRange(dst.Root, 0, src, seed.Root.Offset, seed.Root.Size, buf, p, "the root file system"); err != nil {
		return err
	}
	// 3. The container body.
	if err := copyRange(dst.Slot, ents[0].Offset, src, seed.Kernel.Offset, seed.Kernel.Size, buf, p, "the kernel"); err != nil {
		return err
	}
	if err := copyRange(dst.Slot, ents[1].Offset, src, seed.Initrd.Offset, seed.Initrd.Size, buf, p, "the initrd"); err != nil {
		return err
	}
	for i, b := range [][]byte{seed.SlotManifestBytes, seed.SlotSig} {
		e := ents[2+i]
		if _, err := dst.Slot.WriteAt(b, e.Offset); err != nil {
			return fmt.Errorf("recovery: writing the %s: %w", e.Name, err)
		}
		if err := p.add(e.Size); err != nil {
			return err
		}
	}
	// Both partitions durable before the check and the header.
	if err := sync(dst.Root, "root"); err != nil {
		return err
	}
	if err := sync(dst.Slot, "slot"); err != nil {
		return err
	}
	// 4. Read back (from the medium, not the page cache) and verify.
	dropCache(dst.Root)
	dropCache(dst.Slot)
	if err := seed.checkRoot(dst.Root, "the reinstalled root", p.add); err != nil {
		return err
	}
	m := seed.Manifest
	for i, want := range []manifest.Digest{m.Kernel, m.Initrd} {
		e := ents[i]
		r := &countingReader{r: io.NewSectionReader(dst.Slot, e.Offset, e.Size), read: p.add}
		if err := manifest.Check("reinstalled "+e.Name, io.NewSectionReader(r, 0, e.Size), want); err != nil {
			return fmt.Errorf("%w: %w", ErrBadSeed, err)
		}
	}
	for i, want := range [][]byte{seed.SlotManifestBytes, seed.SlotSig} {
		e := ents[2+i]
		got := make([]byte, len(want))
		if _, err := dst.Slot.ReadAt(got, e.Offset); err != nil {
			return fmt.Errorf("recovery: reading back the %s: %w", e.Name, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("recovery: the %s read back differs from what was written: the slot partition does not keep its data", e.Name)
		}
		if err := p.add(e.Size); err != nil {
			return err
		}
	}
	// 5. The header, last.
	if _, err := dst.Slot.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("recovery: writing the slot container header: %w", err)
	}
	if err := sync(dst.Slot, "slot"); err != nil {
		return err
	}
	got := make([]byte, slotimg.HeaderSize)
	if _, err := dst.Slot.ReadAt(got, 0); err != nil {
		return fmt.Errorf("recovery: reading back the slot container header: %w", err)
	}
	if !bytes.Equal(got, hdr) {
		return errors.New("recovery: the slot container header read back differs from what was written")
	}
	p.finish()
	return nil
}

// Recover verifies the seed in the recovery partition src (size bytes)
// for board and, only if it verifies, reinstalls dst from it: VerifySeed, then
// Reinstall. A seed that does not verify returns a nil Seed and an error
// wrapping ErrBadSeed, and nothing is written; otherwise the Seed is
// returned with Reinstall's error (nil when the slot is reinstalled).
func Recover(ctx context.Context, src io.ReaderAt, size int64, trusted []manifest.PublicKey, board string, dst Target, progress Progress) (*Seed, error) {
	seed, err := VerifySeed(src, size, trusted, board)
	if err != nil {
		return nil, err
	}
	return seed, Reinstall(ctx, seed, src, dst, progress)
}
