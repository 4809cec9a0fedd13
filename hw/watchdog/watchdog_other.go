//go:build !linux

package watchdog

import (
	"errors"
	"fmt"
	"time"
)

// Device is the first watchdog device.
const Device = "/dev/watchdog0"

// Arm is Linux-only.
func Arm(dev string, timeout, wait time.Duration) error {
	return fmt.Errorf("watchdog %s: %w (Linux only)", dev, errors.ErrUnsupported)
}

// Pet is Linux-only.
func Pet(dev string) error {
	return fmt.Errorf("watchdog %s: %w (Linux only)", dev, errors.ErrUnsupported)
}

// Disarm is Linux-only; elsewhere there is nothing to disarm.
func Disarm(dev string) error { return nil }

// BootStatus is Linux-only.
func BootStatus(sysfs, dev string) (uint32, error) {
	return 0, fmt.Errorf("watchdog %s: boot status: %w (Linux only)", dev, errors.ErrUnsupported)
}
