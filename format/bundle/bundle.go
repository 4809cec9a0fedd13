package bundle

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Format constants.
const (
	Magic = "KEELBNDL"
	// FormatPlain (1) stores the parts as they are (keel before format 2
	// wrote only this); FormatChunked (2) stores them as zstd chunks with
	// a chunk index (chunks.go). Write writes format 2 unless told to
	// write format 1; Open reads both.
	FormatPlain   = 1
	FormatChunked = 2
	// Align is the alignment of every part (and the data block size).
	Align = 4096
	// PreambleSize is the fixed start of the file.
	PreambleSize = 24
	// MaxHeader bounds the header JSON.
	MaxHeader = 64 << 10
	// SigDomain prefixes the header bytes in its signatures.
	SigDomain = "keel bundle v1\x00"
	// MaxManifest bounds the manifest part.
	MaxManifest = 1 << 20
	// MaxPart bounds the kernel and initrd (and the tree: 1/128 of a
	// 32 GiB root).
	MaxPart = 1 << 30
	// MaxDataBlocks bounds a root file system: 1 TiB.
	MaxDataBlocks = 1 << 28
)

// Part names, in file order.
const (
	PartManifest = "manifest"
	PartSig      = manifest.SigEntry
	PartKernel   = "kernel"
	PartInitrd   = "initrd"
	PartTree     = "tree"
	PartBlockMap = "blockmap"
	PartData     = "data"
)

// Error is a sentinel error of this package.
type Error string

func (e Error) Error() string { return string(e) }

// Sentinel errors.
const (
	// ErrNotBundle: the file does not start with a bundle preamble.
	ErrNotBundle Error = "not a keel update bundle"
	// ErrCorrupt: the bundle's structure is broken (a bad preamble, a
	// header that does not parse, a part that is not where it should be).
	ErrCorrupt Error = "corrupt update bundle"
	// ErrTampered: a part's bytes do not match the signed header (or the
	// manifest), or a data block does not match its dm-verity leaf.
	ErrTampered Error = "update bundle was changed after signing"
	// ErrWrongBoard: a validly signed bundle for another board.
	ErrWrongBoard Error = "update bundle is for another board"
)

// Part is one part of the bundle: where it is and its digest.
type Part struct {
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// End is the offset just after the part.
func (p Part) End() int64 { return p.Offset + p.Size }

// Delta says a bundle is a static delta: its data part holds only the
// blocks the block map marks; the others must be on the device already (in
// a root of version From, whose root hash is FromRootHash).
type Delta struct {
	From         string `json:"from"`
	FromRootHash string `json:"from_root_hash"`
	// Blocks is how many data blocks the bundle carries.
	Blocks uint64 `json:"blocks"`
}

// Header is the signed header.
type Header struct {
	Format          int    `json:"format"`
	Compatible      string `json:"compatible"`
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"security_version"`
	// DataBlocks is the number of 4 KiB blocks of the root file system
	// (the manifest's verity data_blocks).
	DataBlocks uint64 `json:"data_blocks"`
	// Parts in file order: manifest, manifest.sig, kernel, initrd, tree,
	// blockmap (delta only), data.
	Parts []Part `json:"parts"`
	Delta *Delta `json:"delta,omitempty"`
	// Chunks (format 2 only) says how the parts are stored.
	Chunks *Chunks `json:"chunks,omitempty"`
}

// Part returns the named part.
func (h *Header) Part(name string) (Part, bool) {
	for _, p := range h.Parts {
		if p.Name == name {
			return p, true
		}
	}
	return Part{}, false
}

// Size is the size of the whole bundle file.
func (h *Header) Size() int64 {
	if h.Chunks != nil {
		return h.Chunks.StoredSize
	}
	return h.LayoutSize()
}

// LayoutSize is the size of the bundle in format 1's layout (the file's
// size for format 1; what View of a format-2 bundle addresses).
func (h *Header) LayoutSize() int64 { return h.Parts[len(h.Parts)-1].End() }

// partNames is the order of the parts.
func partNames(delta bool) []string {
	n := []string{PartManifest, PartSig, PartKernel, PartInitrd, PartTree}
	if delta {
		n = append(n, PartBlockMap)
	}
	return append(n, PartData)
}

func alignUp(n int64) int64 { return (n + Align - 1) / Align * Align }

// RegionSize is the bytes the preamble, header and signature take, padded.
func RegionSize(headerLen, sigLen int) int64 {
	return alignUp(int64(PreambleSize + headerLen + sigLen))
}

// Validate checks the header's structure: the known format, a board name,
// a version the boot record can keep, the parts in order, each at the next
// aligned offset after the one before, within bounds, with a SHA-256, the
// block map and data sizes consistent with DataBlocks and Delta. regionSize
// is where the first part must start.
func (h *Header) Validate(regionSize int64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: header: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	switch {
	case h.Format != FormatPlain && h.Format != FormatChunked:
		return bad("format %d, this keel reads %d and %d (a newer keel made the bundle?)", h.Format, FormatPlain, FormatChunked)
	case h.Format == FormatChunked && h.Chunks == nil:
		return bad("format %d without its chunks", h.Format)
	case h.Format == FormatPlain && h.Chunks != nil:
		return bad("format %d with chunks", h.Format)
	}
	if h.Compatible == "" || len(h.Compatible) > manifest.MaxCompatible {
		return bad("compatible %.40q: want a board name", h.Compatible)
	}
	if h.Version == "" || len(h.Version) > manifest.MaxVersion || strings.ContainsAny(h.Version, "\x00\n\\") {
		return bad("version %.40q: want 1 to %d bytes, one line, no backslash", h.Version, manifest.MaxVersion)
	}
	if h.DataBlocks == 0 || h.DataBlocks > MaxDataBlocks {
		return bad("%d data blocks", h.DataBlocks)
	}
	names := partNames(h.Delta != nil)
	if len(h.Parts) != len(names) {
		return bad("%d parts, want %d (%s)", len(h.Parts), len(names), strings.Join(names, ", "))
	}
	off := regionSize
	for i, p := range h.Parts {
		if p.Name != names[i] {
			return bad("part %d is %q, want %q", i+1, p.Name, names[i])
		}
		if p.Offset != off {
			return bad("part %s at offset %d, want %d", p.Name, p.Offset, off)
		}
		limit := int64(MaxPart)
		switch p.Name {
		case PartManifest:
			limit = MaxManifest
		case PartSig:
			limit = manifest.MaxSigSize
		case PartData:
			limit = int64(h.DataBlocks) * Align
		}
		if p.Size <= 0 || p.Size > limit {
			return bad("part %s is %d bytes, want 1 to %d", p.Name, p.Size, limit)
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			return bad("part %s: sha256 %.70q is not 64 hex digits", p.Name, p.SHA256)
		}
		off = alignUp(p.End())
	}
	data, _ := h.Part(PartData)
	if d := h.Delta; d != nil {
		if d.Blocks == 0 || d.Blocks > h.DataBlocks {
			return bad("delta of %d blocks out of %d", d.Blocks, h.DataBlocks)
		}
		if d.From == "" || len(d.From) > manifest.MaxVersion || strings.ContainsAny(d.From, "\x00\n\\") {
			return bad("delta from version %.40q", d.From)
		}
		if b, err := hex.DecodeString(d.FromRootHash); err != nil || len(b) != 32 {
			return bad("delta from root hash %.70q is not 64 hex digits", d.FromRootHash)
		}
		if bm, _ := h.Part(PartBlockMap); bm.Size != int64((h.DataBlocks+7)/8) {
			return bad("block map of %d bytes for %d blocks", bm.Size, h.DataBlocks)
		}
		if data.Size != int64(d.Blocks)*Align {
			return bad("data part of %d bytes for %d blocks", data.Size, d.Blocks)
		}
	} else if data.Size != int64(h.DataBlocks)*Align {
		return bad("data part of %d bytes for %d blocks", data.Size, h.DataBlocks)
	}
	if h.Chunks != nil {
		if err := h.Chunks.validate(h.Parts, regionSize); err != nil {
			return bad("%s", err)
		}
	}
	return nil
}

// EncodeRegion returns the file's first bytes: the preamble, the header
// and its signature, padded to Align.
func EncodeRegion(format int, header, sig []byte) ([]byte, error) {
	if len(header) == 0 || len(header) > MaxHeader || len(sig) == 0 || len(sig) > manifest.MaxSigSize {
		return nil, fmt.Errorf("bundle: header of %d bytes and signature of %d bytes: want 1..%d and 1..%d", len(header), len(sig), MaxHeader, manifest.MaxSigSize)
	}
	b := make([]byte, RegionSize(len(header), len(sig)))
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[8:], uint32(format))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(header)))
	binary.LittleEndian.PutUint32(b[16:], uint32(len(sig)))
	binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b[:20]))
	copy(b[PreambleSize:], header)
	copy(b[PreambleSize+len(header):], sig)
	return b, nil
}

// ParsePreamble checks the first PreambleSize bytes and returns the
// lengths of the header and of its signature (bounded, not yet trusted).
// The format version is PreambleFormat's.
func ParsePreamble(b []byte) (headerLen, sigLen int, err error) {
	if len(b) < PreambleSize || string(b[:8]) != Magic {
		return 0, 0, fmt.Errorf("%w: no %q magic at the start", ErrNotBundle, Magic)
	}
	if got, want := binary.LittleEndian.Uint32(b[20:]), crc32.ChecksumIEEE(b[:20]); got != want {
		return 0, 0, fmt.Errorf("%w: preamble CRC %#08x, computed %#08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatPlain && v != FormatChunked {
		return 0, 0, fmt.Errorf("%w: format version %d, this keel reads %d and %d (update keel first?)", ErrCorrupt, v, FormatPlain, FormatChunked)
	}
	hl, sl := binary.LittleEndian.Uint32(b[12:]), binary.LittleEndian.Uint32(b[16:])
	if hl == 0 || hl > MaxHeader || sl == 0 || sl > manifest.MaxSigSize {
		return 0, 0, fmt.Errorf("%w: header of %d bytes and signature of %d bytes: want 1..%d and 1..%d", ErrCorrupt, hl, sl, MaxHeader, manifest.MaxSigSize)
	}
	return int(hl), int(sl), nil
}

// PreambleFormat is the format version in a preamble ParsePreamble
// accepted.
func PreambleFormat(b []byte) int { return int(binary.LittleEndian.Uint32(b[8:])) }

// ParseHeader verifies the header's signature against the trusted keys,
// then decodes and validates it (strictly: known fields, each once,
// nothing after the object). regionSize is RegionSize of the lengths. It
// returns the header and the ID of the key whose signature verified.
func ParseHeader(header, sig []byte, trusted []manifest.PublicKey, regionSize int64) (*Header, string, error) {
	id, err := manifest.VerifyMessage(SigDomain, "bundle header", header, sig, trusted)
	if err != nil {
		return nil, "", fmt.Errorf("bundle: %w", err)
	}
	h, err := DecodeHeader(header)
	if err != nil {
		return nil, "", err
	}
	if err := h.Validate(regionSize); err != nil {
		return nil, "", err
	}
	return h, id, nil
}

// DecodeHeader decodes header JSON strictly, without checking a signature
// or validating it (bundle info on an untrusted bundle, the fuzzer).
func DecodeHeader(b []byte) (*Header, error) {
	var h Header
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return nil, fmt.Errorf("%w: header: trailing data after the JSON object", ErrCorrupt)
	}
	if err := manifest.CheckJSONKeys(b); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	return &h, nil
}

// Marshal encodes the header.
func (h *Header) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return append(b, '\n'), nil
}

// CheckManifest checks that the verified manifest m is the one the header
// describes: board, version, security version, kernel and initrd digests,
// and a dm-verity root of DataBlocks blocks whose tree is the tree part.
func (h *Header) CheckManifest(m *manifest.Manifest) error {
	differ := func(what string, hv, mv any) error {
		return fmt.Errorf("%w: the header says %s %v, the signed manifest %v", ErrTampered, what, hv, mv)
	}
	switch {
	case m.Role != manifest.RoleSlot:
		return fmt.Errorf("%w: the bundle's manifest is a %s's, not a slot's", ErrTampered, m.Role)
	case m.Compatible != h.Compatible:
		return differ("compatible", h.Compatible, m.Compatible)
	case m.Version != h.Version:
		return differ("version", h.Version, m.Version)
	case m.SecurityVersion != h.SecurityVersion:
		return differ("security version", h.SecurityVersion, m.SecurityVersion)
	}
	for _, c := range []struct {
		part string
		d    manifest.Digest
	}{{PartKernel, m.Kernel}, {PartInitrd, m.Initrd}} {
		p, _ := h.Part(c.part)
		if p.SHA256 != c.d.SHA256 || p.Size != c.d.Size {
			return differ(c.part, fmt.Sprintf("%.12s… (%d bytes)", p.SHA256, p.Size), fmt.Sprintf("%.12s… (%d bytes)", c.d.SHA256, c.d.Size))
		}
	}
	v := m.Root.Verity
	if v == nil {
		return fmt.Errorf("%w: the manifest has no dm-verity root: keel installs only verity-protected roots", ErrCorrupt)
	}
	if v.DataBlocks != h.DataBlocks {
		return differ("data blocks", h.DataBlocks, v.DataBlocks)
	}
	p, err := Params(v)
	if err != nil {
		return err
	}
	n, err := p.TreeSize()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if t, _ := h.Part(PartTree); t.Size != n {
		return differ("tree size", t.Size, n)
	}
	return nil
}

// Params are the dm-verity parameters of a manifest's root.
func Params(v *manifest.Verity) (verity.Params, error) {
	salt, err := hex.DecodeString(v.Salt)
	if err != nil {
		return verity.Params{}, fmt.Errorf("%w: verity salt: %w", ErrCorrupt, err)
	}
	if v.HashOffset != v.DataBlocks*Align {
		return verity.Params{}, fmt.Errorf("%w: the verity tree is at %d, not right after the %d data blocks: keel bundles carry roots whose tree follows the data", ErrCorrupt, v.HashOffset, v.DataBlocks)
	}
	return verity.Params{Salt: salt, DataBlocks: v.DataBlocks, HashOffset: v.HashOffset}, nil
}

// RootHash is the manifest's root hash, decoded.
func RootHash(v *manifest.Verity) []byte {
	b, _ := hex.DecodeString(v.RootHash) // manifest.Validate checked it
	return b
}

// BlockMap is a static delta's set of carried blocks.
type BlockMap []byte

// Has reports whether block i is in the bundle.
func (m BlockMap) Has(i uint64) bool { return m[i/8]&(1<<(i%8)) != 0 }

// Set marks block i.
func (m BlockMap) Set(i uint64) { m[i/8] |= 1 << (i % 8) }

// Count is the number of marked blocks among the first n.
func (m BlockMap) Count(n uint64) uint64 {
	c := uint64(0)
	for i := uint64(0); i < n; i++ {
		if m.Has(i) {
			c++
		}
	}
	return c
}
