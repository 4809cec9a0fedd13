//go:build !linux

package update

import "os"

func dropCache(any) {}

// DropFileCache drops cached pages where the system can; here it cannot.
func DropFileCache(f *os.File, off, n int64) {}
