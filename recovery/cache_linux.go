package recovery

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache makes the read-back check read the medium, not the page cache
// the writes went through: for an *os.File (a partition's block device or
// a file), after the Sync, it asks the kernel to drop the file's clean
// cached pages (posix_fadvise POSIX_FADV_DONTNEED). Other Devices are
// read as they are. Best effort: an error leaves the cache in place.
func dropCache(d Device) {
	if f, ok := d.(*os.File); ok {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
}
