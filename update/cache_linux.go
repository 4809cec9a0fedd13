package update

import (
	"os"

	"golang.org/x/sys/unix"
)

// CacheDropper is a Device that can drop its cached pages of a range (a
// partition inside a disk image file).
type CacheDropper interface {
	DropCache(off, n int64)
}

// dropCache makes the read-back check read the medium, not the page cache
// the writes went through: after a Sync, it drops the clean cached pages
// of n bytes from off (POSIX_FADV_DONTNEED) of an *os.File, or asks a
// CacheDropper. Best effort.
func dropCache(d any, off, n int64) {
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
