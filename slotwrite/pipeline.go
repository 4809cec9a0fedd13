package slotwrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/verity"
)

// The root is written by a pipeline, so that fetching, hashing, writing
// and reading back overlap:
//
//	producer  (this goroutine) places the blocks in order as the plan says:
//	          local copies read from the device, bundle blocks as the
//	          source delivers them; it packs them into chunks of
//	          consecutive blocks
//	checkers  (one per CPU) check every block of a chunk against its leaf
//	writer    writes the chunks in order and hands each region, with the
//	          chunks written in it, to the reader
//	reader    writes each region back (sync_file_range; the install's
//	          Sync makes it durable), drops it from the page cache and
//	          reads it back from the medium: a block written
//	          must read back as the bytes written (checked against its
//	          leaf before the write), a block the target already held is
//	          checked against its leaf
//
// So every block is hashed once, and the read-back costs a comparison.
//
// A bundle block that does not match its leaf stops the install
// (ErrTampered, naming the block). A local copy that does not match is not
// written; it is fetched from the bundle at the end ("missed").
const (
	chunkBlocks  = 256  // 1 MiB
	regionBlocks = 2048 // 8 MiB between syncs and read-backs
	regionChunks = regionBlocks / chunkBlocks
	// chunksInUse bounds the memory (32 MiB): the chunks being filled,
	// checked and written, and those of three regions: collected by the
	// writer, waiting for the reader, being read back.
	chunksInUse = 8 + 3*regionChunks
)

// region is blocks [a, b), synced, with the chunks written in it.
type region struct {
	a, b   uint64
	chunks []*chunk
}

type chunk struct {
	seq   int
	start uint64
	buf   []byte
	kind  []from
	bad   []bool // set by the checkers: a local copy that did not match
}

func (c *chunk) n() uint64   { return uint64(len(c.kind)) }
func (c *chunk) end() uint64 { return c.start + c.n() }

type pipeline struct {
	in     *installer
	ctx    context.Context
	cancel context.CancelCauseFunc
	t      *verity.Tree
	dev    Device
	free   chan []byte
	check  chan *chunk
	write  chan *chunk
	region chan region
	cur    *chunk
	seq    int
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	written uint64          // every chunk below this block is written
	missed  map[uint64]bool // local copies that did not check
}

func (in *installer) newPipeline() *pipeline {
	ctx, cancel := context.WithCancelCause(in.ctx)
	p := &pipeline{in: in, ctx: ctx, cancel: cancel, t: in.t, dev: in.o.Target.Root,
		free: make(chan []byte, chunksInUse), check: make(chan *chunk, chunksInUse),
		write: make(chan *chunk, chunksInUse), region: make(chan region, 1), missed: map[uint64]bool{}}
	p.cond = sync.NewCond(&p.mu)
	for i := 0; i < chunksInUse; i++ {
		p.free <- make([]byte, 0, chunkBlocks*blockSize)
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	var checkers sync.WaitGroup
	for w := 0; w < workers; w++ {
		checkers.Add(1)
		go func() { defer checkers.Done(); p.checker() }()
	}
	p.wg.Add(2)
	go func() { checkers.Wait(); close(p.write) }()
	go func() { defer p.wg.Done(); p.writer() }()
	go func() { defer p.wg.Done(); p.reader() }()
	return p
}

// fail stops the pipeline with err (the first error wins).
func (p *pipeline) fail(err error) {
	p.cancel(err)
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pipeline) err() error {
	if err := context.Cause(p.ctx); err != nil && p.ctx.Err() != nil {
		return err
	}
	return nil
}

// put adds block i (b is copied) to the current chunk.
func (p *pipeline) put(i uint64, b []byte, k from) error {
	if p.cur != nil && (i != p.cur.end() || p.cur.n() == chunkBlocks) {
		if err := p.send(); err != nil {
			return err
		}
	}
	if p.cur == nil {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.ctx.Done():
			return p.err()
		}
		p.cur = &chunk{seq: p.seq, start: i, buf: buf[:0]}
		p.seq++
	}
	p.cur.buf = append(p.cur.buf, b...)
	p.cur.kind = append(p.cur.kind, k)
	return nil
}

// putInPlace adds block i, which the target already holds where it
// belongs, to the current chunk without its bytes: it is not written, and
// read back and checked against its leaf with its neighbours (so that the
// blocks already in place do not cut the chunks short).
func (p *pipeline) putInPlace(i uint64) error {
	if p.cur == nil || i != p.cur.end() || p.cur.n() == chunkBlocks {
		// Only inside a run: a chunk never starts with a block in place.
		if p.cur != nil {
			return p.send()
		}
		return nil
	}
	p.cur.buf = p.cur.buf[:len(p.cur.buf)+blockSize]
	p.cur.kind = append(p.cur.kind, fromInPlace)
	return nil
}

// send hands the current chunk to the checkers.
func (p *pipeline) send() error {
	if p.cur == nil {
		return nil
	}
	c := p.cur
	p.cur = nil
	select {
	case p.check <- c:
		return nil
	case <-p.ctx.Done():
		return p.err()
	}
}

// get returns block j if it is in the chunk being filled.
func (p *pipeline) get(j uint64) []byte {
	if c := p.cur; c != nil && j >= c.start && j < c.end() {
		o := (j - c.start) * blockSize
		return c.buf[o : o+blockSize]
	}
	return nil
}

// waitWritten waits until block j (placed earlier) is on the target, and
// reports whether it is there (false: its local copy did not check).
func (p *pipeline) waitWritten(j uint64) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.written <= j && p.ctx.Err() == nil {
		p.cond.Wait()
	}
	if p.ctx.Err() != nil {
		return false, p.err()
	}
	return !p.missed[j], nil
}

// close sends the last chunk, waits for the pipeline and returns the
// blocks whose local copies did not check, ascending.
func (p *pipeline) close() ([]uint64, error) {
	err := p.send()
	close(p.check)
	p.wg.Wait()
	if err == nil {
		err = p.err()
	}
	if err != nil {
		return nil, err
	}
	var missed []uint64
	for i := range p.missed {
		missed = append(missed, i)
	}
	sort.Slice(missed, func(a, b int) bool { return missed[a] < missed[b] })
	return missed, nil
}

func (p *pipeline) checker() {
	x := p.t.Hasher()
	for c := range p.check {
		if p.ctx.Err() != nil {
			continue // drain
		}
		for k := uint64(0); k < c.n(); k++ {
			if c.kind[k] == fromZero || c.kind[k] == fromInPlace {
				continue // the zero block's digest is the leaf (the plan compared them); a block in place is checked when read back
			}
			i := c.start + k
			if p.t.Check(x, i, c.buf[k*blockSize:(k+1)*blockSize]) {
				continue
			}
			if c.kind[k] == fromBundle {
				p.fail(fmt.Errorf("%w: data block %d of version %s does not match its dm-verity leaf (changed after signing, or damaged on the way)",
					ErrTampered, i, p.in.b.Header.Version))
				break
			}
			if c.bad == nil {
				c.bad = make([]bool, c.n())
			}
			c.bad[k] = true
		}
		select {
		case p.write <- c:
		case <-p.ctx.Done():
		}
	}
}

func (p *pipeline) writer() {
	defer close(p.region)
	pending := map[int]*chunk{}
	next, synced := 0, uint64(0)
	var done []*chunk // written since the last sync
	for c := range p.write {
		if p.ctx.Err() != nil {
			continue
		}
		pending[c.seq] = c
		for c := pending[next]; c != nil; c = pending[next] {
			delete(pending, next)
			next++
			if err := p.writeChunk(c); err != nil {
				p.fail(err)
				break
			}
			done = append(done, c)
			// A region ends after regionBlocks blocks, or after as many
			// chunks (short chunks, between blocks already in place):
			// the chunks it holds are bounded either way.
			if c.end()-synced >= regionBlocks || len(done) >= regionChunks {
				if err := p.flush(region{synced, c.end(), done}); err != nil {
					p.fail(err)
					break
				}
				synced, done = c.end(), nil
			}
		}
	}
	if p.ctx.Err() == nil {
		if err := p.flush(region{synced, p.t.Blocks(), done}); err != nil {
			p.fail(err)
		}
	}
}

// writeChunk writes the chunk's good blocks, in runs.
func (p *pipeline) writeChunk(c *chunk) error {
	run := uint64(0)
	var missed []uint64
	for k := uint64(0); k <= c.n(); k++ {
		bad := k < c.n() && c.bad != nil && c.bad[k]
		if k < c.n() && !bad && c.kind[k] != fromInPlace {
			continue
		}
		if k > run {
			if _, err := p.dev.WriteAt(c.buf[run*blockSize:k*blockSize], int64(c.start+run)*blockSize); err != nil {
				return fmt.Errorf("slotwrite: writing root blocks %d-%d: %w", c.start+run, c.start+k-1, err)
			}
		}
		if bad {
			missed = append(missed, c.start+k)
		}
		run = k + 1
	}
	p.mu.Lock()
	for _, i := range missed {
		p.missed[i] = true
	}
	p.written = c.end()
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// flush hands region r to the reader (which writes it back and reads it
// back while the writer goes on).
func (p *pipeline) flush(r region) error {
	if r.b <= r.a {
		return nil
	}
	select {
	case p.region <- r:
		return nil
	case <-p.ctx.Done():
		return p.err()
	}
}

// reader reads the regions back from the medium and checks every block,
// then frees the region's chunks.
func (p *pipeline) reader() {
	x := p.t.Hasher()
	buf := make([]byte, chunkBlocks*blockSize)
	for r := range p.region {
		if p.ctx.Err() == nil {
			off, n := int64(r.a)*blockSize, int64(r.b-r.a)*blockSize
			err := syncRange(p.dev, off, n)
			if err != nil {
				err = fmt.Errorf("slotwrite: writing back root blocks %d-%d: %w", r.a, r.b-1, err)
			} else {
				DropCache(p.dev, off, n)
				err = p.readBack(x, buf, r)
			}
			if err != nil {
				p.fail(err)
			}
		}
		for _, c := range r.chunks {
			p.free <- c.buf
		}
	}
}

func (p *pipeline) readBack(x *verity.Hasher, buf []byte, r region) error {
	ci := 0 // the first chunk that may hold the block
	for first := r.a; first < r.b; first += chunkBlocks {
		n := min(chunkBlocks, r.b-first)
		blk := buf[:n*blockSize]
		if err := readFull(p.dev, blk, int64(first)*blockSize); err != nil {
			return fmt.Errorf("slotwrite: reading back root blocks %d-%d: %w", first, first+n-1, err)
		}
		for k := uint64(0); k < n; k++ {
			i := first + k
			got := blk[k*blockSize : (k+1)*blockSize]
			for ci < len(r.chunks) && r.chunks[ci].end() <= i {
				ci++
			}
			if ci < len(r.chunks) && r.chunks[ci].start <= i {
				c := r.chunks[ci]
				o := (i - c.start) * blockSize
				if c.bad != nil && c.bad[i-c.start] {
					continue // not written: fetched and checked at the end
				}
				if c.kind[i-c.start] == fromInPlace {
					if p.t.Check(x, i, got) {
						continue // the target already held it
					}
				} else if bytes.Equal(got, c.buf[o:o+blockSize]) {
					continue
				}
			} else if p.t.Check(x, i, got) {
				continue // the target already held it
			}
			return fmt.Errorf("slotwrite: root block %d read back differs from what was written (or does not match its dm-verity leaf): the root partition does not keep its data", i)
		}
	}
	return nil
}

// writeRoot places every block of the new root through the pipeline, then
// fetches the blocks whose local copies did not check.
func (in *installer) writeRoot(p *plan) error {
	pl := in.newPipeline()
	zero := make([]byte, blockSize)
	block := make([]byte, blockSize)
	next := uint64(0)
	local := func(upto uint64) error {
		for ; next < upto; next++ {
			i := next
			k := p.kind[i]
			var b []byte
			switch k {
			case fromInPlace:
				if err := pl.putInPlace(i); err != nil {
					return err
				}
				in.add(blockSize)
				continue
			case fromZero:
				b = zero
			case fromWritten:
				j := p.src[i]
				if p.kind[j] != fromInPlace {
					if b = pl.get(j); b != nil {
						break
					}
					ok, err := pl.waitWritten(j)
					if err != nil {
						return err
					}
					if !ok {
						b = zero // j is missed: i cannot check either, and is fetched too
						k = fromTarget
						break
					}
				}
				if err := readFull(in.o.Target.Root, block, int64(j)*blockSize); err != nil {
					return fmt.Errorf("slotwrite: reading back root block %d: %w", j, err)
				}
				b = block
			case fromTarget:
				if err := readFull(in.o.Target.Root, block, int64(p.src[i])*blockSize); err != nil {
					return fmt.Errorf("slotwrite: reading the target's old block %d: %w", p.src[i], err)
				}
				b = block
			case fromActive:
				if err := readFull(in.o.Active.Root, block, int64(p.src[i])*blockSize); err != nil {
					return fmt.Errorf("slotwrite: reading the active root's block %d: %w", p.src[i], err)
				}
				b = block
			case fromBundle:
				return fmt.Errorf("slotwrite: block %d was not fetched (a bug)", i)
			}
			if err := pl.put(i, b, k); err != nil {
				return err
			}
			in.add(blockSize)
		}
		return nil
	}
	err := in.fetchBlocks(p.fetch, p.ranges, func(i uint64, b []byte) error {
		if err := local(i); err != nil {
			return err
		}
		next = i + 1
		if err := pl.put(i, b, fromBundle); err != nil {
			return err
		}
		in.add(blockSize)
		return nil
	})
	if err == nil {
		err = local(in.t.Blocks())
	}
	if err != nil {
		pl.fail(err)
	}
	missed, perr := pl.close()
	if perr != nil {
		// The pipeline's own error (a tampered block) explains a failed
		// fetch callback better than "context canceled".
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(perr, ErrTampered) {
			err = perr
		}
	}
	if err != nil {
		return err
	}
	return in.fetchMissed(missed)
}

// fetchMissed fetches the blocks whose local copies did not check, writes
// them, syncs and reads them back.
func (in *installer) fetchMissed(missed []uint64) error {
	if len(missed) == 0 {
		return nil
	}
	if in.src.Size() < 0 {
		return fmt.Errorf("slotwrite: %d blocks copied from this device no longer match (first: block %d): the device's storage changed under the install; run it again from a file or URL", len(missed), missed[0])
	}
	ranges := make([]bundle.Range, 0, len(missed))
	for _, i := range missed {
		off, ok := in.offsetOf(i)
		if !ok {
			return fmt.Errorf("%w: block %d is not in this delta bundle, and the device's copy of it no longer matches: install the full bundle", ErrDeltaSource, i)
		}
		ranges = append(ranges, bundle.Range{Off: off, Len: blockSize})
	}
	x := in.t.Hasher()
	dev := in.o.Target.Root
	if err := in.fetchBlocks(missed, ranges, func(i uint64, b []byte) error {
		if !in.t.Check(x, i, b) {
			return fmt.Errorf("%w: data block %d of version %s does not match its dm-verity leaf", ErrTampered, i, in.b.Header.Version)
		}
		_, err := dev.WriteAt(b, int64(i)*blockSize)
		return err
	}); err != nil {
		return err
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("slotwrite: syncing the target's root partition: %w", err)
	}
	b := make([]byte, blockSize)
	for _, i := range missed {
		DropCache(dev, int64(i)*blockSize, blockSize)
		if err := readFull(dev, b, int64(i)*blockSize); err != nil {
			return fmt.Errorf("slotwrite: reading back root block %d: %w", i, err)
		}
		if !in.t.Check(x, i, b) {
			return fmt.Errorf("slotwrite: root block %d read back does not match its dm-verity leaf: the root partition does not keep its data", i)
		}
	}
	return nil
}
