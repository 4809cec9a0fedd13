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

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/initramfs/stage1"
	"github.com/keelboot/keel/initramfs/stage2"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// Main is keel-init: stage 1 or stage 2 as the initramfs was built
// (layout.StagePath), never as the kernel command line says. It does not
// return while it is PID 1 (it powers off when it cannot boot anything);
// otherwise it returns an exit code.
func Main(ctx context.Context, out io.Writer) int {
	return run(ctx, out, system{
		root:  "/",
		mount: sysinit.MountBase,
		cmdline: func() string {
			line, _ := os.ReadFile("/proc/cmdline")
			return string(line)
		},
		stage1: stage1.Run,
		stage2: stage2.Run,
		shell:  debugShell,
		pid1:   os.Getpid() == 1,
		halt:   sysinit.Halt,
	})
}

// system is what run does its work with: the real machine in Main, fakes
// in the tests.
type system struct {
	root    string // the initramfs's root
	mount   func(sysinit.Logf) error
	cmdline func() string // the running kernel's command line
	stage1  func(context.Context, sysinit.Logf) error
	stage2  func(context.Context, string, sysinit.Logf) error
	shell   func(sysinit.Logf)
	pid1    bool
	// halt stops the machine (unix.LINUX_REBOOT_CMD_*); the real one does
	// not return.
	halt func(sysinit.Logf, string, int)
}

func run(ctx context.Context, out io.Writer, sys system) int {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "keel-init: [%8.3f] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	// Both decisions were made when the initramfs was built: nothing on
	// the command line (which an unauthenticated U-Boot env may give)
	// chooses the stage or opens a shell.
	dev := sysinit.DevelopmentBuild(sys.root)
	if dev {
		logf("%s", banner)
		logf("DEVELOPMENT BUILD: debug shell enabled (%s is in the initramfs); not for production", layout.DebugPath)
		logf("%s", banner)
	}
	var stage layout.Stage
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("bug: %v", p)
			}
		}()
		if err := sys.mount(logf); err != nil {
			return err
		}
		if stage, err = sysinit.ReadStage(sys.root); err != nil {
			return fmt.Errorf("NO STAGE: %w", err)
		}
		if stage == layout.Stage2 {
			// The slot kernel's command line is keel-init's hand-off
			// (measured into PCR 8 by stage 1): stage 2 reads it.
			return sys.stage2(ctx, sys.cmdline(), logf)
		}
		return sys.stage1(ctx, logf)
	}()
	logf("%v", err)
	if !sys.pid1 {
		return 1
	}
	if dev {
		sys.shell(logf)
	}
	if stage == layout.Stage2 {
		// The slot failed after keel-init counted its boot: reboot, so
		// that the next decision sees the used try (and falls back).
		sys.halt(logf, "rebooting: the slot failed in stage 2", unix.LINUX_REBOOT_CMD_RESTART)
		return 1
	}
	sys.halt(logf, "powering off", unix.LINUX_REBOOT_CMD_POWER_OFF)
	return 1
}

const banner = "****************************************************************"

// debugShell runs the debug cpio's shell on the console (development
// builds only: layout.DebugPath and a shell in the initramfs, both from
// `make debug-cpio`), then returns to the normal stop. The watchdog stage 1
// armed keeps running: the machine resets within the board's timeout.
func debugShell(logf sysinit.Logf) {
	const sh = "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		logf("development build but no %s in the initramfs (add the debug cpio)", sh)
		return
	}
	logf("KEEL-DEBUG-SHELL: %s on the console; exit it to continue (an armed watchdog still resets the machine)", sh)
	cmd := exec.Command(sh)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stdout
	cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/sbin")
	if err := cmd.Run(); err != nil {
		logf("debug shell: %v", err)
	}
}
