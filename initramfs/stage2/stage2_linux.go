//go:build linux

package stage2

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/hw/blockdev"
	"github.com/keelboot/keel/initramfs/dm"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// newRoot is where stage 2 mounts the slot's root.
const newRoot = "/newroot"

// Logf prints one line to the console.
type Logf = func(format string, args ...any)

// Run is stage 2: it keeps the event log and trusted keys stage 1 handed
// over, loads the modules, re-arms the watchdog, maps the slot's root
// through dm-verity with the root hash keel-init put on the measured
// command line, mounts it read-only, mounts the data partition and the
// slot's data area in it when the root has /data (mountData), and
// switches root to its /sbin/init.
// It returns only on failure, after noting in the record that keel-init
// ends this boot (noteFailure).
func Run(ctx context.Context, line string, logf Logf) error {
	err := run(ctx, line, logf)
	noteFailure(line, logf)
	return err
}

func run(ctx context.Context, line string, logf Logf) error {
	keepHandoff(layout.HandoffDir, layout.RunDir, logf)
	h, err := cmdline.ParseHandoff(line)
	if err != nil {
		return fmt.Errorf("stage 2: %w", err)
	}
	slot := h.Slot
	logf("stage 2: slot %s (mode %s)", slot, h.Mode)
	if !bootenv.ValidSlotName(slot) {
		return fmt.Errorf("stage 2: keel.slot=%q on the command line is not a slot name", slot)
	}
	// The watchdog driver's probe stopped the watchdog keel-init armed
	// before kexec: arm it again for the slot.
	b, wd, err := sysinit.Start(logf)
	if err != nil {
		return err
	}
	part := layout.RootPartition(slot)
	disk, err := bootDisk(b, logf)
	if err != nil {
		return err
	}
	dev, err := disk.Partition(part)
	if err != nil {
		return err
	}
	if h.Store.Kind == cmdline.StoreUBoot && b.Store == boards.StoreUBootEnv {
		writeFWEnvConfig(disk, h.Store.Path, logf)
	}
	switch {
	case h.Verity != nil:
		if dev, err = setupVerity(slot, dev, *h.Verity, verityMode(b)); err != nil {
			return fmt.Errorf("dm-verity over %s: %w", part, err)
		}
		logf("dm-verity: %s maps %s, root hash %.16s…", dev, part, h.Verity.RootHash)
	case b.RootVerity:
		return fmt.Errorf("board %s mounts roots only through dm-verity, and the slot's manifest has no verity root hash: refusing to mount %s", b.Name, part)
	}
	fstype := h.RootFSType
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, newRoot, fstype, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (%s) as %s on %s: %w", part, dev, fstype, newRoot, err)
	}
	logf("mounted %s (%s, %s) read-only", part, dev, fstype)
	if err := mountData(disk, b.Slots, h, wd, layout.DataReportPath, logf); err != nil {
		return err
	}
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
	if err := existsIn(newRoot, init); err != nil {
		return fmt.Errorf("slot %s has no %s: %w", slot, init, err)
	}
	if err := switchRoot(newRoot); err != nil {
		return err
	}
	logf("KEEL-SWITCHROOT exec %s", init)
	return syscall.Exec(init, []string{init}, os.Environ())
}

// existsIn checks that name exists in the tree at root as it will be seen
// once root is /: symbolic links resolve inside root (Debian's /sbin/init
// is an absolute link to /lib/systemd/systemd).
func existsIn(root, name string) error {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, strings.TrimPrefix(name, "/"), &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT,
	})
	if err != nil {
		return &fs.PathError{Op: "open", Path: filepath.Join(root, name), Err: err}
	}
	return unix.Close(fd)
}

// bootDisk finds the disk keel booted from as stage 1 did (package
// hw/blockdev): the disk holding the partition the firmware loaded keel
// from, when a UEFI firmware says, else the disk with every partition of
// the board's layout but data (boards.Board.DiskNames). The slot's root is looked up on it only; other disks
// carrying the same names are named on the console.
func bootDisk(b boards.Board, logf Logf) (*blockdev.Disk, error) {
	names := b.DiskNames()
	opts := blockdev.Options{Warnf: func(format string, args ...any) { logf("warning: "+format, args...) }}
	if b.Firmware == boards.FirmwareUEFI {
		opts.BootPartUUID = firmwareBootPartition(logf)
	}
	d, err := blockdev.OpenDisk(names, 10*time.Second, opts)
	if err != nil {
		return nil, err
	}
	logf("boot disk %s", d)
	return d, nil
}

// firmwareBootPartition reads LoaderDevicePartUUID (the variable survives
// the kexec) through an efivarfs mounted for the purpose and unmounted
// again: the slot's OS mounts efivarfs itself. "" when the firmware does
// not say.
func firmwareBootPartition(logf Logf) string {
	const dir = uefi.EfivarfsDir
	err := unix.Mount("efivarfs", dir, "efivarfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV|unix.MS_RDONLY, "")
	switch {
	case err == nil:
		defer func() {
			if err := unix.Unmount(dir, 0); err != nil {
				logf("warning: unmounting efivarfs from %s: %v", dir, err)
			}
		}()
	case errors.Is(err, unix.EBUSY): // already mounted
	default:
		logf("warning: mount efivarfs on %s to learn the boot partition: %v", dir, err)
		return ""
	}
	g, err := blockdev.LoaderDevicePartUUID(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		logf("the firmware does not say which partition it loaded keel from (no LoaderDevicePartUUID): the boot disk is the one with all of the board's partitions (data aside)")
	case err != nil:
		logf("warning: which partition the firmware loaded keel from: %v", err)
	default:
		logf("the firmware loaded keel from partition %s", g)
	}
	return g
}

// verityMode is what a block that fails verification does:
// on a board whose kernels keep a panic's log (pstore) and whose watchdog
// resets a hung machine, it panics (panic_on_corruption), so that the next
// keel-init sees why the boot ended (a panic, "dm-verity device
// corrupted") and counts the trial's try; elsewhere it restarts the
// machine (restart_on_corruption), a reset no source explains, which the
// next keel-init counts as a power loss on a board whose watchdog reports
// its resets (a try given back, up to the board's bound in a row:
// docs/DESIGN.md section 3.1). A panic with the slot's panic=0 hangs
// until the watchdog resets it; without a watchdog it would hang for good.
func verityMode(b boards.Board) verity.Option {
	if b.Pstore != boards.PstoreNone && b.Watchdog.Module != "" {
		return verity.PanicOnCorruption
	}
	return verity.RestartOnCorruption
}

// setupVerity maps the root partition through a dm-verity target built
// from keel.verity= (which keel-init took from the signed manifest and
// measured with the command line). A block that fails verification
// panics or restarts the machine (mode: verityMode): the slot's try is
// used and the decision falls back once its tries run out. Nothing is
// read at set-up: the cost does not grow with the root's size.
func setupVerity(slot, dev string, v cmdline.Verity, mode verity.Option) (string, error) {
	rootHash, err := v.RootHashBytes()
	if err != nil {
		return "", err
	}
	salt, err := v.SaltBytes()
	if err != nil {
		return "", err
	}
	p := verity.Params{Salt: salt, DataBlocks: v.DataBlocks, HashOffset: v.HashOffset}
	sectors, params := verity.TargetParams(dev, dev, p, rootHash, mode)
	return dm.Create("keel-root", "KEEL-VERITY-"+slot, true, []dm.Target{{Start: 0, Length: sectors, Type: "verity", Params: params}})
}

// writeFWEnvConfig writes, on a U-Boot env board, the fw_env.config that
// keel.store=uboot:PATH names (keel-init wrote it in its own /run, gone
// with the kexec): the bootstate partition's redundant env as the slot
// kernel names the partition, for keel and fw_printenv in the OS. Only a
// path in /run is written; a failure is a warning (the OS's keel then
// says it finds no store).
func writeFWEnvConfig(disk *blockdev.Disk, conf string, logf Logf) {
	if !strings.HasPrefix(path.Clean(conf), "/run/") {
		logf("warning: keel.store=uboot:%s is not in /run: not writing it", conf)
		return
	}
	dev, err := disk.Partition(layout.Bootstate)
	if err == nil {
		err = os.WriteFile(conf, ubootenv.BootstateFWEnvConfig(dev), 0o644)
	}
	if err != nil {
		logf("warning: the OS's fw_env.config %s: %v", conf, err)
	}
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

// keepHandoff is stage 2's first step: it copies what stage 1 handed over
// in the initrd (from, layout.HandoffDir: the event log when the boot was
// measured, the trusted keys the slot was verified with, and on a trial's
// boot the trial's id) to to (layout.RunDir), which the slot's OS keeps:
// keel-init's event log at layout.EventLogPath, its keys read-only (0444)
// at layout.TrustedKeysRunPath, the trial's id at layout.TrialIDPath (the
// data area reads it from the hand-off itself: readTrialID). Nothing here fails the boot: a file that
// cannot be copied is a warning, and so are missing keys (a keel-init
// older than the keys' hand-over).
func keepHandoff(from, to string, logf Logf) {
	keysName := path.Base(layout.TrustedKeysRunPath)
	entries, err := os.ReadDir(from)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		logf("warning: reading what keel-init handed over in %s: %v", from, err)
	}
	var kept []string
	keys := false
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		perm := fs.FileMode(0o644)
		if e.Name() == keysName {
			keys, perm = true, 0o444
		}
		if err := copyFile(filepath.Join(from, e.Name()), filepath.Join(to, e.Name()), perm); err != nil {
			logf("warning: keeping %s from keel-init: %v", e.Name(), err)
			continue
		}
		kept = append(kept, e.Name())
	}
	if len(kept) > 0 {
		logf("kept %s in %s", strings.Join(kept, ", "), to)
	}
	if !keys && (err == nil || errors.Is(err, fs.ErrNotExist)) {
		logf("warning: keel-init handed over no trusted keys (an older keel-init?): the OS has no %s; `keel install` needs --keys FILE", filepath.Join(to, keysName))
	}
}

// copyFile copies src to dst with exactly perm (the umask aside), making
// dst's folder.
func copyFile(src, dst string, perm fs.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}
