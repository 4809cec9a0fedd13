package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
)

// PieceSize is the most bytes a Source's Fetch hands to its callback at
// once.
const PieceSize = 1 << 20

// Range is Len bytes of the bundle from offset Off.
type Range struct {
	Off, Len int64
}

// End is the offset just after the range.
func (r Range) End() int64 { return r.Off + r.Len }

// Source is where an update bundle's bytes come from: a file or block
// device (random access: NewReaderAt, here, as keel-init reads the
// recovery seed through it), a pipe (sequential), or an HTTP(S) URL (Range
// requests); package update/source has those. The reader asks for what it
// needs as a list of ranges and gets the bytes back in order, so a
// sequential source can serve it, and a remote one can fetch several
// ranges at once.
type Source interface {
	// Size is the bundle's size in bytes, or -1 when it is not known (a
	// pipe).
	Size() int64
	// Fetch delivers the bytes of ranges, which must be sorted by offset,
	// non-empty and non-overlapping (for a sequential source, also after
	// every range of earlier Fetch calls), to fn, in order: fn(off, b) gets
	// consecutive pieces of each range, off being the bundle offset of
	// b[0]. A piece is at most PieceSize bytes and, unless it ends its
	// range, a multiple of 4096 bytes. b is valid only during the call.
	// Fetch returns fn's first error at once, or the source's error (which
	// names the source and the offset); io.ErrUnexpectedEOF when the bundle
	// ends before a range does.
	Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error
	// Close releases the source.
	Close() error
}

// CheckRanges reports ranges that break Fetch's contract (negative
// offsets, empty ranges, ranges out of order or overlapping) and, for a
// source of a known size (size >= 0), ranges that end past it
// (io.ErrUnexpectedEOF), before any byte is read: a caller learns of a
// truncated bundle before it writes anything. name names the source. The
// caller is a program, not a user, but a clear error beats writing the
// wrong bytes.
func CheckRanges(name string, ranges []Range, size int64) error {
	for i, r := range ranges {
		if r.Off < 0 || r.Len <= 0 || r.Len > math.MaxInt64-r.Off {
			return fmt.Errorf("%s: range %d (offset %d, length %d): the offset must be >= 0 and the length > 0", name, i, r.Off, r.Len)
		}
		if i > 0 && r.Off < ranges[i-1].End() {
			return fmt.Errorf("%s: range %d (offset %d) starts before range %d ends (%d): ranges must be sorted and must not overlap",
				name, i, r.Off, i-1, ranges[i-1].End())
		}
	}
	// Only the last range can end furthest, as they are sorted.
	if last := len(ranges) - 1; size >= 0 && last >= 0 && ranges[last].End() > size {
		return fmt.Errorf("%s: the range at %d needs %d bytes, but the bundle has %d: %w",
			name, ranges[last].Off, ranges[last].End(), size, io.ErrUnexpectedEOF)
	}
	return nil
}

// readerAt is a random-access Source.
type readerAt struct {
	r    io.ReaderAt
	size int64
	name string
}

// NewReaderAt is a random-access Source over the first size bytes of r: a
// file, a block device, a partition (the recovery seed); name appears in
// errors. Fetch calls may run concurrently. Close does not close r: the
// caller owns it.
func NewReaderAt(r io.ReaderAt, size int64, name string) Source {
	return &readerAt{r: r, size: size, name: name}
}

func (s *readerAt) Size() int64 { return s.size }

func (s *readerAt) Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error {
	if err := CheckRanges(s.name, ranges, s.size); err != nil {
		return err
	}
	// One buffer per call, so that concurrent Fetch calls are safe; no
	// larger than the longest range.
	var longest int64
	for _, r := range ranges {
		longest = max(longest, r.Len)
	}
	buf := make([]byte, min(PieceSize, longest))
	for _, r := range ranges {
		for off := r.Off; off < r.End(); off += PieceSize {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:min(PieceSize, r.End()-off)]
			if err := s.readAt(b, off); err != nil {
				return err
			}
			if err := fn(off, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// readAt fills b from off. The size was checked, so running out of bytes
// means the file shrank under us: io.ErrUnexpectedEOF.
func (s *readerAt) readAt(b []byte, off int64) error {
	n, err := s.r.ReadAt(b, off)
	if n == len(b) {
		return nil // ReadAt may report io.EOF along with the last byte
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s at offset %d: %w", s.name, off+int64(n), err)
}

func (s *readerAt) Close() error { return nil }
