package slotwrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
)

// countingSource counts the bytes a Source delivers.
type countingSource struct {
	bundle.Source
	n int64
}

func (c *countingSource) Fetch(ctx context.Context, ranges []bundle.Range, fn func(off int64, b []byte) error) error {
	return c.Source.Fetch(ctx, ranges, func(off int64, b []byte) error {
		c.n += int64(len(b))
		return fn(off, b)
	})
}

// offsetOf is where block i is in the bundle.
func (in *installer) offsetOf(i uint64) (int64, bool) {
	if in.bm == nil {
		return in.b.BlockOffset(i, 0), true
	}
	if !in.bm.Has(i) {
		return 0, false
	}
	return in.b.BlockOffset(i, in.bm.Count(i)), true
}

// fetchBlocks fetches the blocks (ascending) whose bundle bytes ranges
// hold and hands each, whole, to fn.
func (in *installer) fetchBlocks(blocks []uint64, ranges []bundle.Range, fn func(i uint64, b []byte) error) error {
	if len(blocks) == 0 {
		return nil
	}
	k := 0
	var pending []byte
	err := in.view.Fetch(in.ctx, ranges, func(_ int64, piece []byte) error {
		if len(pending) > 0 {
			need := blockSize - len(pending)
			if len(piece) < need {
				pending = append(pending, piece...)
				return nil
			}
			pending = append(pending, piece[:need]...)
			piece = piece[need:]
			if err := fn(blocks[k], pending); err != nil {
				return err
			}
			k++
			pending = pending[:0]
		}
		for len(piece) >= blockSize {
			if err := fn(blocks[k], piece[:blockSize]); err != nil {
				return err
			}
			k++
			piece = piece[blockSize:]
		}
		pending = append(pending, piece...)
		return nil
	})
	if err != nil {
		if k < len(blocks) {
			return fmt.Errorf("slotwrite: fetching root block %d: %w", blocks[k], err)
		}
		return err
	}
	return nil
}

// readBackRest reads back what the root pipeline did not: the dm-verity
// tree (which must equal the one written, itself checked against the
// signed root hash), the kernel and initrd (their digests) and the
// manifest and its signature (the bytes written).
func (in *installer) readBackRest() error {
	o := in.o
	DropCache(o.Target.Root, int64(in.b.Params.HashOffset), int64(len(in.tree)))
	DropCache(o.Target.Slot, 0, o.Target.SlotSize)
	in.setPhase("verify", int64(len(in.tree))+in.ents[0].Size+in.ents[1].Size)
	stored := make([]byte, len(in.tree))
	if err := readFull(o.Target.Root, stored, int64(in.b.Params.HashOffset)); err != nil {
		return fmt.Errorf("slotwrite: reading back the dm-verity tree: %w", err)
	}
	if !bytes.Equal(stored, in.tree) {
		return fmt.Errorf("slotwrite: the dm-verity tree read back differs from the one written: the root partition does not keep its data")
	}
	in.add(int64(len(in.tree)))
	m := in.b.Manifest
	for i, want := range []manifest.Digest{m.Kernel, m.Initrd} {
		e := in.ents[i]
		r := &countingReaderAt{r: io.NewSectionReader(o.Target.Slot, e.Offset, e.Size), add: in.add}
		if err := manifest.Check("the "+e.Name+" read back", io.NewSectionReader(r, 0, e.Size), want); err != nil {
			return fmt.Errorf("slotwrite: %w: the slot partition does not keep its data", err)
		}
	}
	for i, want := range [][]byte{in.b.ManifestBytes, in.b.Sig} {
		e := in.ents[2+i]
		got := make([]byte, len(want))
		if err := readFull(o.Target.Slot, got, e.Offset); err != nil {
			return fmt.Errorf("slotwrite: reading back the %s: %w", e.Name, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("slotwrite: the %s read back differs from what was written: the slot partition does not keep its data", e.Name)
		}
	}
	return nil
}

// countingReaderAt reports the bytes read through it.
type countingReaderAt struct {
	r   io.ReaderAt
	add func(int64)
	mu  sync.Mutex
}

func (c *countingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.mu.Lock()
	c.add(int64(n))
	c.mu.Unlock()
	return n, err
}
