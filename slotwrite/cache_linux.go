package slotwrite

import (
	"os"

	"golang.org/x/sys/unix"
)

// CacheDropper is a Device that can drop its cached pages of a range (a
// partition inside a disk image file).
type CacheDropper interface {
	DropCache(off, n int64)
}

// DropCache makes a read-back check read the medium, not the page cache
// the writes went through: after a Sync, it drops the clean cached pages
// of n bytes of d from off: of an *os.File (a block device, a file) with
// POSIX_FADV_DONTNEED, or through d's own CacheDropper (a partition inside
// a disk image drops its range of the image). Other devices are read as
// they are. Best effort.
func DropCache(d any, off, n int64) {
	if c, ok := d.(CacheDropper); ok {
		c.DropCache(off, n)
		return
	}
	if f, ok := d.(*os.File); ok {
		DropFileCache(f, off, n)
	}
}

// DropFileCache drops the clean cached pages of n bytes of f from off.
// Best effort.
func DropFileCache(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}

// RangeSyncer is a Device that can write back one range of its cached
// pages without flushing the whole device (a partition inside a disk
// image file).
type RangeSyncer interface {
	SyncRange(off, n int64) error
}

// syncRange writes back n bytes of d from off and waits for it: for an
// *os.File, sync_file_range(2), which leaves the range clean (so that
// DropCache can drop it) without the device cache flush of fsync (the
// install ends with a Sync); a RangeSyncer does its own; other Devices
// Sync.
func syncRange(d Device, off, n int64) error {
	if r, ok := d.(RangeSyncer); ok {
		return r.SyncRange(off, n)
	}
	if f, ok := d.(*os.File); ok {
		return SyncFileRange(f, off, n)
	}
	return d.Sync()
}

// SyncFileRange writes back n bytes of f from off and waits for them.
func SyncFileRange(f *os.File, off, n int64) error {
	err := unix.SyncFileRange(int(f.Fd()), off, n,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err != nil {
		return f.Sync() // not supported here: the whole file
	}
	return nil
}

// isHole reports whether n bytes of r from off are a hole of a sparse
// regular file (all zeros, nothing to read): an empty target partition
// file is indexed without reading it.
func isHole(r any, off, n int64) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO:
		return true // no data after off
	case err != nil:
		return false
	}
	return next >= off+n
}
