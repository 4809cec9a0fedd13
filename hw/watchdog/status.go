package watchdog

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// CardReset is WDIOF_CARDRESET (include/uapi/linux/watchdog.h): in a
// watchdog's boot status, the last reboot was caused by the watchdog.
const CardReset = 0x20

// SysfsDir is where the watchdog core shows each device's attributes
// (CONFIG_WATCHDOG_SYSFS): <SysfsDir>/watchdogN/bootstatus.
const SysfsDir = "/sys/class/watchdog"

// maxStatus bounds what BootStatus reads of the attribute: one number.
const maxStatus = 64

// ParseBootStatus reads the bootstatus attribute: the flags the driver
// found at probe, as WDIOC_GETBOOTSTATUS returns them, in decimal with a
// newline (drivers/watchdog/watchdog_dev.c, bootstatus_show).
func ParseBootStatus(b []byte) (uint32, error) {
	s := strings.TrimSuffix(string(b), "\n")
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("watchdog boot status %.20q: not a number", s)
	}
	return uint32(v), nil
}

// statusFile is the bootstatus attribute of the device node dev
// (/dev/watchdog0 -> SysfsDir/watchdog0/bootstatus).
func statusFile(sysfs, dev string) string {
	return path.Join(sysfs, path.Base(dev), "bootstatus")
}
