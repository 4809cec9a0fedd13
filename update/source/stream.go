package source

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// stream is a sequential Source: it can only read forward.
type stream struct {
	r    io.Reader
	name string
	pos  int64  // bundle offset of the next byte r returns
	buf  []byte // PieceSize bytes, allocated on first use
}

var _ Source = (*stream)(nil)

// Stream is a Source reading r from its start to its end once: standard
// input or a pipe. Its Size is -1. Every Fetch must ask for ranges at or
// after the end of the previous one's; gaps are read and discarded. Close
// does not close r. A Stream is not safe for concurrent use.
//
// A read blocked on r is not interrupted by the context: the pipe's writer
// must end it (by writing or closing).
func Stream(r io.Reader, name string) Source {
	return &stream{r: r, name: name}
}

func (s *stream) Size() int64 { return -1 }

func (s *stream) Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error {
	if err := checkRanges(ranges); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
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
			if err := s.read(b, r); err != nil {
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
		if err := s.read(s.buf[:min(PieceSize, r.Off-s.pos)], r); err != nil {
			return err
		}
	}
	return nil
}

// read fills b from the stream, keeping pos right even when it fails, so
// that the error says where the stream ended.
func (s *stream) read(b []byte, r Range) error {
	n, err := io.ReadFull(s.r, b)
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

func (s *stream) Close() error { return nil }
