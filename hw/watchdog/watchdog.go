//go:build linux

// Package watchdog arms and disarms a Linux hardware watchdog
// (Documentation/watchdog/watchdog-api.rst). keel-init arms it when it
// starts, so a hang in keel-init itself (or in a development build's debug
// shell) is reset, pets it through long work (a recovery reinstall), and
// arms it again before it hands a slot over, so a slot that hangs before it
// is marked good is reset and its trial counts down; `keel mark-good`
// disarms it (or the OS's watchdog daemon takes it over). At the next
// boot keel-init reads the watchdog's boot status (BootStatus, CardReset):
// whether the watchdog, not a power loss, reset the machine
// (docs/DESIGN.md section 3.1).
package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Device is the first watchdog device.
const Device = "/dev/watchdog0"

// Arm starts the watchdog at dev with the timeout and closes it without
// the magic 'V', so the kernel keeps it running ("watchdog did not stop!"):
// whoever runs next must pet it, disarm it, or be reset. It waits up to
// wait for the device node to appear (the driver probes asynchronously).
func Arm(dev string, timeout, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var f *os.File
	var err error
	for {
		f, err = os.OpenFile(dev, os.O_WRONLY, 0)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("watchdog %s: %w", dev, err)
	}
	defer f.Close()
	secs := int(timeout / time.Second)
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		return fmt.Errorf("watchdog %s: setting a %ds timeout: %w", dev, secs, err)
	}
	if _, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_KEEPALIVE); err != nil {
		return fmt.Errorf("watchdog %s: keepalive: %w", dev, err)
	}
	return nil
}

// Pet restarts the countdown of the watchdog at dev (WDIOC_KEEPALIVE) and
// closes it without the magic 'V', so it keeps running. Call it only for a
// watchdog this boot armed: opening a stopped watchdog starts it, with the
// driver's default timeout.
func Pet(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("watchdog %s: %w", dev, err)
	}
	defer f.Close()
	if _, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_KEEPALIVE); err != nil {
		return fmt.Errorf("watchdog %s: keepalive: %w", dev, err)
	}
	return nil
}

// Disarm stops the watchdog at dev with the magic close. A missing device
// is not an error (nothing to disarm).
func Disarm(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("watchdog %s: %w", dev, err)
	}
	if _, err := f.Write([]byte("V")); err != nil {
		f.Close()
		return fmt.Errorf("watchdog %s: magic close: %w", dev, err)
	}
	return f.Close()
}

// BootStatus returns the boot status of the watchdog at dev
// (WDIOF_* flags; CardReset: it reset the machine) from its sysfs
// attribute under sysfs (SysfsDir), without opening the device, which
// would start it. The driver reads the hardware's flag when it probes and
// clears it there (i6300esb), so a later kernel (the slot's, after kexec)
// sees 0: read it in keel-init's stage 1.
func BootStatus(sysfs, dev string) (uint32, error) {
	f, err := os.Open(statusFile(sysfs, dev))
	if err != nil {
		return 0, fmt.Errorf("watchdog %s: boot status: %w", dev, err)
	}
	defer f.Close()
	b := make([]byte, maxStatus)
	n, err := f.Read(b)
	if err != nil {
		return 0, fmt.Errorf("watchdog %s: boot status: %w", dev, err)
	}
	v, err := ParseBootStatus(b[:n])
	if err != nil {
		return 0, fmt.Errorf("watchdog %s: %w", dev, err)
	}
	return v, nil
}
