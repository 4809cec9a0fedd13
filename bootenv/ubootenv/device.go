package ubootenv

import (
	"fmt"
	"io"
	"os"
)

// Device is the storage under one copy of the env: a regular file, a block
// device or partition, an MTD character device, or anything a test or a
// disk-image tool provides (testkit/faultdev, NewFileDevice).
//
// Offsets are relative to the device. Two optional methods matter for
// flash, and a Device that has them gets flash treatment:
//
//	EraseSize() int64                   // > 0: erase (in blocks of this size) before writing
//	IsBadBlock(off int64) (bool, error) // raw NAND: skip this block
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Erase makes [off, off+n) writable. Flash erases whole blocks to 0xFF;
	// files and block devices do nothing. Only called on devices whose
	// EraseSize is > 0.
	Erase(off, n int64) error
	// Sync makes the writes so far durable (fsync).
	Sync() error
	// Size is the size of the device in bytes.
	Size() (int64, error)
}

// eraser is implemented by flash devices.
type eraser interface{ EraseSize() int64 }

// badBlocker is implemented by raw NAND devices (MEMGETBADBLOCK).
type badBlocker interface {
	IsBadBlock(off int64) (bool, error)
}

// fileDevice is a Device over (a window of) an *os.File: a regular file, a
// block device, or a partition inside a disk image.
type fileDevice struct {
	f    *os.File
	base int64
	size int64 // < 0: up to the end of the file, as it is now
}

var _ Device = (*fileDevice)(nil)

// NewFileDevice returns a Device over f, restricted to [base, base+size)
// of the file: a partition inside a disk image, say. Offsets passed to the
// Device are relative to base. A negative size means up to the end of the
// file. Erase does nothing (no erase needed) and the Device never closes f.
func NewFileDevice(f *os.File, base, size int64) Device {
	return &fileDevice{f: f, base: base, size: size}
}

func (d *fileDevice) Size() (int64, error) {
	if d.size >= 0 {
		return d.size, nil
	}
	// Seek works for block devices, whose Stat size is 0.
	end, err := d.f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", d.f.Name(), err)
	}
	return max(end-d.base, 0), nil
}

func (d *fileDevice) bounds(off int64, n int) error {
	if off < 0 {
		return fmt.Errorf("%s: negative offset %d", d.f.Name(), off)
	}
	if d.size >= 0 && (off > d.size || int64(n) > d.size-off) {
		return fmt.Errorf("%s: [0x%x, +0x%x) is outside the 0x%x-byte window at 0x%x", d.f.Name(), off, n, d.size, d.base)
	}
	return nil
}

func (d *fileDevice) ReadAt(p []byte, off int64) (int, error) {
	if err := d.bounds(off, len(p)); err != nil {
		return 0, err
	}
	return d.f.ReadAt(p, d.base+off)
}

func (d *fileDevice) WriteAt(p []byte, off int64) (int, error) {
	if err := d.bounds(off, len(p)); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, d.base+off)
}

func (d *fileDevice) Erase(off, n int64) error { return nil }

func (d *fileDevice) Sync() error { return d.f.Sync() }

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(d Device, p []byte, off int64) error {
	n, err := d.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// writeFull writes p at off; a short write is an error.
func writeFull(d Device, p []byte, off int64) error {
	n, err := d.WriteAt(p, off)
	if err != nil {
		return err
	}
	if n != len(p) {
		return io.ErrShortWrite
	}
	return nil
}
