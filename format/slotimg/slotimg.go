package slotimg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sort"

	"github.com/keelboot/keel/manifest"
)

// Format constants.
const (
	Magic      = "KEELSLOT"
	Version    = 1
	HeaderSize = 4096
	Align      = 4096
	MaxEntries = 16
	entrySize  = 48
	nameSize   = 24
)

// Well-known entry names.
const (
	EntryKernel   = "kernel"
	EntryInitrd   = "initrd"
	EntryManifest = "manifest"
	// EntryRoot and EntryData are entries of the recovery seed only: the
	// root file system with its dm-verity tree appended (the bytes a
	// root-<slot> partition holds), and the empty file system that a
	// factory reset writes to the data partition.
	EntryRoot = "root"
	EntryData = "data"
)

// Error is a sentinel error of this package.
type Error string

func (e Error) Error() string { return string(e) }

// Is makes ErrNoEntry match fs.ErrNotExist.
func (e Error) Is(target error) bool { return e == ErrNoEntry && target == fs.ErrNotExist }

// Sentinel errors.
const (
	ErrNotSlot Error = "not a keel slot image"
	ErrCorrupt Error = "corrupt keel slot image"
	ErrNoEntry Error = "no such entry in the slot image"
)

// Entry is one named region of the image.
type Entry struct {
	Name   string
	Offset int64
	Size   int64
}

// Header lists the entries of an image.
type Header struct {
	Entries []Entry
}

// Part is an entry to write.
type Part struct {
	Name string
	Data []byte
}

func validName(n string) bool {
	if len(n) == 0 || len(n) >= nameSize {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func alignUp(n int64) int64 { return (n + Align - 1) / Align * Align }

// Size returns the bytes an image of parts takes.
func Size(parts []Part) int64 {
	n := int64(HeaderSize)
	for _, p := range parts {
		n += alignUp(int64(len(p.Data)))
	}
	return n
}

// Layout places entries of the given names and sizes as Write places
// parts (in order, from HeaderSize on, each Align aligned) and returns the
// header block (HeaderSize bytes) and the entries with their offsets. The
// Offset of the given entries is ignored. It lets a writer stream entries
// that are not in memory (the recovery seed's reinstall) and write the
// header last.
func Layout(entries []Entry) ([]byte, []Entry, error) {
	if len(entries) == 0 || len(entries) > MaxEntries {
		return nil, nil, fmt.Errorf("slotimg: %d entries, want 1..%d", len(entries), MaxEntries)
	}
	seen := map[string]bool{}
	hdr := make([]byte, HeaderSize)
	copy(hdr, Magic)
	binary.LittleEndian.PutUint32(hdr[8:], Version)
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(entries)))
	out := make([]Entry, len(entries))
	off := int64(HeaderSize)
	for i, p := range entries {
		if !validName(p.Name) {
			return nil, nil, fmt.Errorf("slotimg: entry name %q: use 1-%d characters a-z 0-9 . _ -", p.Name, nameSize-1)
		}
		if seen[p.Name] {
			return nil, nil, fmt.Errorf("slotimg: entry %q given twice", p.Name)
		}
		if p.Size < 0 {
			return nil, nil, fmt.Errorf("slotimg: entry %q has a negative size %d", p.Name, p.Size)
		}
		seen[p.Name] = true
		e := hdr[16+i*entrySize:]
		copy(e[:nameSize], p.Name)
		binary.LittleEndian.PutUint64(e[nameSize:], uint64(off))
		binary.LittleEndian.PutUint64(e[nameSize+8:], uint64(p.Size))
		out[i] = Entry{Name: p.Name, Offset: off, Size: p.Size}
		off += alignUp(p.Size)
	}
	end := 16 + len(entries)*entrySize
	binary.LittleEndian.PutUint32(hdr[end:], crc32.ChecksumIEEE(hdr[:end]))
	return hdr, out, nil
}

// Write writes the image of parts to w and returns its size.
func Write(w io.Writer, parts []Part) (int64, error) {
	ents := make([]Entry, len(parts))
	for i, p := range parts {
		ents[i] = Entry{Name: p.Name, Size: int64(len(p.Data))}
	}
	hdr, _, err := Layout(ents)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(hdr)
	total := int64(n)
	if err != nil {
		return total, err
	}
	var pad [Align]byte
	for _, p := range parts {
		n, err := w.Write(p.Data)
		total += int64(n)
		if err != nil {
			return total, err
		}
		if r := int64(len(p.Data)) % Align; r != 0 {
			n, err := w.Write(pad[:Align-r])
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// ReadHeader reads and checks the header of the image in r, which is size
// bytes long (the partition size).
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	if size < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, smaller than the %d-byte header", ErrNotSlot, size, HeaderSize)
	}
	hdr := make([]byte, HeaderSize)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("slotimg: reading the header: %w", err)
	}
	return ParseHeader(hdr, size)
}

// ParseHeader checks a header block (at least HeaderSize bytes) of an image
// of size bytes.
func ParseHeader(hdr []byte, size int64) (*Header, error) {
	if size < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, smaller than the %d-byte header", ErrNotSlot, size, HeaderSize)
	}
	if len(hdr) < HeaderSize || !bytes.Equal(hdr[:8], []byte(Magic)) {
		return nil, fmt.Errorf("%w: no %q magic (an empty or overwritten slot?)", ErrNotSlot, Magic)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != Version {
		return nil, fmt.Errorf("%w: format version %d, this keel reads %d", ErrCorrupt, v, Version)
	}
	n := int(binary.LittleEndian.Uint32(hdr[12:]))
	if n < 1 || n > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, want 1..%d", ErrCorrupt, n, MaxEntries)
	}
	end := 16 + n*entrySize
	if got, want := binary.LittleEndian.Uint32(hdr[end:]), crc32.ChecksumIEEE(hdr[:end]); got != want {
		return nil, fmt.Errorf("%w: header CRC %#08x, computed %#08x", ErrCorrupt, got, want)
	}
	h := &Header{}
	for i := 0; i < n; i++ {
		e := hdr[16+i*entrySize:]
		name := string(bytes.TrimRight(e[:nameSize], "\x00"))
		off := binary.LittleEndian.Uint64(e[nameSize:])
		sz := binary.LittleEndian.Uint64(e[nameSize+8:])
		if !validName(name) {
			return nil, fmt.Errorf("%w: entry %d has an invalid name %q", ErrCorrupt, i, name)
		}
		if off < HeaderSize || off%Align != 0 || off > uint64(size) || sz > uint64(size)-off {
			return nil, fmt.Errorf("%w: entry %s (offset %d, size %d) lies outside the %d-byte image", ErrCorrupt, name, off, sz, size)
		}
		for _, o := range h.Entries {
			if o.Name == name {
				return nil, fmt.Errorf("%w: entry %s listed twice", ErrCorrupt, name)
			}
		}
		h.Entries = append(h.Entries, Entry{Name: name, Offset: int64(off), Size: int64(sz)})
	}
	sorted := append([]Entry(nil), h.Entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Offset < sorted[j].Offset })
	for i := 1; i < len(sorted); i++ {
		if sorted[i-1].Offset+sorted[i-1].Size > sorted[i].Offset {
			return nil, fmt.Errorf("%w: entries %s and %s overlap", ErrCorrupt, sorted[i-1].Name, sorted[i].Name)
		}
	}
	return h, nil
}

// Find returns the named entry.
func (h *Header) Find(name string) (Entry, error) {
	for _, e := range h.Entries {
		if e.Name == name {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("%w: %q", ErrNoEntry, name)
}

// MaxManifest bounds a manifest entry ReadManifest reads (and
// manifest.MaxSigSize its signature envelope).
const MaxManifest = 1 << 20

// SigSuffix names a manifest entry's signature envelope: the entry name
// with it appended (manifest.SigEntry for EntryManifest; the recovery
// seed's slot-manifest.sig for its slot-manifest).
const SigSuffix = ".sig"

// ReadManifest is the one reader of a container's signed manifest: it
// reads the manifest entry name (EntryManifest; the recovery seed's second
// one is seedimg.EntrySlotManifest) of the image in r whose header is h,
// and its signature envelope, the entry name+SigSuffix (nil when the image
// has none: manifest.VerifyFor then says the manifest is unsigned). Both
// sizes are bounded (MaxManifest, manifest.MaxSigSize) before anything is
// read. It verifies nothing: the caller passes the bytes to
// manifest.VerifyFor before it uses anything of them (keel-init, the CLI,
// the recovery seed), or takes them for an unverified hint (the slot
// writer's size hint, PCR prediction).
func (h *Header) ReadManifest(r io.ReaderAt, name string) (mb, sig []byte, err error) {
	if mb, err = h.read(r, name, MaxManifest); err != nil {
		return nil, nil, err
	}
	if _, err := h.Find(name + SigSuffix); err != nil {
		return mb, nil, nil
	}
	if sig, err = h.read(r, name+SigSuffix, manifest.MaxSigSize); err != nil {
		return nil, nil, err
	}
	return mb, sig, nil
}

// read reads the named entry of at most limit bytes.
func (h *Header) read(r io.ReaderAt, name string, limit int64) ([]byte, error) {
	e, err := h.Find(name)
	if err != nil {
		return nil, err
	}
	if e.Size > limit {
		return nil, fmt.Errorf("%w: entry %s is %d bytes, at most %d", ErrCorrupt, name, e.Size, limit)
	}
	b := make([]byte, e.Size)
	if n, err := r.ReadAt(b, e.Offset); n != len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("slotimg: reading entry %s: %w", name, err)
	}
	return b, nil
}

// Section returns a reader of the named entry of the image in r.
func (h *Header) Section(r io.ReaderAt, name string) (*io.SectionReader, error) {
	e, err := h.Find(name)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(r, e.Offset, e.Size), nil
}
