package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestFileConformance(t *testing.T) {
	testConformance(t, func(t *testing.T, payload []byte) func(t *testing.T) Source {
		path := filepath.Join(t.TempDir(), "bundle")
		if err := os.WriteFile(path, payload, 0o644); err != nil {
			t.Fatal(err)
		}
		return func(t *testing.T) Source {
			src, err := File(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { src.Close() })
			return src
		}
	})
}

func TestReaderAtConformance(t *testing.T) {
	testConformance(t, func(t *testing.T, payload []byte) func(t *testing.T) Source {
		return func(t *testing.T) Source {
			return NewReaderAt(bytes.NewReader(payload), int64(len(payload)), "memory")
		}
	})
}

func TestFileRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opening a FIFO for reading blocks until a writer comes: be one.
	go func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
	}()
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "bundle " + filepath.Join(dir, "missing") + " does not exist"},
		{dir, "is a directory"},
		{fifo, "give \"-\" and redirect it into standard input"},
		{"/dev/null", "character device"},
	} {
		src, err := File(tc.path)
		if err == nil {
			src.Close()
			t.Errorf("File(%s) works, want an error", tc.path)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("File(%s) = %v, want it to say %q", tc.path, err, tc.want)
		}
	}
	if _, err := File(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("File(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestFilePastEndNamesSizes(t *testing.T) {
	src := NewReaderAt(bytes.NewReader(make([]byte, 10000)), 10000, "small.bundle")
	err := src.Fetch(context.Background(), []Range{{Off: 0, Len: 10}, {Off: 9000, Len: 2000}}, func(int64, []byte) error {
		t.Error("fn called: the size is known, so nothing should be read")
		return nil
	})
	const want = "small.bundle: the range at 9000 needs 11000 bytes, but the bundle has 10000: unexpected EOF"
	if !errors.Is(err, io.ErrUnexpectedEOF) || err.Error() != want {
		t.Errorf("Fetch past the end = %v, want %q", err, want)
	}
}

// failingReaderAt fails reads from offset failAt on, or returns short
// reads with no error (shrunk) from there.
type failingReaderAt struct {
	data   []byte
	failAt int64
	err    error
}

func (f *failingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n := copy(b, f.data[off:min(int64(len(f.data)), f.failAt)])
	if n < len(b) {
		return n, f.err
	}
	return n, nil
}

func TestFileReadErrorNamesOffset(t *testing.T) {
	broken := errors.New("I/O error")
	for _, tc := range []struct {
		name    string
		err     error
		wantIs  error
		wantMsg string
	}{
		{"I/O error", broken, broken, "read disk.img at offset 12288: I/O error"},
		{"shrunk", io.EOF, io.ErrUnexpectedEOF, "read disk.img at offset 12288: unexpected EOF"},
		{"short without error", nil, io.ErrUnexpectedEOF, "read disk.img at offset 12288: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &failingReaderAt{data: make([]byte, 1<<20), failAt: 12288, err: tc.err}
			src := NewReaderAt(r, 1<<20, "disk.img")
			var got int64
			err := src.Fetch(context.Background(), []Range{{Off: 4096, Len: 4096}, {Off: 8192, Len: 100000}}, func(_ int64, b []byte) error {
				got += int64(len(b))
				return nil
			})
			if !errors.Is(err, tc.wantIs) || err.Error() != tc.wantMsg {
				t.Errorf("Fetch = %v, want %q", err, tc.wantMsg)
			}
			if got != 4096 {
				t.Errorf("delivered %d bytes before the error, want the 4096 of the first range", got)
			}
		})
	}
}

func TestFileClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bundle")
	if err := os.WriteFile(path, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := File(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	err = src.Fetch(context.Background(), []Range{{Off: 0, Len: 5}}, func(int64, []byte) error { return nil })
	if !errors.Is(err, os.ErrClosed) {
		t.Errorf("Fetch after Close = %v, want os.ErrClosed", err)
	}
	// NewReaderAt does not own its reader: Close leaves it alone.
	r := &closeRecorder{Reader: bytes.NewReader(nil)}
	if err := NewReaderAt(r, 0, "r").Close(); err != nil || r.closed {
		t.Errorf("Close = %v, closed the caller's reader: %v", err, r.closed)
	}
}

type closeRecorder struct {
	*bytes.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }
