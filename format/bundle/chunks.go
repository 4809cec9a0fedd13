package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Format 2 stores every part as independently compressed chunks (zstd),
// in file order after the header region and the chunk index. A part's
// bytes are cut into chunks of Chunks.ChunkSize bytes (the last one of a
// part shorter); each chunk is one zstd frame. The header's parts keep
// their format-1 meaning — offsets in the uncompressed layout format 1
// would have, sizes and digests of the uncompressed bytes — so that
// everything above the format reads a chunked bundle through View as if it
// were a format-1 one.
const (
	// Compression is the only compression format 2 knows.
	Compression = "zstd"
	// MinChunk and MaxChunk bound Chunks.ChunkSize (a multiple of Align).
	MinChunk = 64 << 10
	MaxChunk = 4 << 20
	// DefaultChunk is the chunk size Write uses (docs/numbers.md has the
	// measurements behind it).
	DefaultChunk = 256 << 10
	// indexEntry is the bytes of one chunk's entry in the index.
	indexEntry = 4
)

// Chunks describes a format-2 bundle's storage: the signed header holds
// it, and through IndexSHA256 the chunk index.
type Chunks struct {
	// Compression is "zstd".
	Compression string `json:"compression"`
	// ChunkSize is the uncompressed bytes of every chunk of a part but its
	// last.
	ChunkSize int64 `json:"chunk_size"`
	// IndexSize and IndexSHA256: the chunk index, right after the header
	// region: the stored (compressed) size of every chunk, u32 LE, parts
	// in file order.
	IndexSize   int64  `json:"index_size"`
	IndexSHA256 string `json:"index_sha256"`
	// StoredSize is the bundle file's size: the chunks end, then zeros
	// up to the next multiple of Align (a block device, a USB stick, is
	// a whole number of sectors).
	StoredSize int64 `json:"stored_size"`
}

// maxStored bounds the stored size of a chunk of n bytes: zstd's worst
// case (raw blocks) plus its frame and block headers, with room.
func maxStored(n int64) int64 { return n + n/128 + 512 }

// chunkCount is the number of chunks of a part of size bytes.
func (c *Chunks) chunkCount(size int64) int64 { return (size + c.ChunkSize - 1) / c.ChunkSize }

// validate checks the chunk description against the parts (already
// checked): its sizes follow from them.
func (c *Chunks) validate(parts []Part, regionSize int64) error {
	if c.Compression != Compression {
		return fmt.Errorf("compression %.20q, this keel reads %q", c.Compression, Compression)
	}
	if c.ChunkSize < MinChunk || c.ChunkSize > MaxChunk || c.ChunkSize%Align != 0 {
		return fmt.Errorf("chunk size %d: want a multiple of %d from %d to %d", c.ChunkSize, Align, MinChunk, MaxChunk)
	}
	var n, most int64
	for _, p := range parts {
		k := c.chunkCount(p.Size)
		n += k
		most += (k-1)*maxStored(c.ChunkSize) + maxStored(p.Size-(k-1)*c.ChunkSize)
	}
	if c.IndexSize != n*indexEntry {
		return fmt.Errorf("chunk index of %d bytes for %d chunks", c.IndexSize, n)
	}
	if b, err := hex.DecodeString(c.IndexSHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("chunk index sha256 %.70q is not 64 hex digits", c.IndexSHA256)
	}
	if low, high := alignUp(regionSize+c.IndexSize+n), alignUp(regionSize+c.IndexSize+most); c.StoredSize < low || c.StoredSize > high || c.StoredSize%Align != 0 {
		return fmt.Errorf("stored size %d: %d chunks of these parts take %d to %d bytes", c.StoredSize, n, low, high)
	}
	return nil
}

// Index is a format-2 bundle's chunk index, checked against the signed
// header: where every chunk of every part is stored.
type Index struct {
	chunkSize int64
	parts     []indexPart
	// stored[k] is where chunk k starts in the file; stored[len-1] is the
	// file's end.
	stored []int64
	// end is the end of the uncompressed layout (the format-1 size).
	end int64
	// chunksEnd is where the last chunk ends (zeros follow up to the
	// file's end).
	chunksEnd int64
}

type indexPart struct {
	Part
	first int // its first chunk
}

// ParseIndex checks the chunk index b (Chunks.IndexSize bytes read right
// after the header region) against the validated header h: its digest,
// every stored size within bounds for its chunk's uncompressed size, and
// their sum the file's size.
func ParseIndex(h *Header, regionSize int64, b []byte) (*Index, error) {
	c := h.Chunks
	if c == nil {
		return nil, errors.New("bundle: a format-1 bundle has no chunk index")
	}
	if s := sha256.Sum256(b); int64(len(b)) != c.IndexSize || hex.EncodeToString(s[:]) != c.IndexSHA256 {
		return nil, fmt.Errorf("%w: the chunk index has sha256 %.16x… (%d bytes), the signed header says %.16s… (%d bytes)", ErrTampered, s[:], len(b), c.IndexSHA256, c.IndexSize)
	}
	x := &Index{chunkSize: c.ChunkSize, end: h.Parts[len(h.Parts)-1].End()}
	off := regionSize + c.IndexSize
	x.stored = append(make([]int64, 0, len(b)/indexEntry+1), off)
	for _, p := range h.Parts {
		x.parts = append(x.parts, indexPart{Part: p, first: len(x.stored) - 1})
		for k := int64(0); k < c.chunkCount(p.Size); k++ {
			e := len(x.stored) - 1
			n := int64(binary.LittleEndian.Uint32(b[e*indexEntry:]))
			if want := min(c.ChunkSize, p.Size-k*c.ChunkSize); n == 0 || n > maxStored(want) {
				return nil, fmt.Errorf("%w: chunk %d (the %s part's chunk %d) is stored in %d bytes: want 1 to %d for %d bytes", ErrCorrupt, e, p.Name, k, n, maxStored(want), want)
			}
			off += n
			x.stored = append(x.stored, off)
		}
	}
	if alignUp(off) != c.StoredSize {
		return nil, fmt.Errorf("%w: the chunks end at %d, the signed header says the file is %d bytes", ErrCorrupt, off, c.StoredSize)
	}
	x.chunksEnd = off
	return x, nil
}

// chunkAt returns the chunk holding logical offset off, with its logical
// range and the part's name; ok false when off is in no part.
func (x *Index) chunkAt(off int64) (k int, start, end int64, part string, ok bool) {
	for _, p := range x.parts {
		if off >= p.Offset && off < p.End() {
			i := (off - p.Offset) / x.chunkSize
			start = p.Offset + i*x.chunkSize
			return p.first + int(i), start, min(start+x.chunkSize, p.End()), p.Name, true
		}
	}
	return 0, 0, 0, "", false
}

// nextPart is the start of the first part after off (or the layout's end).
func (x *Index) nextPart(off int64) int64 {
	for _, p := range x.parts {
		if p.Offset > off {
			return p.Offset
		}
	}
	return x.end
}

// View is the bundle's bytes as format 1 lays them out, read through src
// (the bundle file's source): every Part offset, BlockOffset and Range of
// the header addresses it. For a format-1 bundle (or a description
// without a chunk index, such as the recovery seed's) it is src itself;
// for a format-2 bundle, a Source that fetches from src only the chunks
// holding the bytes asked for, decompresses them (on several cores, never
// to more than the chunk's size) and hands over the bytes asked for. The
// padding between parts reads as zeros. Close does not close src.
func (b *Bundle) View(src Source) Source {
	if b.index == nil {
		return src
	}
	if v, ok := src.(*chunkView); ok && v.ix == b.index {
		return src
	}
	return &chunkView{src: src, ix: b.index}
}

type chunkView struct {
	src Source
	ix  *Index
}

func (v *chunkView) Size() int64 {
	if v.src.Size() < 0 {
		return -1
	}
	return v.ix.end
}

func (v *chunkView) Close() error { return nil }

// viewItem is a piece of the bytes asked for: inside chunk need[chunk], or
// zeros (chunk -1).
type viewItem struct {
	off, end int64
	chunk    int
}

// plan cuts ranges into items and lists the chunks they need, in order.
func (v *chunkView) plan(ranges []Range) (items []viewItem, need []int, starts []int64, err error) {
	for _, r := range ranges {
		for pos := r.Off; pos < r.End(); {
			k, start, end, _, ok := v.ix.chunkAt(pos)
			if !ok {
				if pos >= v.ix.end {
					return nil, nil, nil, fmt.Errorf("the bundle's parts end at %d, a read needs %d: %w", v.ix.end, r.End(), io.ErrUnexpectedEOF)
				}
				if pos < v.ix.parts[0].Offset {
					return nil, nil, nil, fmt.Errorf("bundle: offset %d is in the header region, not in a part", pos)
				}
				e := min(r.End(), v.ix.nextPart(pos))
				items = append(items, viewItem{pos, e, -1})
				pos = e
				continue
			}
			if len(need) == 0 || need[len(need)-1] != k {
				need = append(need, k)
				starts = append(starts, start)
			}
			e := min(r.End(), end)
			items = append(items, viewItem{pos, e, len(need) - 1})
			pos = e
		}
	}
	return items, need, starts, nil
}

// decodeJob is one chunk being decompressed.
type decodeJob struct {
	stored []byte
	out    []byte
	done   chan struct{}
	err    error
}

func (v *chunkView) Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error {
	if err := CheckRanges("the bundle", ranges, v.Size()); err != nil {
		return err
	}
	items, need, starts, err := v.plan(ranges)
	if err != nil {
		return err
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(workers), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(uint64(v.ix.chunkSize)), zstd.WithDecoderMaxWindow(uint64(max(v.ix.chunkSize, zstd.MinWindowSize))))
	if err != nil {
		return fmt.Errorf("bundle: zstd: %w", err)
	}
	jobs := make([]*decodeJob, len(need))
	var wg sync.WaitGroup
	defer func() { wg.Wait(); dec.Close() }()
	inflight, limit := 0, 2*workers+2

	// The stored ranges: adjacent chunks coalesced.
	var phys []Range
	for _, k := range need {
		r := Range{Off: v.ix.stored[k], Len: v.ix.stored[k+1] - v.ix.stored[k]}
		if l := len(phys); l > 0 && phys[l-1].End() == r.Off {
			phys[l-1].Len += r.Len
		} else {
			phys = append(phys, r)
		}
	}

	zeros := make([]byte, Align)
	// Buffers of chunks handed over, reused (the chunks in flight are
	// bounded, and so is the memory).
	var freeOut, freeStored [][]byte
	ei := 0 // the next item to hand over
	// emit hands over the items whose chunks are decompressed, in order;
	// wait: wait for the next chunk (if its bytes arrived).
	emit := func(wait bool) error {
		for ei < len(items) {
			it := items[ei]
			if it.chunk < 0 {
				for o := it.off; o < it.end; o += Align {
					if err := fn(o, zeros[:min(Align, it.end-o)]); err != nil {
						return err
					}
				}
				ei++
				continue
			}
			j := jobs[it.chunk]
			if j == nil {
				return nil
			}
			if wait {
				<-j.done
				wait = false
			} else {
				select {
				case <-j.done:
				default:
					return nil
				}
			}
			if j.err != nil {
				return j.err
			}
			base := starts[it.chunk]
			for o := it.off; o < it.end; o += PieceSize {
				e := min(o+PieceSize, it.end)
				if err := fn(o, j.out[o-base:e-base]); err != nil {
					return err
				}
			}
			ei++
			if ei == len(items) || items[ei].chunk != it.chunk {
				freeOut, freeStored = append(freeOut, j.out[:0]), append(freeStored, j.stored[:0])
				j.out, j.stored = nil, nil
				inflight--
			}
		}
		return nil
	}

	ci := 0 // the chunk (index into need) whose stored bytes arrive
	var cur []byte
	submit := func() {
		k := need[ci]
		_, start, end, part, _ := v.ix.chunkAt(starts[ci])
		j := &decodeJob{stored: cur, done: make(chan struct{})}
		jobs[ci] = j
		var out []byte
		if n := len(freeOut); n > 0 {
			out, freeOut = freeOut[n-1], freeOut[:n-1]
		}
		inflight++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(j.done)
			want := end - start
			if int64(cap(out)) < want {
				out = make([]byte, 0, want)
			}
			out, err := dec.DecodeAll(j.stored, out[:0:want])
			switch {
			case err != nil:
				j.err = fmt.Errorf("%w: chunk %d (the %s part's bytes %d to %d) does not decompress to its %d bytes: %w", ErrTampered, k, part, start-v.partStart(part), end-v.partStart(part), want, err)
			case int64(len(out)) != want:
				j.err = fmt.Errorf("%w: chunk %d (the %s part's bytes %d to %d) decompresses to %d bytes, the signed index says %d", ErrTampered, k, part, start-v.partStart(part), end-v.partStart(part), len(out), want)
			default:
				j.out = out
			}
		}()
		ci++
		cur = nil
	}
	if len(phys) > 0 {
		err = v.src.Fetch(ctx, phys, func(_ int64, b []byte) error {
			for len(b) > 0 {
				n := v.ix.stored[need[ci]+1] - v.ix.stored[need[ci]]
				if cur == nil {
					if k := len(freeStored); k > 0 && int64(cap(freeStored[k-1])) >= n {
						cur, freeStored = freeStored[k-1], freeStored[:k-1]
					} else {
						cur = make([]byte, 0, n)
					}
				}
				c := min(int64(len(b)), n-int64(len(cur)))
				cur = append(cur, b[:c]...)
				b = b[c:]
				if int64(len(cur)) == n {
					submit()
					if err := emit(false); err != nil {
						return err
					}
					for inflight >= limit {
						if err := emit(true); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for ei < len(items) {
		if err := emit(true); err != nil {
			return err
		}
	}
	return nil
}

func (v *chunkView) partStart(name string) int64 {
	for _, p := range v.ix.parts {
		if p.Name == name {
			return p.Offset
		}
	}
	return 0
}

// readerAtView reads a Source (random access) as an io.ReaderAt.
type readerAtView struct{ src Source }

func (r readerAtView) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if size := r.src.Size(); off+int64(len(p)) > size {
		if off >= size {
			return 0, io.EOF
		}
		p = p[:size-off]
	}
	err := r.src.Fetch(context.Background(), []Range{{Off: off, Len: int64(len(p))}}, func(o int64, b []byte) error {
		n += copy(p[o-off:], b)
		return nil
	})
	if err == nil && n < len(p) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// chunker compresses parts into chunks on several cores, for Write.
type chunker struct {
	size   int64
	enc    *zstd.Encoder
	chunks []*storedChunk
	cur    []byte
	sem    chan struct{}
	wg     sync.WaitGroup
}

type storedChunk struct{ b []byte }

func newChunker(size int64) (*chunker, error) {
	workers := max(1, runtime.GOMAXPROCS(0))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(workers),
		zstd.WithWindowSize(int(max(min(size, zstd.MaxWindowSize), zstd.MinWindowSize))))
	if err != nil {
		return nil, fmt.Errorf("bundle: zstd: %w", err)
	}
	return &chunker{size: size, enc: enc, sem: make(chan struct{}, workers)}, nil
}

// write adds bytes of the current part.
func (c *chunker) write(b []byte) {
	for len(b) > 0 {
		if c.cur == nil {
			c.cur = make([]byte, 0, c.size)
		}
		n := min(len(b), int(c.size)-len(c.cur))
		c.cur = append(c.cur, b[:n]...)
		b = b[n:]
		if int64(len(c.cur)) == c.size {
			c.flush()
		}
	}
}

// endPart ends the current part (its last chunk may be short).
func (c *chunker) endPart() {
	if len(c.cur) > 0 {
		c.flush()
	}
}

func (c *chunker) flush() {
	s := &storedChunk{}
	c.chunks = append(c.chunks, s)
	b := c.cur
	c.cur = nil
	c.sem <- struct{}{}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		s.b = c.enc.EncodeAll(b, nil)
		<-c.sem
	}()
}

// finish waits for the chunks and returns the index and the stored size
// of the chunks.
func (c *chunker) finish() (index []byte, stored int64) {
	c.wg.Wait()
	c.enc.Close()
	index = make([]byte, 0, len(c.chunks)*indexEntry)
	for _, s := range c.chunks {
		index = binary.LittleEndian.AppendUint32(index, uint32(len(s.b)))
		stored += int64(len(s.b))
	}
	return index, stored
}

// ChunkOf returns the number of the chunk of a format-2 bundle that holds
// the View offset off, and where that chunk is stored in the file; ok
// false for a format-1 bundle or an offset in no part.
func (b *Bundle) ChunkOf(off int64) (k int, stored Range, ok bool) {
	if b.index == nil {
		return 0, Range{}, false
	}
	k, _, _, _, ok = b.index.chunkAt(off)
	if !ok {
		return 0, Range{}, false
	}
	return k, Range{Off: b.index.stored[k], Len: b.index.stored[k+1] - b.index.stored[k]}, true
}
