package source

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/keelboot/keel/format/bundle"
)

// file is a random-access Source over an open file, which Close closes.
type file struct {
	Source
	f *os.File
}

func (s *file) Close() error { return s.f.Close() }

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
	return &file{Source: bundle.NewReaderAt(f, size, path), f: f}, nil
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
// errors. Close does not close r: the caller owns it (bundle.NewReaderAt).
func NewReaderAt(r io.ReaderAt, size int64, name string) Source {
	return bundle.NewReaderAt(r, size, name)
}
