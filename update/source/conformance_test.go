package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// setupFunc prepares a kind of Source over payload and returns how to
// open one; open is called once per check, since a stream reads once.
type setupFunc func(t *testing.T, payload []byte) (open func(t *testing.T) Source)

// testConformance runs the Source contract against one kind of source: a
// random 3-5 MiB payload, random sorted range lists delivered byte-exact
// and in order with the piece rules, several Fetch calls on one source,
// the empty list, ranges past the end, fn's error and bad range lists.
func testConformance(t *testing.T, setup setupFunc) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	payload := randomBytes(rng, 3<<20+rng.IntN(2<<20+1))
	size := int64(len(payload))
	open := setup(t, payload)
	ctx := context.Background()

	t.Run("Size", func(t *testing.T) {
		if got := open(t).Size(); got != size && got != -1 {
			t.Errorf("Size() = %d, want %d (or -1 for a stream)", got, size)
		}
	})
	t.Run("RandomRanges", func(t *testing.T) {
		for i := range 6 {
			ranges := randomRanges(rng, size)
			src := open(t)
			// Several Fetch calls on one source, each after the last.
			for _, part := range splitRandomly(rng, ranges) {
				if err := fetchAndCheck(ctx, src, payload, part); err != nil {
					t.Fatalf("list %d (%d ranges, this call %d from %d): %v", i, len(ranges), len(part), part[0].Off, err)
				}
			}
		}
	})
	t.Run("WholeBundle", func(t *testing.T) {
		if err := fetchAndCheck(ctx, open(t), payload, []Range{{Off: 0, Len: size}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		src := open(t)
		for _, ranges := range [][]Range{nil, {}} {
			err := src.Fetch(ctx, ranges, func(int64, []byte) error { return errors.New("fn called") })
			if err != nil {
				t.Errorf("Fetch(%v) = %v", ranges, err)
			}
		}
	})
	t.Run("PastEnd", func(t *testing.T) {
		ranges := []Range{{Off: 0, Len: 5000}, {Off: size - 100, Len: 200}}
		c := newChecker(payload, ranges)
		err := open(t).Fetch(ctx, ranges, c.fn)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Fetch past the end = %v, want io.ErrUnexpectedEOF", err)
		}
		if c.err != nil {
			t.Errorf("bytes before the end: %v", c.err)
		}
		t.Logf("error: %v", err)
	})
	t.Run("FnError", func(t *testing.T) {
		stop := errors.New("stop here")
		calls := 0
		err := open(t).Fetch(ctx, []Range{{Off: 0, Len: size}}, func(int64, []byte) error {
			calls++
			if calls == 2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 2 {
			t.Errorf("Fetch = %v after %d calls, want fn's error after 2", err, calls)
		}
	})
	t.Run("BadRanges", func(t *testing.T) {
		for _, ranges := range [][]Range{
			{{Off: 100, Len: 10}, {Off: 50, Len: 10}},  // unsorted
			{{Off: 100, Len: 10}, {Off: 105, Len: 10}}, // overlapping
			{{Off: 100, Len: 0}},                       // empty
			{{Off: -1, Len: 10}},                       // negative
		} {
			err := open(t).Fetch(ctx, ranges, func(int64, []byte) error { return errors.New("fn called") })
			if err == nil || err.Error() == "fn called" {
				t.Errorf("Fetch(%v) = %v, want a range error", ranges, err)
			}
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		err := open(t).Fetch(ctx, []Range{{Off: 0, Len: size}}, func(int64, []byte) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Fetch with a cancelled context = %v", err)
		}
	})
}

// fetchAndCheck fetches ranges and checks everything that came back.
func fetchAndCheck(ctx context.Context, src Source, payload []byte, ranges []Range) error {
	c := newChecker(payload, ranges)
	if err := src.Fetch(ctx, ranges, c.fn); err != nil {
		return err
	}
	return c.done()
}

// checker is a Fetch callback that checks each piece: in order, within
// its range, at most PieceSize, a multiple of 4096 unless it ends its
// range, and the payload's bytes.
type checker struct {
	payload []byte
	ranges  []Range
	next    int   // index of the range being delivered
	pos     int64 // offset the next piece must start at
	calls   int
	err     error // the first problem
}

func newChecker(payload []byte, ranges []Range) *checker {
	c := &checker{payload: payload, ranges: ranges}
	if len(ranges) > 0 {
		c.pos = ranges[0].Off
	}
	return c
}

func (c *checker) fn(off int64, b []byte) error {
	c.calls++
	if c.err == nil {
		c.err = c.check(off, b)
	}
	return c.err
}

func (c *checker) check(off int64, b []byte) error {
	if c.next >= len(c.ranges) {
		return fmt.Errorf("piece at %d after the last range", off)
	}
	r := c.ranges[c.next]
	end := off + int64(len(b))
	switch {
	case off != c.pos:
		return fmt.Errorf("piece at %d, want %d", off, c.pos)
	case len(b) == 0 || len(b) > PieceSize:
		return fmt.Errorf("piece at %d has %d bytes", off, len(b))
	case end > r.End():
		return fmt.Errorf("piece %d-%d goes past its range %d-%d", off, end, r.Off, r.End())
	case end < r.End() && len(b)%4096 != 0:
		return fmt.Errorf("piece %d-%d of range %d-%d: %d bytes, not a multiple of 4096", off, end, r.Off, r.End(), len(b))
	case end > int64(len(c.payload)):
		return fmt.Errorf("piece %d-%d past the payload's %d bytes", off, end, len(c.payload))
	}
	if want := c.payload[off:end]; !bytes.Equal(b, want) {
		i := 0
		for b[i] == want[i] {
			i++
		}
		return fmt.Errorf("piece %d-%d: wrong byte at %d: %#x, want %#x", off, end, off+int64(i), b[i], want[i])
	}
	c.pos = end
	if end == r.End() {
		c.next++
		if c.next < len(c.ranges) {
			c.pos = c.ranges[c.next].Off
		}
	}
	return nil
}

// done reports a problem, or ranges that were not delivered in full.
func (c *checker) done() error {
	if c.err != nil {
		return c.err
	}
	if c.next != len(c.ranges) {
		return fmt.Errorf("delivered %d of %d ranges, up to %d", c.next, len(c.ranges), c.pos)
	}
	return nil
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randomRanges is a sorted list of ranges within size: tiny, aligned,
// unaligned and multi-piece ranges, adjacent or with small or large gaps.
func randomRanges(rng *rand.Rand, size int64) []Range {
	var rs []Range
	pos := int64(0)
	if rng.IntN(2) == 0 {
		pos = rng.Int64N(64 << 10)
	}
	for pos < size {
		var n int64
		switch rng.IntN(4) {
		case 0:
			n = 1 + rng.Int64N(100)
		case 1:
			n = 4096 * (1 + rng.Int64N(64))
		case 2:
			n = 1 + rng.Int64N(300<<10)
		case 3:
			n = PieceSize + rng.Int64N(PieceSize*3/2)
		}
		n = min(n, size-pos)
		rs = append(rs, Range{Off: pos, Len: n})
		pos += n
		switch rng.IntN(3) {
		case 1:
			pos += 1 + rng.Int64N(5000)
		case 2:
			pos += rng.Int64N(512 << 10)
		}
	}
	return rs
}

// splitRandomly cuts ranges into 1 to 3 consecutive non-empty lists.
func splitRandomly(rng *rand.Rand, ranges []Range) [][]Range {
	var parts [][]Range
	for len(ranges) > 0 {
		n := len(ranges)
		if len(parts) < 2 && n > 1 && rng.IntN(2) == 0 {
			n = 1 + rng.IntN(n-1)
		}
		parts = append(parts, ranges[:n])
		ranges = ranges[n:]
	}
	return parts
}
