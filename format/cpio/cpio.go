package cpio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Magic starts every newc header.
const Magic = "070701"

// Trailer is the name of the record that ends an archive.
const Trailer = "TRAILER!!!"

const headerLen = 110

// File type bits of Mode, as in stat(2).
const (
	TypeMask    = 0o170000
	TypeSocket  = 0o140000
	TypeSymlink = 0o120000
	TypeReg     = 0o100000
	TypeBlock   = 0o060000
	TypeDir     = 0o040000
	TypeChar    = 0o020000
	TypeFIFO    = 0o010000
)

// MaxNameLen is the longest name (without its NUL) Reader and Writer
// accept: the kernel's PATH_MAX less the NUL.
const MaxNameLen = 4095

// Record is one archive member.
type Record struct {
	// Name is the path inside the archive, relative ("init",
	// "dev/console"): the kernel unpacks it relative to the root.
	Name string
	// Mode holds the type (TypeReg, TypeDir...) and permission bits.
	Mode uint32
	UID  uint32
	GID  uint32
	// NLink is the link count; Writer writes 2 for folders and 1 for
	// anything else when it is 0.
	NLink uint32
	// Mtime is seconds since the epoch.
	Mtime uint32
	// Ino is the inode number. Writer ignores it and numbers records
	// itself; Reader returns what the archive says.
	Ino uint32
	// DevMajor and DevMinor are the device the file came from.
	DevMajor, DevMinor uint32
	// RDevMajor and RDevMinor are a device node's own numbers.
	RDevMajor, RDevMinor uint32
	// Data is a regular file's contents or a symlink's target.
	Data []byte

	implied bool // a parent folder Archive added on its own
}

// Type returns the record's file type bits.
func (r *Record) Type() uint32 { return r.Mode & TypeMask }

// String describes the record the way cpio -tv would, roughly.
func (r *Record) String() string {
	switch r.Type() {
	case TypeSymlink:
		return fmt.Sprintf("%s %06o -> %s", r.Name, r.Mode, r.Data)
	case TypeChar, TypeBlock:
		return fmt.Sprintf("%s %06o %d,%d", r.Name, r.Mode, r.RDevMajor, r.RDevMinor)
	}
	return fmt.Sprintf("%s %06o %d bytes", r.Name, r.Mode, len(r.Data))
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxNameLen:
		return fmt.Errorf("name %.40q... is %d bytes, more than %d", name, len(name), MaxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("name %q contains NUL", name)
	}
	return nil
}

// Writer writes newc records to an io.Writer.
type Writer struct {
	w      io.Writer
	ino    uint32
	off    int64
	closed bool
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteRecord writes r, with the next inode number.
func (w *Writer) WriteRecord(r *Record) error {
	if w.closed {
		return errors.New("cpio: WriteRecord after Close")
	}
	if err := checkName(r.Name); err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	if r.Name == Trailer {
		return fmt.Errorf("cpio: a record may not be named %s (it ends the archive)", Trailer)
	}
	switch t := r.Type(); t {
	case TypeReg, TypeSymlink:
	case TypeDir, TypeChar, TypeBlock, TypeFIFO, TypeSocket:
		if len(r.Data) != 0 {
			return fmt.Errorf("cpio: %s: a %s has no data, got %d bytes", r.Name, typeName(t), len(r.Data))
		}
	default:
		return fmt.Errorf("cpio: %s: mode %06o has no file type (want TypeReg, TypeDir...)", r.Name, r.Mode)
	}
	if r.Type() == TypeSymlink && len(r.Data) == 0 {
		return fmt.Errorf("cpio: %s: symlink with an empty target", r.Name)
	}
	if uint64(len(r.Data)) > 0xffffffff {
		return fmt.Errorf("cpio: %s: %d bytes is more than newc's 4 GiB limit", r.Name, len(r.Data))
	}
	nlink := r.NLink
	if nlink == 0 {
		nlink = 1
		if r.Type() == TypeDir {
			nlink = 2
		}
	}
	w.ino++
	h := *r
	h.Ino, h.NLink = w.ino, nlink
	return w.write(&h)
}

func (w *Writer) write(r *Record) error {
	var b bytes.Buffer
	b.Grow(headerLen + len(r.Name) + 4)
	b.WriteString(Magic)
	for _, v := range []uint32{r.Ino, r.Mode, r.UID, r.GID, r.NLink, r.Mtime, uint32(len(r.Data)),
		r.DevMajor, r.DevMinor, r.RDevMajor, r.RDevMinor, uint32(len(r.Name) + 1), 0} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(r.Name)
	b.WriteByte(0)
	b.Write(zeros[:pad(int64(b.Len()))])
	if err := w.emit(b.Bytes()); err != nil {
		return err
	}
	if err := w.emit(r.Data); err != nil {
		return err
	}
	return w.emit(zeros[:pad(int64(len(r.Data)))])
}

var zeros [4]byte

// pad is the number of bytes that bring n to a multiple of 4.
func pad(n int64) int64 { return (4 - n%4) % 4 }

func (w *Writer) emit(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: writing: %w", err)
	}
	return nil
}

// Close writes the trailer record. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	return w.write(&Record{Name: Trailer, NLink: 1})
}

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.off }

func typeName(t uint32) string {
	switch t {
	case TypeSocket:
		return "socket"
	case TypeSymlink:
		return "symlink"
	case TypeReg:
		return "regular file"
	case TypeBlock:
		return "block device"
	case TypeDir:
		return "folder"
	case TypeChar:
		return "character device"
	case TypeFIFO:
		return "FIFO"
	}
	return fmt.Sprintf("type %06o", t)
}

// Reader reads newc records from an io.Reader.
type Reader struct {
	r   io.Reader
	off int64
	end bool
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// MaxFileSize is the largest record data Reader accepts: a guard against
// corrupt sizes, far above anything an initramfs holds.
const MaxFileSize = 1 << 30

// Next returns the next record, or io.EOF after the trailer. A record's
// error names its byte offset in the archive.
func (r *Reader) Next() (*Record, error) {
	if r.end {
		return nil, io.EOF
	}
	start := r.off
	var h [headerLen]byte
	if err := r.read(h[:]); err != nil {
		if err == io.EOF && start == 0 {
			return nil, fmt.Errorf("cpio: empty input, not an archive")
		}
		return nil, fmt.Errorf("cpio: header at offset %d: %w (archive truncated?)", start, noEOF(err))
	}
	if string(h[:6]) != Magic {
		return nil, fmt.Errorf("cpio: header at offset %d: magic %q, want %q (newc without checksums; is the archive compressed?)", start, h[:6], Magic)
	}
	var f [13]uint32
	for i := range f {
		field := h[6+8*i : 14+8*i]
		v, err := strconv.ParseUint(string(field), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("cpio: header at offset %d: field %d %q is not 8 hex digits", start, i, field)
		}
		f[i] = uint32(v)
	}
	rec := &Record{Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], NLink: f[4], Mtime: f[5],
		DevMajor: f[7], DevMinor: f[8], RDevMajor: f[9], RDevMinor: f[10]}
	size, nameSize := int64(f[6]), int64(f[11])
	if nameSize < 2 || nameSize > MaxNameLen+1 {
		return nil, fmt.Errorf("cpio: header at offset %d: name size %d, want 2..%d", start, nameSize, MaxNameLen+1)
	}
	if size > MaxFileSize {
		return nil, fmt.Errorf("cpio: header at offset %d: file size %d is more than %d", start, size, MaxFileSize)
	}
	name := make([]byte, nameSize+pad(headerLen+nameSize))
	if err := r.read(name); err != nil {
		return nil, fmt.Errorf("cpio: name at offset %d: %w (archive truncated?)", start+headerLen, noEOF(err))
	}
	if name[nameSize-1] != 0 {
		return nil, fmt.Errorf("cpio: name at offset %d is not NUL-terminated", start+headerLen)
	}
	rec.Name = string(name[:nameSize-1])
	if err := checkName(rec.Name); err != nil {
		return nil, fmt.Errorf("cpio: record at offset %d: %w", start, err)
	}
	if rec.Name == Trailer {
		r.end = true
		return nil, io.EOF
	}
	// Read through a buffer that grows as data arrives: a corrupt size
	// in a short archive costs no huge allocation.
	var data bytes.Buffer
	n, err := io.CopyN(&data, r.r, size)
	r.off += n
	if err != nil {
		return nil, fmt.Errorf("cpio: %s: data at offset %d: %w (want %d bytes; archive truncated?)", rec.Name, r.off-n, noEOF(err), size)
	}
	if err := r.read(make([]byte, pad(size))); err != nil {
		return nil, fmt.Errorf("cpio: %s: padding at offset %d: %w", rec.Name, r.off, noEOF(err))
	}
	rec.Data = data.Bytes() // nil when empty
	return rec, nil
}

func (r *Reader) read(p []byte) error {
	n, err := io.ReadFull(r.r, p)
	r.off += int64(n)
	return err
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadAll reads every record up to the trailer.
func ReadAll(r io.Reader) ([]*Record, error) {
	cr := NewReader(r)
	var recs []*Record
	for {
		rec, err := cr.Next()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
}
