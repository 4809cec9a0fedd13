// Command bareinit is the baseline of keel's boot-time benchmark: a static
// Go PID 1 that only mounts the kernel filesystems and execs (itself, in a
// second mode that powers off). It prints the time from its start to the
// exec call, as keel-init prints the time to its kexec call.
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	start := time.Now()
	if len(os.Args) > 1 && os.Args[1] == "done" {
		fmt.Println("KEEL-BARE-DONE")
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		select {}
	}
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		unix.Mount(m.src, m.dst, m.fstype, 0, "")
	}
	fmt.Printf("KEEL-BENCH handoff %.3f\n", time.Since(start).Seconds())
	err := syscall.Exec("/init", []string{"/init", "done"}, os.Environ())
	fmt.Println("bareinit: exec:", err)
	select {}
}
