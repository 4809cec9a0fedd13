package bundle

import "context"

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
// device (random access), a pipe (sequential), or an HTTP(S) URL (Range
// requests); package update/source has them. The reader asks for what it
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
