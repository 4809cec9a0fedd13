package gpt

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// memDisk is an in-memory disk image.
type memDisk []byte

func newMemDisk(size int64) memDisk { return make(memDisk, size) }

func (d memDisk) ReadAt(b []byte, off int64) (int, error) {
	return bytes.NewReader(d).ReadAt(b, off)
}

func (d memDisk) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > int64(len(d)) {
		return 0, errors.New("memDisk: write past the end")
	}
	return copy(d[off:], b), nil
}

func (d memDisk) size() int64 { return int64(len(d)) }

// failingWriter passes the first n writes to w and fails the rest, like a
// power cut in the middle of a table update.
type failingWriter struct {
	w io.WriterAt
	n int
}

func (f *failingWriter) WriteAt(b []byte, off int64) (int, error) {
	if f.n == 0 {
		return 0, errors.New("power cut")
	}
	f.n--
	return f.w.WriteAt(b, off)
}

// testSpecs is a keel-like layout for a 64 MiB disk.
func testSpecs() []Spec {
	return []Spec{
		{Name: "esp", Type: TypeEFISystem(), Size: 10 << 20},
		{Name: "bootstate", Type: TypeLinuxGeneric(), Size: 1 << 20},
		{Name: "slot-a", Type: TypeRootAMD64(), Size: 20<<20 + 512, Attributes: 1 << 60},
		{Name: "slot-b", Type: TypeRootAMD64(), Size: 20 << 20, UUID: MustParseGUID("01234567-89ab-cdef-0123-456789abcdef")},
		{Name: "données-ü", Type: TypeLinuxGeneric()}, // non-ASCII name, rest of the disk
	}
}

// smallSpecs fits a 16 MiB disk.
func smallSpecs() []Spec {
	return []Spec{
		{Name: "esp", Type: TypeEFISystem(), Size: 4 << 20},
		{Name: "bootstate", Type: TypeLinuxGeneric(), Size: 1 << 20},
		{Name: "slot-a", Type: TypeRootAMD64(), Size: 4<<20 + 512, Attributes: 1 << 60},
	}
}

// discard is a WriterAt for Create calls that must fail before writing.
type discard struct{}

func (discard) WriteAt(b []byte, off int64) (int, error) { return len(b), nil }

func mustCreate(t *testing.T, size int64, specs []Spec) (memDisk, *Table) {
	t.Helper()
	d := newMemDisk(size)
	tab, err := Create(d, size, specs)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return d, tab
}

func mustRead(t *testing.T, d memDisk) *Table {
	t.Helper()
	tab, err := Read(d, d.size())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return tab
}

func wantErr(t *testing.T, err error, target error, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %q", err, target)
	}
	if !strings.HasPrefix(err.Error(), "gpt: ") {
		t.Errorf("error %q does not start with \"gpt: \"", err)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
