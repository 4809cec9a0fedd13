//go:build linux

package pid1

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/initramfs/stage1"
	"github.com/keelboot/keel/initramfs/stage2"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// Main is keel-init: stage 1 or stage 2 as the kernel command line says.
// It does not return while it is PID 1 (it powers off when it cannot boot
// anything); otherwise it returns an exit code.
func Main(ctx context.Context, out io.Writer) int {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "keel-init: [%8.3f] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var svc cmdline.Service
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("bug: %v", p)
			}
		}()
		if err := sysinit.MountBase(logf); err != nil {
			return err
		}
		line, _ := os.ReadFile("/proc/cmdline")
		svc = cmdline.ParseService(string(line))
		if svc.Stage2 {
			return stage2.Run(ctx, string(line), logf)
		}
		return stage1.Run(ctx, logf)
	}()
	logf("%v", err)
	if os.Getpid() != 1 {
		return 1
	}
	if svc.Debug {
		debugShell(logf)
	}
	if svc.Stage2 {
		// The slot failed after keel-init counted its boot: reboot, so
		// that the next decision sees the used try (and falls back).
		sysinit.Halt(logf, "rebooting: the slot failed in stage 2", unix.LINUX_REBOOT_CMD_RESTART)
	}
	sysinit.Halt(logf, "powering off", unix.LINUX_REBOOT_CMD_POWER_OFF)
	return 1
}

// debugShell runs the debug cpio's shell on the console (development
// images only: keel.debug=1 on keel's command line and a shell in the
// initramfs, e.g. from `make debug-cpio`), then returns to the normal stop.
func debugShell(logf sysinit.Logf) {
	const sh = "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		logf("keel.debug=1 but no %s in the initramfs (add the debug cpio)", sh)
		return
	}
	logf("KEEL-DEBUG-SHELL: %s on the console; exit it to continue", sh)
	cmd := exec.Command(sh)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stdout
	cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/sbin")
	if err := cmd.Run(); err != nil {
		logf("debug shell: %v", err)
	}
}
