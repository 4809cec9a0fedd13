package recovery

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropFileCache drops f's clean cached pages (the benchmark's cold start).
func dropFileCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
