//go:build linux

// Package sysinit is what both stages of keel-init do first and last: mount
// the kernel file systems, read the stage and the development marker the
// initramfs was built with (never the kernel command line), load the
// board's modules in order, read the board the initramfs carries, open the
// board's boot state store (OpenStore, through package bootenv/bootstore as
// the keel command does), arm and pet the watchdog, and stop the machine
// in a defined state.
package sysinit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/hw/watchdog"
)

// Logf prints one line to the console.
type Logf = func(format string, args ...any)

// MountBase mounts /proc, /sys, /dev and /run (already mounted is fine).
// In stage 2 these are the slot OS's: stage 2 moves them into the new
// root, and systemd mounts an API file system only where none is mounted
// (mount-setup.c skips a mount point), so /run keeps these options for the
// OS's lifetime: mode 0755 and nodev as systemd's own /run (a tmpfs
// without mode= is world-writable, 1777).
func MountBase(logf Logf) error {
	const base = unix.MS_NOSUID | unix.MS_NOEXEC
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", base, ""},
		{"sysfs", "/sys", "sysfs", base, ""},
		{"devtmpfs", "/dev", "devtmpfs", base, ""},
		{"tmpfs", "/run", "tmpfs", base | unix.MS_NODEV, "mode=0755"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	logf("mounted /proc /sys /dev /run")
	return nil
}

// LoadModules loads the modules layout.ModulesPath lists, in order.
func LoadModules(logf Logf) error {
	f, err := os.Open(layout.ModulesPath)
	if errors.Is(err, fs.ErrNotExist) {
		logf("no %s: loading no modules", layout.ModulesPath)
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		switch err := loadModule(p); {
		case errors.Is(err, unix.ENODEV):
			// No such hardware (crc32c_intel without SSE4.2, efivarfs
			// without EFI): go on, as modprobe does.
			logf("module %s: no such device, skipped", filepath.Base(p))
		case err != nil:
			return fmt.Errorf("loading module %s: %w", p, err)
		default:
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	logf("loaded %d modules", n)
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// ReadBoard reads the board the initramfs carries and checks it.
func ReadBoard() (boards.Board, error) {
	var b boards.Board
	data, err := os.ReadFile(layout.BoardPath)
	if err != nil {
		return b, fmt.Errorf("reading the board: %w", err)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("%s: %w", layout.BoardPath, err)
	}
	if err := b.Validate(); err != nil {
		return b, fmt.Errorf("%s: %w", layout.BoardPath, err)
	}
	return b, nil
}

// Start is how both stages begin: load the initramfs's modules, read the
// board and arm its watchdog (ArmWatchdog), so that from here a hang is
// reset. The watchdog is nil when the board has none.
func Start(logf Logf) (boards.Board, *Watchdog, error) {
	if err := LoadModules(logf); err != nil {
		return boards.Board{}, nil, err
	}
	b, err := ReadBoard()
	if err != nil {
		return boards.Board{}, nil, err
	}
	return b, ArmWatchdog(b, logf), nil
}

// ArmWatchdog arms the board's watchdog, if it has one, for the board's
// timeout. Stage 1 arms it as soon as it has read the board, so that a hang
// in keel-init itself (or in a development build's debug shell) is reset,
// and again just before kexec: from there the slot has the board's timeout
// to mark itself good. Whatever keel-init does between the two must finish
// within the timeout or pet the watchdog (Watchdog.Pet): a recovery
// reinstall pets it from its progress. A watchdog that cannot be armed is
// logged, not fatal: booting unguarded beats not booting.
func ArmWatchdog(b boards.Board, logf Logf) *Watchdog {
	if b.Watchdog.Module == "" {
		return nil
	}
	timeout := time.Duration(b.Watchdog.TimeoutSec) * time.Second
	if err := watchdog.Arm(watchdog.Device, timeout, 2*time.Second); err != nil {
		logf("warning: %v: running without a watchdog", err)
		return nil
	}
	logf("watchdog armed: %s", timeout)
	return &Watchdog{last: time.Now()}
}

// Watchdog is a watchdog this process armed. A nil *Watchdog (none armed)
// is valid: Pet does nothing (opening a stopped watchdog would start it).
type Watchdog struct {
	mu   sync.Mutex
	last time.Time
}

// petInterval is the least time between two pets: a pet opens the device,
// and a progress callback may ask for one every megabyte.
const petInterval = time.Second

// Pet restarts the watchdog's countdown, at most once every second.
func (w *Watchdog) Pet() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.last) < petInterval {
		return nil
	}
	w.last = time.Now()
	return watchdog.Pet(watchdog.Device)
}

// Halt powers the machine off (the defined state when nothing can boot) or
// restarts it (cmd is unix.LINUX_REBOOT_CMD_*). It does not return.
func Halt(logf Logf, msg string, cmd int) {
	logf("%s", msg)
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		logf("reboot(%#x) failed: %v; waiting forever", cmd, err)
	}
	for {
		time.Sleep(time.Hour)
	}
}
