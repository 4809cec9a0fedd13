package source

import (
	"fmt"
	"io"
	"math"
)

// checkRanges reports ranges that break Fetch's contract: negative
// offsets, empty ranges, ranges out of order or overlapping. The caller is
// a program, not a user, but a clear error beats writing the wrong bytes.
func checkRanges(ranges []Range) error {
	for i, r := range ranges {
		if r.Off < 0 || r.Len <= 0 || r.Len > math.MaxInt64-r.Off {
			return fmt.Errorf("range %d (offset %d, length %d): the offset must be >= 0 and the length > 0", i, r.Off, r.Len)
		}
		if i > 0 && r.Off < ranges[i-1].End() {
			return fmt.Errorf("range %d (offset %d) starts before range %d ends (%d): ranges must be sorted and must not overlap",
				i, r.Off, i-1, ranges[i-1].End())
		}
	}
	return nil
}

// checkEnd fails ranges that end past a bundle of a known size before any
// byte is read, so the installer learns of a truncated bundle before it
// writes anything. Only the last range can end furthest, as they are
// sorted.
func checkEnd(name string, ranges []Range, size int64) error {
	if len(ranges) == 0 {
		return nil
	}
	if last := ranges[len(ranges)-1]; last.End() > size {
		return fmt.Errorf("%s: the range at %d needs %d bytes, but the bundle has %d: %w",
			name, last.Off, last.End(), size, io.ErrUnexpectedEOF)
	}
	return nil
}

// piece is one callback's worth of bytes: what Fetch hands to fn at once.
type piece struct {
	off, len int64
}

func (p piece) end() int64 { return p.off + p.len }

// pieces cuts r into pieces of max bytes counted from the range's start,
// the last one shorter. max must be a multiple of 4096, so every piece but
// the last is too.
func pieces(r Range, max int64) []piece {
	ps := make([]piece, 0, (r.Len+max-1)/max)
	for off := r.Off; off < r.End(); off += max {
		ps = append(ps, piece{off, min(max, r.End()-off)})
	}
	return ps
}
