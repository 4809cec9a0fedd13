package update

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache makes the read-back check read the medium, not the page cache
// the writes went through: for an *os.File, after the Sync, it drops the
// file's clean cached pages (POSIX_FADV_DONTNEED); a Device with a
// DropCache method (a partition of a disk image) is asked to do it. Best
// effort.
func dropCache(d any) {
	if c, ok := d.(interface{ DropCache() }); ok {
		c.DropCache()
		return
	}
	if f, ok := d.(*os.File); ok {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
}

// DropFileCache drops the clean cached pages of n bytes of f from off
// (a partition inside a disk image file). Best effort.
func DropFileCache(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
