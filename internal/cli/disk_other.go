//go:build !linux

package cli

import (
	"errors"
	"os"
)

func openBootPartition(efivarsDir, name string, names []string) (*os.File, int64, error) {
	return nil, 0, errors.New("finding the boot disk's partitions needs Linux: give --image DISK.img")
}

func reboot() error { return errors.New("reboot: only on Linux") }
