//go:build linux

package pid1

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/image/slotimg"
	"github.com/keelboot/keel/internal/watchdog"
	"github.com/keelboot/keel/manifest"
)

// Paths inside keel's initramfs (the builder writes them).
const (
	// BoardPath holds the board (boards.Board as JSON).
	BoardPath = "/etc/keel/board.json"
	// ModulesPath lists the kernel modules to load, one path per line, in
	// dependency order.
	ModulesPath = "/etc/keel/modules.order"
	// TrustedKeysPath holds the public keys (keel-ed25519 lines) whose
	// signature a slot's manifest must carry. keel's initramfs is part of
	// the UKI the firmware loads (and the stub measures), so the keys are
	// fixed at build time.
	TrustedKeysPath = "/etc/keel/trusted-keys"
	efivarsDir      = "/sys/firmware/efi/efivars"
	newRoot         = "/newroot"
	// maxManifest bounds the manifest entry keel reads.
	maxManifest = 1 << 20
)

// Main is keel-init: stage 1 or stage 2 as the kernel command line says.
// It does not return while it is PID 1 (it powers off when it cannot boot
// anything); otherwise it returns an exit code.
func Main(ctx context.Context, out io.Writer) int {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "keel-init: [%8.3f] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	inStage2 := false
	debug := false
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("bug: %v", p)
			}
		}()
		if err := mountBase(logf); err != nil {
			return err
		}
		cmdline, _ := os.ReadFile("/proc/cmdline")
		params := parseCmdline(string(cmdline))
		debug = params["keel.debug"] == "1"
		if params["keel.stage"] == "2" {
			inStage2 = true
			return stage2(ctx, params, logf)
		}
		return stage1(ctx, logf)
	}()
	logf("%v", err)
	if os.Getpid() != 1 {
		return 1
	}
	if debug {
		debugShell(logf)
	}
	if inStage2 {
		// The slot failed after keel-init counted its boot: reboot, so
		// that the next decision sees the used try (and falls back).
		halt(logf, "rebooting: the slot failed in stage 2", unix.LINUX_REBOOT_CMD_RESTART)
	}
	halt(logf, "powering off", unix.LINUX_REBOOT_CMD_POWER_OFF)
	return 1
}

// debugShell runs the debug cpio's shell on the console (development
// images only: keel.debug=1 on keel's command line and a shell in the
// initramfs, e.g. from `make debug-cpio`), then returns to the normal stop.
func debugShell(logf Logf) {
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

// halt powers the machine off (the defined state when nothing can boot) or
// restarts it.
func halt(logf Logf, msg string, cmd int) {
	logf("%s", msg)
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		logf("reboot(%#x) failed: %v; waiting forever", cmd, err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// armWatchdog arms the board's watchdog, if it has one: from here the
// slot has the board's timeout to mark itself good. A watchdog that cannot
// be armed is logged, not fatal: booting unguarded beats not booting.
func armWatchdog(b boards.Board, logf Logf) {
	if b.Watchdog.Module == "" {
		return
	}
	timeout := time.Duration(b.Watchdog.TimeoutSec) * time.Second
	if err := watchdog.Arm(watchdog.Device, timeout, 2*time.Second); err != nil {
		logf("warning: %v: the slot runs without a watchdog", err)
		return
	}
	logf("watchdog armed: %s", timeout)
}

func parseCmdline(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func mountBase(logf Logf) error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	logf("mounted /proc /sys /dev /run")
	return nil
}

// loadModules loads the modules ModulesPath lists, in order.
func loadModules(logf Logf) error {
	f, err := os.Open(ModulesPath)
	if errors.Is(err, fs.ErrNotExist) {
		logf("no %s: loading no modules", ModulesPath)
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

// findPartition returns the device node of the GPT partition named name,
// waiting up to timeout for it to appear (block drivers probe
// asynchronously).
func findPartition(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		uevents, _ := filepath.Glob("/sys/class/block/*/uevent")
		for _, u := range uevents {
			b, err := os.ReadFile(u)
			if err != nil {
				continue
			}
			var dev string
			found := false
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "DEVNAME="); ok {
					dev = v
				}
				if line == "PARTNAME="+name {
					found = true
				}
			}
			if found && dev != "" {
				return "/dev/" + dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no GPT partition named %q after %s (is the disk attached and its driver loaded?): %w", name, timeout, fs.ErrNotExist)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readBoard() (boards.Board, error) {
	var b boards.Board
	data, err := os.ReadFile(BoardPath)
	if err != nil {
		return b, fmt.Errorf("reading the board: %w", err)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("%s: %w", BoardPath, err)
	}
	if len(b.Slots) == 0 {
		return b, fmt.Errorf("%s: the board has no slots", BoardPath)
	}
	return b, nil
}

// openStore opens the board's boot state store.
func openStore(b boards.Board, logf Logf) (bootenv.Store, string, error) {
	switch b.Store {
	case boards.StoreEFIVars:
		if err := unix.Mount("efivarfs", efivarsDir, "efivarfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return nil, "", fmt.Errorf("mount efivarfs on %s (UEFI firmware? efivarfs module loaded?): %w", efivarsDir, err)
		}
		s, err := efivars.Open(efivarsDir)
		return s, "efivars", err
	case boards.StoreUBootEnv:
		dev, err := findPartition(ubootenv.BootstatePartition, 10*time.Second)
		if err != nil {
			return nil, "", err
		}
		size, err := deviceSize(dev)
		if err != nil {
			return nil, "", err
		}
		cfg, err := ubootenv.BootstateConfig(dev, 0, size)
		if err != nil {
			return nil, "", err
		}
		st, err := ubootenv.Open(cfg)
		if err != nil {
			return nil, "", err
		}
		// Write the matching fw_env.config for the OS's tools.
		conf := fmt.Sprintf("%s 0x0 %#x\n%s %#x %#x\n", dev, ubootenv.BootstateEnvSize, dev, ubootenv.BootstateEnvSize, ubootenv.BootstateEnvSize)
		_ = os.WriteFile("/run/keel-fw_env.config", []byte(conf), 0o644)
		return ubootenv.NewStore(st, dev), "uboot:/run/keel-fw_env.config", nil
	}
	return nil, "", fmt.Errorf("board %s: unknown store %q", b.Name, b.Store)
}

func deviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

func stage1(ctx context.Context, logf Logf) error {
	logf("stage 1")
	if err := loadModules(logf); err != nil {
		return err
	}
	b, err := readBoard()
	if err != nil {
		return err
	}
	store, storeArg, err := openStore(b, logf)
	if err != nil {
		return fmt.Errorf("opening the boot state store: %w", err)
	}
	logf("board %s, store %s", b.Name, storeArg)
	trusted, err := manifest.ReadPublicKeys(TrustedKeysPath)
	if err != nil {
		// Without trusted keys no slot can be verified: every slot fails
		// with this reason and the boot stops with it.
		logf("no trusted keys: %v", err)
	} else {
		ids := make([]string, len(trusted))
		for i, k := range trusted {
			ids[i] = k.ID()
		}
		logf("trusted keys: %s", strings.Join(ids, ", "))
	}
	loader := deviceLoader{logf: logf, trusted: trusted, keysErr: err}
	cfg := Config{Slots: b.Slots, Store: storeArg, TPMRequired: b.TPMRequired}
	if m, err := openMeasurer(b, logf); err != nil && b.TPMRequired {
		logf("no TPM, and board %s requires one: no slot can boot: %v", b.Name, err)
	} else if err != nil {
		logf("no TPM (the boot is unmeasured, rollback not enforced): %v", err)
	} else {
		cfg.Measurer = m
	}
	cfg.Recoverer = &deviceRecoverer{logf: logf, trusted: trusted}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	switch params := parseCmdline(string(cmdline)); {
	case params["keel.factory_reset"] == "1":
		cfg.RequestRecovery = FactoryReset + " (keel.factory_reset=1 on the command line)"
	case params["keel.recovery"] == "1":
		cfg.RequestRecovery = "keel.recovery=1 on the command line"
	}
	r, err := Boot(ctx, cfg, store, loader, kexecer{logf: logf, board: b}, logf)
	vars := map[string]string{}
	for _, v := range bootenv.Encode(r) {
		vars[v.Name] = v.Value
	}
	if state, jerr := json.Marshal(vars); jerr == nil && len(r.Slots) > 0 {
		logf("KEEL-STATE %s", state)
	}
	if err == nil {
		return errors.New("kexec returned")
	}
	if IsNoBootableSlot(err) {
		return fmt.Errorf("NO BOOTABLE SLOT: %s; the state is kept for service (keel status)", strings.TrimPrefix(err.Error(), "no bootable slot: "))
	}
	return err
}

// deviceLoader reads slots from their slot-<name> partitions and checks
// them against the trusted keys.
type deviceLoader struct {
	logf    Logf
	trusted []manifest.PublicKey
	keysErr error
}

func (d deviceLoader) LoadSlot(ctx context.Context, slot string) (*Image, error) {
	part := boards.SlotPartition(slot)
	dev, err := findPartition(part, 10*time.Second)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	h, err := slotimg.ReadHeader(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", part, dev, err)
	}
	ms, err := h.Section(f, slotimg.EntryManifest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", part, err)
	}
	if ms.Size() > maxManifest {
		return nil, fmt.Errorf("%s: manifest of %d bytes is larger than %d", part, ms.Size(), maxManifest)
	}
	mb, err := io.ReadAll(ms)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the manifest: %w", part, err)
	}
	var sig []byte
	if ss, err := h.Section(f, manifest.SigEntry); err == nil {
		if ss.Size() > manifest.MaxSigSize {
			return nil, fmt.Errorf("%s: %s of %d bytes is larger than %d", part, manifest.SigEntry, ss.Size(), manifest.MaxSigSize)
		}
		if sig, err = io.ReadAll(ss); err != nil {
			return nil, fmt.Errorf("%s: reading %s: %w", part, manifest.SigEntry, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", part, err)
	}
	if d.keysErr != nil {
		return nil, fmt.Errorf("%s: cannot verify the manifest: %w", part, d.keysErr)
	}
	// Nothing from the manifest is used before its signature verifies.
	m, err := manifest.Verify(mb, sig, d.trusted)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", part, err)
	}
	img := &Image{Slot: slot, Manifest: m, ManifestBytes: mb}
	for _, e := range []struct {
		name string
		want manifest.Digest
		dst  *io.ReaderAt
	}{
		{slotimg.EntryKernel, m.Kernel, &img.Kernel},
		{slotimg.EntryInitrd, m.Initrd, &img.Initrd},
	} {
		sec, err := h.Section(f, e.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part, err)
		}
		mf, err := memfdCopy(e.name, sec, e.want)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part, err)
		}
		*e.dst = mf
	}
	d.logf("slot %s verified: version %s, kernel %d bytes, initrd %d bytes", slot, m.Version, m.Kernel.Size, m.Initrd.Size)
	return img, nil
}

// memfdCopy copies r into a memfd while hashing it, and checks the digest:
// what kexec loads is exactly what was hashed.
func memfdCopy(name string, r io.Reader, want manifest.Digest) (*os.File, error) {
	fd, err := unix.MemfdCreate("keel-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:keel-"+name)
	if err := manifest.Check(name, io.TeeReader(r, f), want); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type kexecer struct {
	logf  Logf
	board boards.Board
}

func (k kexecer) Kexec(ctx context.Context, img *Image, cmdline string, h Handoff) error {
	kf, ok1 := img.Kernel.(*os.File)
	inf, ok2 := img.Initrd.(*os.File)
	if !ok1 || !ok2 {
		return errors.New("kexec needs file-backed kernel and initrd")
	}
	if len(h.EventLog) > 0 {
		// The slot gets the event log as keel/eventlog.jsonl in its
		// initramfs; stage 2 copies it to /run/keel.
		if err := appendEventLog(inf, h.EventLog); err != nil {
			return fmt.Errorf("handing the event log to the slot: %w", err)
		}
	}
	if err := unix.KexecFileLoad(int(kf.Fd()), int(inf.Fd()), cmdline, 0); err != nil {
		return fmt.Errorf("kexec_file_load: %w", err)
	}
	armWatchdog(k.board, k.logf)
	if h.Separator != nil {
		if err := h.Separator(); err != nil {
			_ = unix.KexecFileLoad(-1, -1, "", unix.KEXEC_FILE_UNLOAD)
			return err
		}
	}
	k.logf("KEEL-KEXEC slot %s", img.Slot)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		return fmt.Errorf("reboot(KEXEC): %w", err)
	}
	return errors.New("reboot(KEXEC) returned")
}
