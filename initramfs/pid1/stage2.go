//go:build linux

package pid1

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/dm"
	"github.com/keelboot/keel/verity"
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
	b, err := readBoard()
	if err != nil {
		return err
	}
	armWatchdog(b, logf)
	part := boards.RootPartition(slot)
	dev, err := findPartition(part, 10*time.Second)
	if err != nil {
		return err
	}
	switch arg := params["keel.verity"]; {
	case arg != "":
		if dev, err = setupVerity(slot, dev, arg); err != nil {
			return fmt.Errorf("dm-verity over %s: %w", part, err)
		}
		logf("dm-verity: %s maps %s, root hash %.16s…", dev, part, arg)
	case b.RootVerity:
		return fmt.Errorf("board %s mounts roots only through dm-verity, and the slot's manifest has no verity root hash: refusing to mount %s", b.Name, part)
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

// setupVerity maps the root partition through a dm-verity target built
// from keel.verity=ROOTHASH,SALT,DATABLOCKS,HASHOFFSET (which keel-init
// took from the signed manifest and measured with the command line). A
// block that fails verification restarts the machine
// (restart_on_corruption): the slot's try is used and the decision falls
// back once its tries run out. Nothing is read at set-up: the cost does
// not grow with the root's size.
func setupVerity(slot, dev, arg string) (string, error) {
	f := strings.Split(arg, ",")
	if len(f) != 4 {
		return "", fmt.Errorf("keel.verity=%q: want ROOTHASH,SALT,DATABLOCKS,HASHOFFSET", arg)
	}
	rootHash, err := hex.DecodeString(f[0])
	if err != nil || len(rootHash) != 32 {
		return "", fmt.Errorf("keel.verity root hash %q is not 64 hex digits", f[0])
	}
	var salt []byte
	if f[1] != "-" {
		if salt, err = hex.DecodeString(f[1]); err != nil {
			return "", fmt.Errorf("keel.verity salt %q: %w", f[1], err)
		}
	}
	blocks, err1 := strconv.ParseUint(f[2], 10, 64)
	offset, err2 := strconv.ParseUint(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("keel.verity=%q: data blocks and hash offset must be numbers", arg)
	}
	p := verity.Params{Salt: salt, DataBlocks: blocks, HashOffset: offset}
	sectors, params := verity.TargetParams(dev, dev, p, rootHash, verity.RestartOnCorruption)
	return dm.Create("keel-root", "KEEL-VERITY-"+slot, true, []dm.Target{{Start: 0, Length: sectors, Type: "verity", Params: params}})
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
