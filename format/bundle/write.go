package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Input is one slot's software, for Write.
type Input struct {
	// Manifest and Sig are the slot's manifest (role slot, with a
	// dm-verity root whose tree follows the data) and its signature
	// envelope, as the slot container will hold them.
	Manifest, Sig []byte
	Kernel        []byte
	Initrd        []byte
	// Root holds the root file system's data blocks from offset 0 and its
	// dm-verity tree at the manifest's hash offset: the bytes of a root
	// partition.
	Root io.ReaderAt
	// Delta and Map make a static delta bundle: only the blocks Map marks
	// are written. Both nil: a full bundle.
	Delta *Delta
	Map   BlockMap
	// Plain writes format 1 (the parts stored as they are), which keels
	// before format 2 read; else format 2, its parts in zstd chunks of
	// ChunkSize bytes (0: DefaultChunk).
	Plain     bool
	ChunkSize int64
}

// Write writes the bundle of in to w, its header signed with keys, and
// returns the header. It checks what it packs: the manifest parses and is
// a slot's, the kernel and initrd match its digests, the tree matches the
// root hash, and every data block its leaf; it cannot check the manifest's
// signature (no public keys here: `keel bundle verify` does). A format-2
// bundle is compressed in memory before it is written (its header, first,
// holds the compressed sizes): about the stored size of the bundle.
func Write(w io.Writer, in Input, keys ...manifest.PrivateKey) (*Header, error) {
	if len(keys) == 0 {
		return nil, errors.New("bundle: no signing key given")
	}
	m, err := manifest.Parse(in.Manifest)
	if err != nil {
		return nil, fmt.Errorf("bundle: the slot's manifest: %w", err)
	}
	if m.Role != manifest.RoleSlot {
		return nil, fmt.Errorf("bundle: the manifest is a %s's; a bundle carries a slot's", m.Role)
	}
	if len(in.Sig) == 0 {
		return nil, errors.New("bundle: the slot's manifest is unsigned: keel-init would refuse it; sign it first")
	}
	if m.Root.Verity == nil {
		return nil, errors.New("bundle: the manifest has no dm-verity root: keel bundles carry verity-protected roots only")
	}
	for _, c := range []struct {
		what string
		b    []byte
		d    manifest.Digest
	}{{"kernel", in.Kernel, m.Kernel}, {"initrd", in.Initrd, m.Initrd}} {
		if err := manifest.Check(c.what, bytes.NewReader(c.b), c.d); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	p, err := Params(m.Root.Verity)
	if err != nil {
		return nil, err
	}
	treeSize, err := p.TreeSize()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	tree := make([]byte, treeSize)
	if _, err := in.Root.ReadAt(tree, int64(p.HashOffset)); err != nil && !(errors.Is(err, io.EOF) && treeSize == 0) {
		return nil, fmt.Errorf("bundle: reading the root's verity tree at %d: %w", p.HashOffset, err)
	}
	t, err := verity.ParseTree(tree, p, RootHash(m.Root.Verity))
	if err != nil {
		return nil, fmt.Errorf("bundle: the root's verity tree: %w", err)
	}
	if (in.Delta == nil) != (in.Map == nil) {
		return nil, errors.New("bundle: a delta needs both Delta and Map")
	}
	if in.Map != nil && uint64(len(in.Map)) != (p.DataBlocks+7)/8 {
		return nil, fmt.Errorf("bundle: block map of %d bytes for %d blocks", len(in.Map), p.DataBlocks)
	}
	has := func(i uint64) bool { return in.Map == nil || in.Map.Has(i) }
	format := FormatChunked
	var ck *chunker
	if in.Plain {
		format = FormatPlain
	} else {
		cs := in.ChunkSize
		if cs == 0 {
			cs = DefaultChunk
		}
		if cs < MinChunk || cs > MaxChunk || cs%Align != 0 {
			return nil, fmt.Errorf("bundle: chunk size %d: want a multiple of %d from %d to %d", cs, Align, MinChunk, MaxChunk)
		}
		if ck, err = newChunker(cs); err != nil {
			return nil, err
		}
	}

	contents := []struct {
		name string
		b    []byte
	}{{PartManifest, in.Manifest}, {PartSig, in.Sig}, {PartKernel, in.Kernel}, {PartInitrd, in.Initrd}, {PartTree, tree}}
	if in.Map != nil {
		contents = append(contents, struct {
			name string
			b    []byte
		}{PartBlockMap, in.Map})
	}
	if ck != nil {
		for _, c := range contents {
			ck.write(c.b)
			ck.endPart()
		}
	}

	// The data part's digest, checking every block against its leaf.
	dh := sha256.New()
	x := t.Hasher()
	buf := make([]byte, 256*Align)
	carried := uint64(0)
	if err := eachBlock(in.Root, p.DataBlocks, buf, func(i uint64, b []byte) error {
		if !t.Check(x, i, b) {
			return fmt.Errorf("bundle: root data block %d does not match its dm-verity leaf", i)
		}
		if has(i) {
			dh.Write(b)
			if ck != nil {
				ck.write(b)
			}
			carried++
		}
		return nil
	}); err != nil {
		if ck != nil {
			ck.finish()
		}
		return nil, err
	}
	var index []byte
	var stored int64
	if ck != nil {
		ck.endPart()
		index, stored = ck.finish()
	}
	if in.Delta != nil {
		in.Delta.Blocks = carried
		if carried == 0 {
			return nil, errors.New("bundle: the delta carries no block; the device has everything: ship the full bundle's header only? (use the full bundle)")
		}
	}

	h := &Header{Format: format, Compatible: m.Compatible, Version: m.Version,
		SecurityVersion: m.SecurityVersion, DataBlocks: p.DataBlocks, Delta: in.Delta}
	// The region's size depends on the header's length, which depends on
	// the offsets: settle it by growing the region until it holds.
	region := int64(Align)
	var hb, sig []byte
	for {
		h.Parts = h.Parts[:0]
		off := region
		for _, c := range contents {
			s := sha256.Sum256(c.b)
			h.Parts = append(h.Parts, Part{Name: c.name, Offset: off, Size: int64(len(c.b)), SHA256: hex.EncodeToString(s[:])})
			off = alignUp(off + int64(len(c.b)))
		}
		h.Parts = append(h.Parts, Part{Name: PartData, Offset: off, Size: int64(carried) * Align, SHA256: hex.EncodeToString(dh.Sum(nil))})
		if ck != nil {
			s := sha256.Sum256(index)
			h.Chunks = &Chunks{Compression: Compression, ChunkSize: ck.size, IndexSize: int64(len(index)),
				IndexSHA256: hex.EncodeToString(s[:]), StoredSize: alignUp(region + int64(len(index)) + stored)}
		}
		if hb, err = h.Marshal(); err != nil {
			return nil, err
		}
		if sig, err = manifest.SignMessage(SigDomain, hb, nil, keys...); err != nil {
			return nil, fmt.Errorf("bundle: signing the header: %w", err)
		}
		if n := RegionSize(len(hb), len(sig)); n > region {
			region = n
			continue
		}
		break
	}
	if err := h.Validate(region); err != nil {
		return nil, fmt.Errorf("bundle: the header made does not validate (a bug): %w", err)
	}
	reg, err := EncodeRegion(format, hb, sig)
	if err != nil {
		return nil, err
	}
	reg = append(reg, make([]byte, region-int64(len(reg)))...)
	if _, err := w.Write(reg); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if ck != nil {
		if _, err := w.Write(index); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		for _, c := range ck.chunks {
			if _, err := w.Write(c.b); err != nil {
				return nil, fmt.Errorf("bundle: %w", err)
			}
		}
		if r := (region + int64(len(index)) + stored) % Align; r != 0 {
			if _, err := w.Write(make([]byte, Align-r)); err != nil {
				return nil, fmt.Errorf("bundle: %w", err)
			}
		}
		return h, nil
	}
	pad := make([]byte, Align)
	for _, c := range contents {
		if _, err := w.Write(c.b); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if r := len(c.b) % Align; r != 0 {
			if _, err := w.Write(pad[:Align-r]); err != nil {
				return nil, fmt.Errorf("bundle: %w", err)
			}
		}
	}
	if err := eachBlock(in.Root, p.DataBlocks, buf, func(i uint64, b []byte) error {
		if !has(i) {
			return nil
		}
		_, err := w.Write(b)
		return err
	}); err != nil {
		return nil, fmt.Errorf("bundle: writing the data blocks: %w", err)
	}
	return h, nil
}

// eachBlock calls fn for each of the first n Align-byte blocks of r,
// reading len(buf) bytes at a time.
func eachBlock(r io.ReaderAt, n uint64, buf []byte, fn func(i uint64, b []byte) error) error {
	per := uint64(len(buf) / Align)
	for first := uint64(0); first < n; first += per {
		c := min(per, n-first)
		b := buf[:c*Align]
		if k, err := r.ReadAt(b, int64(first*Align)); uint64(k) != c*Align {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("bundle: reading root data block %d: %w", first, err)
		}
		for i := uint64(0); i < c; i++ {
			if err := fn(first+i, b[i*Align:(i+1)*Align]); err != nil {
				return err
			}
		}
	}
	return nil
}
