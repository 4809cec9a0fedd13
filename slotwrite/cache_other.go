//go:build !linux

package slotwrite

import "os"

// CacheDropper is a Device that can drop its cached pages of a range.
type CacheDropper interface {
	DropCache(off, n int64)
}

// DropCache asks d to drop its cached pages of n bytes from off, if it
// is a CacheDropper (package doc: the page cache).
func DropCache(d any, off, n int64) {
	if c, ok := d.(CacheDropper); ok {
		c.DropCache(off, n)
	}
}

// DropFileCache drops cached pages where the system can; here it cannot.
func DropFileCache(f *os.File, off, n int64) {}

// RangeSyncer is a Device that can write back one range of its cached
// pages.
type RangeSyncer interface {
	SyncRange(off, n int64) error
}

func syncRange(d Device, off, n int64) error {
	if r, ok := d.(RangeSyncer); ok {
		return r.SyncRange(off, n)
	}
	return d.Sync()
}

// SyncFileRange syncs f (no range sync on this system).
func SyncFileRange(f *os.File, off, n int64) error { return f.Sync() }

func isHole(r any, off, n int64) bool { return false }
