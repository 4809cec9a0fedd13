package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keelboot/keel/format/bundle"
)

// stream is a sequential Source: it can only read forward.
type stream struct {
	r    io.Reader
	name string
	pos  int64  // bundle offset of the next byte r returns
	buf  []byte // PieceSize bytes, allocated on first use
	// broken is set when a read was given up because the context ended:
	// it may still be under way, so the position is lost and the stream
	// cannot be read again.
	broken error
}

var _ Source = (*stream)(nil)

// Stream is a Source reading r from its start to its end once: standard
// input or a pipe. Its Size is -1. Every Fetch must ask for ranges at or
// after the end of the previous one's; gaps are read and discarded. Close
// does not close r. A Stream is not safe for concurrent use.
//
// A read blocked on r cannot be interrupted (a pipe's writer ends it by
// writing or closing), but Fetch gives it up when the context ends: the
// read goes on in a goroutine of its own, into a buffer the stream does
// not use again, and the stream fails every call after that. The Source is
// a Drainer.
func Stream(r io.Reader, name string) Source {
	return &stream{r: r, name: name}
}

func (s *stream) Size() int64 { return -1 }

func (s *stream) Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error {
	if s.broken != nil {
		return s.broken
	}
	if err := bundle.CheckRanges(s.name, ranges, -1); err != nil {
		return err
	}
	if len(ranges) > 0 && ranges[0].Off < s.pos {
		return fmt.Errorf("%s: a pipe can only be read forward: range at %d, already at %d", s.name, ranges[0].Off, s.pos)
	}
	if s.buf == nil && len(ranges) > 0 {
		s.buf = make([]byte, PieceSize)
	}
	for _, r := range ranges {
		if err := s.skip(ctx, r); err != nil {
			return err
		}
		for _, p := range pieces(r, PieceSize) {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := s.buf[:p.len]
			if err := s.read(ctx, b, r); err != nil {
				return err
			}
			if err := fn(p.off, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// skip reads and discards the bytes before r, a piece at a time so that a
// cancelled context stops a long skip.
func (s *stream) skip(ctx context.Context, r Range) error {
	for s.pos < r.Off {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.read(ctx, s.buf[:min(PieceSize, r.Off-s.pos)], r); err != nil {
			return err
		}
	}
	return nil
}

// read fills b from the stream, keeping pos right even when it fails, so
// that the error says where the stream ended.
func (s *stream) read(ctx context.Context, b []byte, r Range) error {
	n, err := s.interruptible(ctx, func() (int, error) { return io.ReadFull(s.r, b) })
	s.pos += int64(n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s ended at offset %d, before the end of the range %d-%d: %w",
			s.name, s.pos, r.Off, r.End(), io.ErrUnexpectedEOF)
	default:
		return fmt.Errorf("read %s at offset %d: %w", s.name, s.pos, err)
	}
}

// interruptible runs read, a read from r into the stream's buffer, and
// gives it up when ctx ends first: the read goes on in its goroutine, the
// buffer is dropped (the read may still write into it) and the stream is
// broken. The error is then the context's cause.
func (s *stream) interruptible(ctx context.Context, read func() (int, error)) (int, error) {
	if ctx.Done() == nil {
		return read()
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := read()
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return res.n, res.err
	case <-ctx.Done():
		s.buf = nil
		s.broken = fmt.Errorf("%s: a read at offset %d was given up (%w): the stream cannot be read further", s.name, s.pos, context.Cause(ctx))
		return 0, context.Cause(ctx)
	}
}

// Drainer is a Source whose input has a writer that must see it read to
// its end: a pipe (`curl … | keel install -`), whose writer gets SIGPIPE
// or EPIPE, and fails a `set -o pipefail` pipeline, when the reader exits
// before it has written everything.
type Drainer interface {
	// Drain reads and throws away what is left of the input, up to offset
	// end, and returns how many bytes it read. It fails with
	// ErrNotDrained when the input goes on past end (nothing more is
	// read), with an error when no byte comes for stall, and with the
	// context's cause when ctx ends first.
	Drain(ctx context.Context, end int64, stall time.Duration) (int64, error)
}

// ErrNotDrained: the input goes on past the offset Drain was given.
var ErrNotDrained = errors.New("the input goes on past its end")

var _ Drainer = (*stream)(nil)

func (s *stream) Drain(ctx context.Context, end int64, stall time.Duration) (int64, error) {
	if s.broken != nil {
		return 0, s.broken
	}
	start := s.pos
	if s.buf == nil {
		s.buf = make([]byte, PieceSize)
	}
	for {
		// One byte past end tells an input that goes on from one that
		// ends there.
		want := min(int64(len(s.buf)), end+1-s.pos)
		if want <= 0 {
			return s.pos - start, fmt.Errorf("%w: %s has more than %d bytes", ErrNotDrained, s.name, end)
		}
		rctx, cancel := context.WithTimeoutCause(ctx, stall, fmt.Errorf("%w: no data for %v", errStalled, stall))
		b := s.buf[:want]
		n, err := s.interruptible(rctx, func() (int, error) { return s.r.Read(b) })
		cancel()
		s.pos += int64(n)
		switch {
		case errors.Is(err, io.EOF):
			return s.pos - start, nil
		case err != nil:
			return s.pos - start, fmt.Errorf("%s at offset %d: %w", s.name, s.pos, err)
		}
	}
}

func (s *stream) Close() error { return nil }
