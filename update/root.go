package update

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

// countingSource counts the bytes a Source delivers.
type countingSource struct {
	source.Source
	n int64
}

func (c *countingSource) Fetch(ctx context.Context, ranges []source.Range, fn func(off int64, b []byte) error) error {
	return c.Source.Fetch(ctx, ranges, func(off int64, b []byte) error {
		c.n += int64(len(b))
		return fn(off, b)
	})
}

// runWriter collects consecutive blocks and writes them in chunks.
type runWriter struct {
	dev   io.WriterAt
	start uint64 // first block in buf
	buf   []byte
}

func (w *runWriter) put(i uint64, b []byte) error {
	if len(w.buf) > 0 && i != w.start+uint64(len(w.buf))/blockSize {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.start = i
	}
	w.buf = append(w.buf, b...)
	if len(w.buf) >= chunk {
		return w.flush()
	}
	return nil
}

// get returns block j if it is still in the buffer.
func (w *runWriter) get(j uint64) []byte {
	if j >= w.start && j < w.start+uint64(len(w.buf))/blockSize {
		o := (j - w.start) * blockSize
		return w.buf[o : o+blockSize]
	}
	return nil
}

func (w *runWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.dev.WriteAt(w.buf, int64(w.start)*blockSize); err != nil {
		return fmt.Errorf("update: writing root blocks %d-%d: %w", w.start, w.start+uint64(len(w.buf))/blockSize-1, err)
	}
	w.buf = w.buf[:0]
	return nil
}

// writeRoot places every block of the new root, in order: local blocks as
// the plan says (each re-hashed against its leaf before it is written),
// bundle blocks as they arrive (each checked against its leaf). A local
// copy that no longer matches (the medium changed under us) is fetched
// from the bundle afterwards, when the source allows it.
func (in *installer) writeRoot(p *plan) error {
	w := &runWriter{dev: in.o.Target.Root, buf: make([]byte, 0, chunk+blockSize)}
	x := in.t.Hasher()
	zero := make([]byte, blockSize)
	block := make([]byte, blockSize)
	var missed []uint64
	next := uint64(0)
	local := func(upto uint64) error {
		for ; next < upto; next++ {
			i := next
			var b []byte
			switch p.kind[i] {
			case fromInPlace:
				if err := w.flush(); err != nil {
					return err
				}
				in.add(blockSize)
				continue
			case fromZero:
				b = zero
			case fromWritten:
				if b = w.get(p.src[i]); b == nil {
					if err := readFull(in.o.Target.Root, block, int64(p.src[i])*blockSize); err != nil {
						return fmt.Errorf("update: reading back root block %d: %w", p.src[i], err)
					}
					b = block
				}
			case fromTarget:
				if err := readFull(in.o.Target.Root, block, int64(p.src[i])*blockSize); err != nil {
					return fmt.Errorf("update: reading the target's old block %d: %w", p.src[i], err)
				}
				b = block
			case fromActive:
				if err := readFull(in.o.Active.Root, block, int64(p.src[i])*blockSize); err != nil {
					return fmt.Errorf("update: reading the active root's block %d: %w", p.src[i], err)
				}
				b = block
			case fromBundle:
				return fmt.Errorf("update: block %d was not fetched (a bug)", i)
			}
			if !in.t.Check(x, i, b) {
				missed = append(missed, i)
				continue
			}
			if err := w.put(i, b); err != nil {
				return err
			}
			in.add(blockSize)
		}
		return nil
	}
	if err := in.fetchBlocks(p.fetch, p.ranges, func(i uint64, b []byte) error {
		if err := local(i); err != nil {
			return err
		}
		next = i + 1
		if !in.t.Check(x, i, b) {
			return fmt.Errorf("%w: data block %d of version %s does not match its dm-verity leaf (changed after signing, or damaged in transit); nothing was switched: the running slot stays",
				ErrTampered, i, in.b.Header.Version)
		}
		if err := w.put(i, b); err != nil {
			return err
		}
		in.add(blockSize)
		return nil
	}); err != nil {
		return err
	}
	if err := local(in.t.Blocks()); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	if len(missed) == 0 {
		return nil
	}
	// Local copies that did not check: fetch them.
	if in.src.Size() < 0 {
		return fmt.Errorf("update: %d blocks copied from this device no longer match (first: block %d): the device's storage changed under the install; run it again from a file or URL", len(missed), missed[0])
	}
	ranges := make([]source.Range, 0, len(missed))
	for _, i := range missed {
		off, ok := in.offsetOf(i)
		if !ok {
			return fmt.Errorf("%w: block %d is not in this delta bundle, and the device's copy of it no longer matches: install the full bundle", ErrDeltaSource, i)
		}
		ranges = append(ranges, source.Range{Off: off, Len: blockSize})
	}
	return in.fetchBlocks(missed, ranges, func(i uint64, b []byte) error {
		if !in.t.Check(x, i, b) {
			return fmt.Errorf("%w: data block %d of version %s does not match its dm-verity leaf", ErrTampered, i, in.b.Header.Version)
		}
		if err := w.put(i, b); err != nil {
			return err
		}
		return w.flush()
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
func (in *installer) fetchBlocks(blocks []uint64, ranges []source.Range, fn func(i uint64, b []byte) error) error {
	if len(blocks) == 0 {
		return nil
	}
	k := 0
	var pending []byte
	err := in.src.Fetch(in.ctx, ranges, func(_ int64, piece []byte) error {
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
			return fmt.Errorf("update: fetching root block %d: %w", blocks[k], err)
		}
		return err
	}
	return nil
}

// readBack reads the new slot back from the medium and checks it: the
// root's tree rebuilt from its blocks must give the signed root hash and
// equal the tree written; kernel and initrd their digests; the manifest
// and its signature the bytes written.
func (in *installer) readBack() error {
	o := in.o
	dropCache(o.Target.Root)
	dropCache(o.Target.Slot)
	n := int64(in.t.Blocks()) * blockSize
	in.setPhase("verify", n+int64(len(in.tree))+in.ents[0].Size+in.ents[1].Size)
	tree := &memWriter{off: int64(in.b.Params.HashOffset), b: make([]byte, len(in.tree))}
	root, _, err := verity.Build(&countingReaderAt{r: o.Target.Root, add: in.add}, n, tree, in.b.Params)
	if err != nil {
		return fmt.Errorf("update: reading back the new root: %w", err)
	}
	if !bytes.Equal(root, in.b.RootHash) {
		return fmt.Errorf("update: the root read back hashes to %x, the signed manifest says %x: the root partition does not keep its data", root, in.b.RootHash)
	}
	stored := make([]byte, len(in.tree))
	if err := readFull(o.Target.Root, stored, int64(in.b.Params.HashOffset)); err != nil {
		return fmt.Errorf("update: reading back the dm-verity tree: %w", err)
	}
	if !bytes.Equal(stored, in.tree) || !bytes.Equal(tree.b, in.tree) {
		return fmt.Errorf("update: the dm-verity tree read back differs from the one written: the root partition does not keep its data")
	}
	in.add(int64(len(in.tree)))
	m := in.b.Manifest
	for i, want := range []manifest.Digest{m.Kernel, m.Initrd} {
		e := in.ents[i]
		r := &countingReaderAt{r: io.NewSectionReader(o.Target.Slot, e.Offset, e.Size), add: in.add}
		if err := manifest.Check("the "+e.Name+" read back", io.NewSectionReader(r, 0, e.Size), want); err != nil {
			return fmt.Errorf("update: %w: the slot partition does not keep its data", err)
		}
	}
	for i, want := range [][]byte{in.b.ManifestBytes, in.b.Sig} {
		e := in.ents[2+i]
		got := make([]byte, len(want))
		if err := readFull(o.Target.Slot, got, e.Offset); err != nil {
			return fmt.Errorf("update: reading back the %s: %w", e.Name, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("update: the %s read back differs from what was written: the slot partition does not keep its data", e.Name)
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

// memWriter collects the tree verity.Build writes at off.
type memWriter struct {
	off int64
	b   []byte
}

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) {
	off -= m.off
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("update: verity tree write [%d, +%d) outside the tree", off+m.off, len(p))
	}
	return copy(m.b[off:], p), nil
}
