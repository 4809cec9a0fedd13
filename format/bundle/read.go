package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Bundle is a bundle whose header and manifest verified: what Open read.
type Bundle struct {
	Header *Header
	// KeyID is the trusted key whose signature of the header verified.
	KeyID string
	// Manifest is the slot's verified manifest; ManifestBytes and Sig its
	// exact bytes and signature envelope.
	Manifest      *manifest.Manifest
	ManifestBytes []byte
	Sig           []byte
	// Params and RootHash are the root's dm-verity parameters.
	Params   verity.Params
	RootHash []byte
	// index is a format-2 bundle's chunk index (View).
	index *Index
}

// Open reads and verifies the start of the bundle in src: the preamble,
// the header's signature against the trusted keys and the header itself,
// that it is for board (manifest.AnyBoard: any; host tools only), then the
// manifest and its signature (digests from the header), the manifest's
// signature (role slot, the same board) and that it agrees with the
// header. It reads only those first parts; nothing it returns was
// unauthenticated. Errors wrap ErrNotBundle, ErrCorrupt, ErrTampered,
// ErrWrongBoard or package manifest's signature errors.
func Open(ctx context.Context, src Source, trusted []manifest.PublicKey, board string) (*Bundle, error) {
	if board == "" {
		return nil, errors.New("bundle: no board to check the bundle against")
	}
	pre, err := fetch(ctx, src, 0, Align, "the preamble")
	if err != nil {
		return nil, err
	}
	hl, sl, err := ParsePreamble(pre)
	if err != nil {
		return nil, err
	}
	region := RegionSize(hl, sl)
	if size := src.Size(); size >= 0 && size < region {
		return nil, fmt.Errorf("%w: the file is %d bytes, its header needs %d: truncated", ErrCorrupt, size, region)
	}
	buf := pre
	if region > Align {
		rest, err := fetch(ctx, src, Align, region-Align, "the header")
		if err != nil {
			return nil, err
		}
		buf = append(buf, rest...)
	}
	hb := buf[PreambleSize : PreambleSize+hl]
	sig := buf[PreambleSize+hl : PreambleSize+hl+sl]
	if !allZero(buf[PreambleSize+hl+sl:]) {
		return nil, fmt.Errorf("%w: the padding after the header is not zero", ErrCorrupt)
	}
	h, id, err := ParseHeader(hb, sig, trusted, region)
	if err != nil {
		return nil, err
	}
	if f := PreambleFormat(pre); f != h.Format {
		return nil, fmt.Errorf("%w: the preamble says format %d, the signed header %d", ErrCorrupt, f, h.Format)
	}
	if board != manifest.AnyBoard && h.Compatible != board {
		return nil, fmt.Errorf("%w: it is for %s, this is %s", ErrWrongBoard, h.Compatible, board)
	}
	if size := src.Size(); size >= 0 && size != h.Size() {
		return nil, fmt.Errorf("%w: the file is %d bytes, its signed header says %d: truncated or padded", ErrCorrupt, size, h.Size())
	}
	b := &Bundle{Header: h, KeyID: id}
	if c := h.Chunks; c != nil {
		ib, err := fetch(ctx, src, region, c.IndexSize, "the chunk index")
		if err != nil {
			return nil, err
		}
		if b.index, err = ParseIndex(h, region, ib); err != nil {
			return nil, err
		}
	}
	mp, _ := h.Part(PartManifest)
	sp, _ := h.Part(PartSig)
	parts, err := ReadParts(ctx, b.View(src), mp, sp)
	if err != nil {
		return nil, err
	}
	b.ManifestBytes, b.Sig = parts[0], parts[1]
	want := manifest.Expect{Compatible: board, Role: manifest.RoleSlot}
	if b.Manifest, err = manifest.VerifyFor(b.ManifestBytes, b.Sig, trusted, want); err != nil {
		return nil, fmt.Errorf("bundle: the slot's manifest: %w", err)
	}
	if err := h.CheckManifest(b.Manifest); err != nil {
		return nil, err
	}
	if b.Params, err = Params(b.Manifest.Root.Verity); err != nil {
		return nil, err
	}
	b.RootHash = RootHash(b.Manifest.Root.Verity)
	return b, nil
}

// fetch reads n bytes at off.
func fetch(ctx context.Context, src Source, off, n int64, what string) ([]byte, error) {
	b := make([]byte, 0, n)
	err := src.Fetch(ctx, []Range{{Off: off, Len: n}}, func(_ int64, p []byte) error {
		b = append(b, p...)
		return nil
	})
	if err != nil {
		return nil, readError(what, err)
	}
	return b, nil
}

// readError is the error of reading what from the source: a bundle that
// ends early is named truncated.
func readError(what string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: reading %s: the bundle is truncated: %w", ErrCorrupt, what, err)
	}
	return fmt.Errorf("bundle: reading %s: %w", what, err)
}

// ReadParts reads the given parts (in file order) from src (a bundle's
// View) into memory and checks
// each against its digest in the header, and its padding (up to the next
// Align boundary) for zeros: no byte of a bundle is left unchecked.
func ReadParts(ctx context.Context, src Source, parts ...Part) ([][]byte, error) {
	out := make([][]byte, len(parts))
	ranges := make([]Range, len(parts))
	for i, p := range parts {
		out[i] = make([]byte, 0, p.Size)
		ranges[i] = padded(p)
	}
	i := 0
	err := src.Fetch(ctx, ranges, func(off int64, b []byte) error {
		for off >= ranges[i].End() {
			i++
		}
		return collect(parts[i], &out[i], off, b)
	})
	if err != nil {
		return nil, readError("the "+parts[i].Name+" part", err)
	}
	for i, p := range parts {
		if err := CheckPart(p, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// padded is the part with its padding.
func padded(p Part) Range {
	return Range{Off: p.Offset, Len: alignUp(p.End()) - p.Offset}
}

// collect appends the piece b (at bundle offset off) of part p's padded
// range to *dst, and checks the padding in it is zero.
func collect(p Part, dst *[]byte, off int64, b []byte) error {
	if n := p.End() - off; n < int64(len(b)) {
		if n > 0 {
			*dst = append(*dst, b[:n]...)
			b = b[n:]
		}
		if !allZero(b) {
			return fmt.Errorf("%w: the padding after the %s part is not zero", ErrTampered, p.Name)
		}
		return nil
	}
	*dst = append(*dst, b...)
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// CheckPart checks b against the part's digest.
func CheckPart(p Part, b []byte) error {
	s := sha256.Sum256(b)
	return checkSum(p, s[:], int64(len(b)))
}

func checkSum(p Part, sum []byte, n int64) error {
	if got := hex.EncodeToString(sum); got != p.SHA256 || n != p.Size {
		return fmt.Errorf("%w: the %s part has sha256 %.16s… (%d bytes), the signed header says %.16s… (%d bytes)", ErrTampered, p.Name, got, n, p.SHA256, p.Size)
	}
	return nil
}

// PartHash checks a part streamed in pieces.
type PartHash struct {
	p Part
	h hash.Hash
	n int64
}

// NewPartHash starts checking part p.
func NewPartHash(p Part) *PartHash { return &PartHash{p: p, h: sha256.New()} }

// Write adds bytes of the part, in order.
func (x *PartHash) Write(b []byte) (int, error) {
	x.n += int64(len(b))
	return x.h.Write(b)
}

// Check reports whether the bytes written are the part.
func (x *PartHash) Check() error { return checkSum(x.p, x.h.Sum(nil), x.n) }

// ReadTree reads the tree part, checks its digest, and checks it against
// the manifest's root hash. src is the bundle file's source (or its View).
func (b *Bundle) ReadTree(ctx context.Context, src Source) (*verity.Tree, []byte, error) {
	tp, _ := b.Header.Part(PartTree)
	parts, err := ReadParts(ctx, b.View(src), tp)
	if err != nil {
		return nil, nil, err
	}
	t, err := verity.ParseTree(parts[0], b.Params, b.RootHash)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrTampered, err)
	}
	return t, parts[0], nil
}

// ReadBlockMap reads a static delta's block map (nil for a full bundle)
// and checks that it marks exactly Delta.Blocks blocks. src is the bundle
// file's source (or its View).
func (b *Bundle) ReadBlockMap(ctx context.Context, src Source) (BlockMap, error) {
	bp, ok := b.Header.Part(PartBlockMap)
	if !ok {
		return nil, nil
	}
	parts, err := ReadParts(ctx, b.View(src), bp)
	if err != nil {
		return nil, err
	}
	m := BlockMap(parts[0])
	if n := m.Count(b.Header.DataBlocks); n != b.Header.Delta.Blocks {
		return nil, fmt.Errorf("%w: the block map marks %d blocks, the header says %d", ErrCorrupt, n, b.Header.Delta.Blocks)
	}
	for i := b.Header.DataBlocks; i < uint64(len(m))*8; i++ {
		if m.Has(i) {
			return nil, fmt.Errorf("%w: the block map marks block %d of %d", ErrCorrupt, i, b.Header.DataBlocks)
		}
	}
	return m, nil
}

// BlockOffset is where data block i is in the bundle's View (ok false when a
// static delta does not carry it). rank, for a delta, is the number of
// carried blocks before i (the caller counts as it walks the blocks).
func (b *Bundle) BlockOffset(i, rank uint64) int64 {
	dp, _ := b.Header.Part(PartData)
	if b.Header.Delta == nil {
		return dp.Offset + int64(i)*Align
	}
	return dp.Offset + int64(rank)*Align
}

// Verify checks the whole bundle in src and writes nothing: Open, then the
// kernel and initrd against their digests, the tree against the root
// hash, a delta's block map, every data block against its leaf, and the
// data part against its digest. A bad data block is named by its number.
func Verify(ctx context.Context, src Source, trusted []manifest.PublicKey, board string) (*Bundle, error) {
	b, err := Open(ctx, src, trusted, board)
	if err != nil {
		return nil, err
	}
	raw := src
	src = b.View(src)
	h := b.Header
	kp, _ := h.Part(PartKernel)
	ip, _ := h.Part(PartInitrd)
	for _, p := range []Part{kp, ip} {
		x := NewPartHash(p)
		if err := src.Fetch(ctx, []Range{padded(p)}, func(off int64, piece []byte) error {
			var keep []byte
			if err := collect(p, &keep, off, piece); err != nil {
				return err
			}
			_, err := x.Write(keep)
			return err
		}); err != nil {
			return nil, readError("the "+p.Name+" part", err)
		}
		if err := x.Check(); err != nil {
			return nil, err
		}
	}
	t, _, err := b.ReadTree(ctx, src)
	if err != nil {
		return nil, err
	}
	m, err := b.ReadBlockMap(ctx, src)
	if err != nil {
		return nil, err
	}
	dp, _ := h.Part(PartData)
	dx := NewPartHash(dp)
	hx := t.Hasher()
	next := uint64(0) // the data block the next carried block is
	advance := func() {
		for m != nil && next < h.DataBlocks && !m.Has(next) {
			next++
		}
	}
	advance()
	var pending []byte
	err = src.Fetch(ctx, []Range{{Off: dp.Offset, Len: dp.Size}}, func(_ int64, piece []byte) error {
		dx.Write(piece)
		if len(pending) > 0 { // pieces are Align multiples; kept for safety
			piece = append(pending, piece...)
			pending = nil
		}
		for len(piece) >= Align {
			if next >= h.DataBlocks {
				return fmt.Errorf("%w: more data blocks than the header lists", ErrCorrupt)
			}
			if !t.Check(hx, next, piece[:Align]) {
				return fmt.Errorf("%w: data block %d does not match its dm-verity leaf", ErrTampered, next)
			}
			piece = piece[Align:]
			next++
			advance()
		}
		pending = append(pending, piece...)
		return nil
	})
	if err != nil {
		return nil, readError("the data part", err)
	}
	if err := dx.Check(); err != nil {
		return nil, err
	}
	// Format 2: the zeros after the last chunk.
	if x := b.index; x != nil && x.chunksEnd < h.Size() {
		pad, err := fetch(ctx, raw, x.chunksEnd, h.Size()-x.chunksEnd, "the padding after the last chunk")
		if err != nil {
			return nil, err
		}
		if !allZero(pad) {
			return nil, fmt.Errorf("%w: the padding after the last chunk is not zero", ErrTampered)
		}
	}
	return b, nil
}
