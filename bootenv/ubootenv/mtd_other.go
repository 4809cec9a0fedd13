//go:build !linux

package ubootenv

import (
	"errors"
	"os"
)

func openMTD(f *os.File) (Device, devKind, int64, error) {
	return nil, 0, 0, errors.New("MTD devices are only supported on Linux")
}

const lockFile = ""

func lockEnv(path string) (unlock func()) { return func() {} }
