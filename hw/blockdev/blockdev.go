//go:build linux

// Package blockdev finds block devices the way keel-init and keel's
// on-device commands need them: a GPT partition by its name, through the
// kernel's uevents in sysfs (no udev in an initramfs).
package blockdev

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FindPartition returns the device node of the GPT partition named name,
// waiting up to timeout for it to appear (block drivers probe
// asynchronously). The error wraps fs.ErrNotExist when none appears.
func FindPartition(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		uevents, _ := filepath.Glob("/sys/class/block/*/uevent")
		for _, u := range uevents {
			b, err := os.ReadFile(u)
			if err != nil {
				continue
			}
			var dev string
			found := false
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "DEVNAME="); ok {
					dev = v
				}
				if line == "PARTNAME="+name {
					found = true
				}
			}
			if found && dev != "" {
				return "/dev/" + dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no GPT partition named %q after %s (is the disk attached and its driver loaded?): %w", name, timeout, fs.ErrNotExist)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Size returns the size of the block device (or file) at path.
func Size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// OpenRW opens the partition named name for reading and writing and
// returns it with its size.
func OpenRW(name string, timeout time.Duration) (*os.File, int64, error) {
	dev, err := FindPartition(name, timeout)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}
