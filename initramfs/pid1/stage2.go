//go:build linux

package pid1

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
)

// stage2 mounts the slot's root and switches to it.
func stage2(ctx context.Context, params map[string]string, logf Logf) error {
	keepEventLog(logf)
	slot := params["keel.slot"]
	logf("stage 2: slot %s (mode %s)", slot, params["keel.mode"])
	if !bootenv.ValidSlotName(slot) {
		return fmt.Errorf("stage 2: keel.slot=%q on the command line is not a slot name", slot)
	}
	if err := loadModules(logf); err != nil {
		return err
	}
	// The watchdog driver's probe stopped the watchdog keel-init armed
	// before kexec: arm it again for the slot.
	if b, err := readBoard(); err == nil {
		armWatchdog(b, logf)
	} else {
		logf("warning: %v", err)
	}
	part := boards.RootPartition(slot)
	dev, err := findPartition(part, 10*time.Second)
	if err != nil {
		return err
	}
	fstype := params["keel.rootfstype"]
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, newRoot, fstype, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (%s) as %s on %s: %w", part, dev, fstype, newRoot, err)
	}
	logf("mounted %s (%s, %s) read-only", part, dev, fstype)
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		dst := filepath.Join(newRoot, m)
		if _, err := os.Stat(dst); err != nil {
			return fmt.Errorf("the root filesystem of slot %s has no %s: %w", slot, m, err)
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root: %w", m, err)
		}
	}
	init := "/sbin/init"
	if _, err := os.Stat(filepath.Join(newRoot, init)); err != nil {
		return fmt.Errorf("slot %s has no %s: %w", slot, init, err)
	}
	if err := switchRoot(newRoot); err != nil {
		return err
	}
	logf("KEEL-SWITCHROOT exec %s", init)
	return syscall.Exec(init, []string{init}, os.Environ())
}

// switchRoot makes dir the root: the initramfs stays mounted underneath
// (its files are small; keel deletes nothing it did not create).
func switchRoot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(dir, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}
