//go:build !linux

package update

import "os"

// CacheDropper is a Device that can drop its cached pages of a range.
type CacheDropper interface {
	DropCache(off, n int64)
}

func dropCache(d any, off, n int64) {
	if c, ok := d.(CacheDropper); ok {
		c.DropCache(off, n)
	}
}

// DropFileCache drops cached pages where the system can; here it cannot.
func DropFileCache(f *os.File, off, n int64) {}
