package cli

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/hw/blockdev"
)

// openBootPartition opens the partition name on the disk keel booted
// from: the one holding the partition the firmware named
// (LoaderDevicePartUUID in efivarsDir), else the one holding all of names.
func openBootPartition(efivarsDir, name string, names []string) (*os.File, int64, error) {
	o := blockdev.Options{Warnf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "keel: "+format+"\n", args...) }}
	if g, err := blockdev.LoaderDevicePartUUID(efivarsDir); err == nil {
		o.BootPartUUID = g
	}
	d, err := blockdev.OpenDisk(names, 5*time.Second, o)
	if err != nil {
		return nil, 0, err
	}
	return d.OpenRW(name)
}

// reboot syncs and restarts the machine.
func reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
