package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/keelboot/keel/format/seedimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
)

// Progress is called as a factory reset (WipeData) advances: done of
// total bytes (each byte counts once written and once read back for the
// check), at mbps megabytes (10^6 bytes) per second since the start. It is
// never called concurrently; the last call has done == total. A reinstall
// reports the slot writer's events instead (slotwrite.Event).
type Progress func(done, total int64, mbps float64)

// ChunkSize is how much WipeData writes at a time.
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

// WipeData is the factory reset of the data partition dst (size bytes):
// it writes the seed's empty data file system (its data entry, read again
// from src and checked against the signed manifest before anything is
// written) over the whole partition, zeros everywhere the file system has
// none, so no user data survives. Order: block 0 (which holds the ext4
// superblock) is zeroed and synced first, then the rest of the partition
// is written, synced and the file system's blocks read back and checked,
// then block 0 is written last: a cut leaves a partition with no
// superblock (run WipeData again), never a half-wiped file system that
// mounts. progress may be nil.
func WipeData(ctx context.Context, seed *Seed, src io.ReaderAt, dst slotwrite.Device, size int64, progress Progress) error {
	if seed == nil || !seed.verified {
		return errors.New("recovery: wipe from a seed that VerifySeed did not return")
	}
	if seed.Data == nil {
		return errors.New("recovery: the seed has no data entry: it cannot re-create the data file system")
	}
	if seed.Data.Size > maxData {
		return bad("the data entry is %d bytes, at most %d", seed.Data.Size, maxData)
	}
	raw := make([]byte, seed.Data.Size)
	if _, err := src.ReadAt(raw, seed.Data.Offset); err != nil {
		return fmt.Errorf("recovery: reading the seed's data entry: %w", err)
	}
	if err := manifest.Check("seed data", bytes.NewReader(raw), *seed.Manifest.Data); err != nil {
		return bad("%v", err)
	}
	d, err := seedimg.DecodeData(raw)
	if err != nil {
		return bad("the data entry: %v", err)
	}
	if d.Size > size {
		return fmt.Errorf("recovery: the seed's data file system is %d bytes, the data partition has %d", d.Size, size)
	}
	p := newProgress(ctx, progress, size+int64(len(d.Blocks)))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	zero := make([]byte, seedimg.BlockSize)
	if _, err := dst.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("recovery: clearing the data superblock: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("recovery: syncing the data partition: %w", err)
	}
	// Everything after block 0: the file system's blocks where it has
	// them, zeros elsewhere, a chunk at a time.
	buf := make([]byte, ChunkSize)
	next := 0 // position in d.Index
	if next < len(d.Index) && d.Index[next] == 0 {
		next++
	}
	for off := int64(seedimg.BlockSize); off < size; {
		c := min(int64(len(buf)), size-off)
		b := buf[:c]
		clear(b)
		for next < len(d.Index) && int64(d.Index[next])*seedimg.BlockSize < off+c {
			at := int64(d.Index[next])*seedimg.BlockSize - off
			copy(b[at:], d.Block(next))
			next++
		}
		if _, err := dst.WriteAt(b, off); err != nil {
			return fmt.Errorf("recovery: writing the data partition at %d: %w", off, err)
		}
		off += c
		if err := p.add(c); err != nil {
			return err
		}
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("recovery: syncing the data partition: %w", err)
	}
	slotwrite.DropCache(dst, 0, size)
	got := make([]byte, seedimg.BlockSize)
	for i, blk := range d.Index {
		if blk == 0 {
			continue
		}
		if _, err := dst.ReadAt(got, int64(blk)*seedimg.BlockSize); err != nil {
			return fmt.Errorf("recovery: reading back the data partition: %w", err)
		}
		if !bytes.Equal(got, d.Block(i)) {
			return fmt.Errorf("recovery: data partition block %d read back differs from what was written", blk)
		}
		if err := p.add(seedimg.BlockSize); err != nil {
			return err
		}
	}
	first := zero
	if len(d.Index) > 0 && d.Index[0] == 0 {
		first = d.Block(0)
	}
	if _, err := dst.WriteAt(first, 0); err != nil {
		return fmt.Errorf("recovery: writing the data superblock: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("recovery: syncing the data partition: %w", err)
	}
	if _, err := dst.ReadAt(got, 0); err != nil || !bytes.Equal(got, first) {
		return fmt.Errorf("recovery: data partition block 0 read back differs from what was written (%v)", err)
	}
	p.finish()
	return nil
}
