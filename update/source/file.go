package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// readerAt is a random-access Source: a file, a block device or any
// io.ReaderAt.
type readerAt struct {
	r    io.ReaderAt
	size int64
	name string
	// f is closed by Close; nil when the caller owns r (NewReaderAt).
	f *os.File
}

var _ Source = (*readerAt)(nil)

// File opens a bundle stored in a regular file or on a block device (a
// partition the bundle was written to, a USB stick). Pipes and character
// devices are refused: they cannot seek, give "-" and redirect them into
// standard input instead (see Stream).
func File(path string) (Source, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s does not exist (a URL must start with http:// or https://): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	size, err := seekableSize(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &readerAt{r: f, size: size, name: path, f: f}, nil
}

// seekableSize is the size of a regular file or block device. It seeks to
// the end rather than trusting Stat, whose size is 0 for a block device;
// for a regular file both agree.
func seekableSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("bundle: %w", err)
	}
	m := fi.Mode()
	switch {
	case m.IsDir():
		return 0, fmt.Errorf("bundle %s is a directory", f.Name())
	case m&(fs.ModeNamedPipe|fs.ModeCharDevice|fs.ModeSocket) != 0:
		return 0, fmt.Errorf("bundle %s is a pipe, socket or character device, which cannot seek: give \"-\" and redirect it into standard input", f.Name())
	case !m.IsRegular() && m&fs.ModeDevice == 0:
		return 0, fmt.Errorf("bundle %s is not a regular file or a block device (mode %v)", f.Name(), m)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("bundle %s: finding its size: %w", f.Name(), err)
	}
	return size, nil
}

// NewReaderAt is a Source over the first size bytes of r; name appears in
// errors. Close does not close r: the caller owns it.
func NewReaderAt(r io.ReaderAt, size int64, name string) Source {
	return &readerAt{r: r, size: size, name: name}
}

func (s *readerAt) Size() int64 { return s.size }

func (s *readerAt) Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error {
	if err := checkRanges(ranges); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if err := checkEnd(s.name, ranges, s.size); err != nil {
		return err
	}
	// One buffer per call, so that concurrent Fetch calls are safe.
	buf := make([]byte, min(PieceSize, longest(ranges)))
	for _, r := range ranges {
		for _, p := range pieces(r, PieceSize) {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:p.len]
			if err := s.readAt(b, p.off); err != nil {
				return err
			}
			if err := fn(p.off, b); err != nil {
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

// longest is the length of the longest range: Fetch's buffer need not be
// larger.
func longest(ranges []Range) int64 {
	var n int64
	for _, r := range ranges {
		n = max(n, r.Len)
	}
	return n
}

func (s *readerAt) Close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}
