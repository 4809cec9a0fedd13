// Package vmkit builds what the VM tests and the demo boot (keel's
// binaries, keel's initramfs, the stage-2 initrd, test root filesystems,
// disk images) and runs a board's QEMU machine with its firmware (OVMF with
// a per-machine copy of the variable store, or U-Boot as -bios) and, when
// the board has a TPM, a TPM emulator (swtpm).
//
// Artefacts are built once per suite (Build) into a directory; disk images
// are made per scenario (Disk), since each scenario changes its disk.
package vmkit

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/builder/image/imagetest"
	"github.com/keelboot/keel/builder/initrd"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/secureboot"
	"github.com/keelboot/keel/testkit/testkernel"
)

// Artefacts are the per-suite build outputs.
type Artefacts struct {
	Board boards.Board
	// Dir holds everything built.
	Dir string
	// Kernel is the Debian kernel (bzImage, signed by Debian) and
	// ModulesDir its modules. SlotKernel is the same kernel signed with
	// the db key of SecureBootKeys instead (secureboot.SignKernel), once:
	// the test slots' kernel, which keel-init may kexec under Secure
	// Boot, the same bytes in every disk and bundle.
	Kernel, ModulesDir, SlotKernel string
	// Binaries.
	KeelInit, Keel, TestInit, BareInit string
	// SigningKey signs the test slots' manifests; TrustedKeys (its public
	// key) is in keel's initramfs.
	SigningKey, TrustedKeys string
	// Stage1 is keel's initramfs (in the UKI), Stage2 the slots' initrd,
	// Bare the benchmark's baseline initramfs (BareInit only).
	Stage1, Stage2, Bare string
	// SecureBootKeys are UEFI Secure Boot keys (keel secureboot keygen):
	// every disk's UKI is signed with their db key (a firmware without
	// keys ignores the signature). Enrolment holds their enrolment
	// files, which every test root carries in EnrolmentDir.
	SecureBootKeys, Enrolment string
}

// EnrolmentDir is where the test roots hold the Secure Boot enrolment
// files: `keel secureboot enroll EnrolmentDir` in the guest enrols keel's
// keys.
const EnrolmentDir = "/etc/keel-test/enrol"

// RepoRoot finds the module root (the folder with go.mod) from the working
// directory up.
func RepoRoot() (string, error) { return testkernel.ModuleRoot() }

// KernelDir is where scripts/fetch-kernel.sh leaves the board's kernel.
func KernelDir(root string, b boards.Board) string {
	return filepath.Join(root, "build", "kernel", b.Arch)
}

// Build builds the artefacts for board into dir. The kernel must have been
// fetched (make kernel); the error says so.
func Build(ctx context.Context, root, dir string, b boards.Board, log io.Writer) (*Artefacts, error) {
	kdir := KernelDir(root, b)
	a := &Artefacts{
		Board:       b,
		Dir:         dir,
		Kernel:      filepath.Join(kdir, "vmlinuz"),
		ModulesDir:  filepath.Join(kdir, "modules"),
		SlotKernel:  filepath.Join(dir, "slot-vmlinuz"),
		KeelInit:    filepath.Join(dir, "bin", "keel-init"),
		Keel:        filepath.Join(dir, "bin", "keel"),
		TestInit:    filepath.Join(dir, "bin", "testinit"),
		BareInit:    filepath.Join(dir, "bin", "bareinit"),
		Stage1:      filepath.Join(dir, "stage1.cpio.zst"),
		Stage2:      filepath.Join(dir, "stage2.cpio.zst"),
		Bare:        filepath.Join(dir, "bare.cpio.zst"),
		SigningKey:  filepath.Join(dir, "keys", "release.key"),
		TrustedKeys: filepath.Join(dir, "keys", "trusted-keys"),
		// Secure Boot keys and their enrolment files.
		SecureBootKeys: filepath.Join(dir, "keys", "secureboot"),
		Enrolment:      filepath.Join(dir, "keys", "enrol"),
	}
	for _, p := range []string{a.Kernel, a.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("vmkit: %w: fetch the kernel first: make kernel (scripts/fetch-kernel.sh %s %s)", err, b.Arch, kdir)
		}
	}
	goarch := map[string]string{"amd64": "amd64", "arm64": "arm64"}[b.Arch]
	for pkg, out := range map[string]string{
		"./cmd/keel-init":     a.KeelInit,
		"./cmd/keel":          a.Keel,
		"./vmtests/testinit/": a.TestInit,
		"./vmtests/bareinit/": a.BareInit,
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vmkit: go build %s: %w\n%s", pkg, err, out)
		}
	}
	boardJSON, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	trusted, err := a.makeKeys()
	if err != nil {
		return nil, err
	}
	if err := secureboot.GenerateKeys(a.SecureBootKeys, "keel vmtest"); err != nil {
		return nil, fmt.Errorf("vmkit: %w", err)
	}
	if _, err := secureboot.MakeEnrolment(a.SecureBootKeys, a.Enrolment); err != nil {
		return nil, fmt.Errorf("vmkit: %w", err)
	}
	if b.Firmware == boards.FirmwareUBoot {
		// UEFI Secure Boot does not apply: the slots get Debian's kernel.
		a.SlotKernel = a.Kernel
	} else if err := a.signSlotKernel(); err != nil {
		return nil, err
	}
	// keel's initramfs and the slots' initrd as the product builds them
	// (package builder/bootimage: the same keel-init runs both stages, the
	// stage file in each archive says which), and the benchmark's bare one.
	for _, ir := range []struct {
		out   string
		stage layout.Stage // 0: the bare archive
	}{
		{a.Stage1, layout.Stage1},
		{a.Stage2, layout.Stage2},
		{a.Bare, 0},
	} {
		start := time.Now()
		if ir.stage != 0 {
			_, err = bootimage.WriteFile(ir.out, bootimage.Spec{
				Board: b, Stage: ir.stage, KeelInit: a.KeelInit,
				ModulesDir: a.ModulesDir, TrustedKeys: []string{a.TrustedKeys},
			})
		} else {
			var f *os.File
			if f, err = os.Create(ir.out); err != nil {
				return nil, err
			}
			err = initrd.Build(f, initrd.Spec{
				Init: a.BareInit,
				Files: []initrd.File{
					{Path: "/etc/keel/board.json", Data: boardJSON},
					{Path: "/etc/keel/trusted-keys", Data: trusted},
				},
			})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("vmkit: initramfs %s: %w", ir.out, err)
		}
		if fi, err := os.Stat(ir.out); err == nil && log != nil {
			fmt.Fprintf(log, "vmkit: %s: %d KiB in %s\n", filepath.Base(ir.out), fi.Size()/1024, time.Since(start).Round(time.Millisecond))
		}
	}
	return a, nil
}

// signSlotKernel writes SlotKernel: Kernel signed with the db key.
func (a *Artefacts) signSlotKernel() error {
	k, err := os.ReadFile(a.Kernel)
	if err != nil {
		return fmt.Errorf("vmkit: %w", err)
	}
	cert, key, err := secureboot.LoadKey(a.SecureBootKeys, secureboot.DB)
	if err != nil {
		return fmt.Errorf("vmkit: %w", err)
	}
	signed, err := secureboot.SignKernel(k, cert, key)
	if err != nil {
		return fmt.Errorf("vmkit: signing the slot kernel: %w", err)
	}
	return os.WriteFile(a.SlotKernel, signed, 0o644)
}

// makeKeys makes the release key pair the test images are signed with and
// returns the trusted-keys file for keel's initramfs.
func (a *Artefacts) makeKeys() ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(a.SigningKey), 0o700); err != nil {
		return nil, err
	}
	priv, pub, err := manifest.GenerateKey(nil, "keel vmtest release key")
	if err != nil {
		return nil, err
	}
	pt, err := priv.MarshalText()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(a.SigningKey, append(pt, '\n'), 0o600); err != nil {
		return nil, err
	}
	ut, err := pub.MarshalText()
	if err != nil {
		return nil, err
	}
	trusted := append(ut, '\n')
	return trusted, os.WriteFile(a.TrustedKeys, trusted, 0o644)
}

// Health is what a test slot's health check does.
type Health string

// Health checks.
const (
	Healthy    Health = "ok"
	HealthFail Health = "fail"  // reboots without mark-good
	HealthPanc Health = "panic" // init exits: the kernel panics
	HealthHang Health = "hang"  // init hangs: the watchdog resets
	HealthWait Health = "wait"  // init takes commands without marking good
)

// RootDir makes (once) a test root filesystem tree for a version and health.
func (a *Artefacts) RootDir(version string, h Health) (string, error) {
	return a.rootDir(version, h, 0, false)
}

// rootDir makes a test root; with data, it has the folder /data (stage 2
// mounts the data partition there).
func (a *Artefacts) rootDir(version string, h Health, padMiB int, data bool) (string, error) {
	name := fmt.Sprintf("%s-%s-%d", version, h, padMiB)
	if data {
		name += "-data"
	}
	final := filepath.Join(a.Dir, "roots", name)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	// Parallel scenarios may ask for the same root at once: each builds
	// its own copy and renames it into place; the first rename wins and
	// the others use it (a reader never sees a half-written tree).
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(filepath.Dir(final), ".tmp-root-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir) // gone once renamed
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	dirs := []string{"sbin", "bin", "etc/keel-test", "proc", "sys", "dev", "run", "tmp", EnrolmentDir[1:]}
	if data {
		dirs = append(dirs, "data")
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	files := map[string]string{a.TestInit: "sbin/init", a.Keel: "bin/keel"}
	for _, n := range secureboot.KeyNames {
		files[filepath.Join(a.Enrolment, secureboot.AuthFile(n))] = filepath.Join(EnrolmentDir[1:], secureboot.AuthFile(n))
	}
	for src, dst := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o755); err != nil {
			return "", err
		}
	}
	if padMiB > 0 {
		// Incompressible filler: the root's size for boot-cost benchmarks.
		os.MkdirAll(filepath.Join(dir, "var"), 0o755)
		f, err := os.Create(filepath.Join(dir, "var", "pad"))
		if err != nil {
			return "", err
		}
		_, err = io.CopyN(f, rand.Reader, int64(padMiB)<<20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	// The health check reads the canary; CorruptRoot flips a byte of it
	// on disk, under the verity tree.
	canary := strings.Repeat(canaryPattern+"\n", 64<<10/(len(canaryPattern)+1))
	for name, v := range map[string]string{"version": version, "health": string(h), "canary": canary} {
		if err := os.WriteFile(filepath.Join(dir, "etc/keel-test", name), []byte(v+"\n"), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Rename(dir, final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return final, nil // another scenario's copy won
		}
		return "", err
	}
	return final, nil
}

// SlotSpec describes one slot of a test disk. CorruptKernel, UnknownKey
// and CorruptRoot break the slot: Disk builds a good image and then
// damages it with package builder/image/imagetest.
type SlotSpec struct {
	Version         string
	SecurityVersion uint64
	Health          Health
	Empty           bool
	// CorruptKernel flips a byte of the kernel in the slot container, so
	// that it no longer matches the signed manifest.
	CorruptKernel bool
	// UnknownKey signs the slot with a key keel-init does not trust (and
	// with no other).
	UnknownKey bool
	// CorruptRoot flips a byte of the health check's canary file in the
	// root filesystem, under the verity tree.
	CorruptRoot bool
	// PadMiB adds a file of that many MiB to the root filesystem.
	PadMiB int
	// VendorKernel puts the kernel in the slot as Debian signed it, not
	// signed with the db key: under Secure Boot keel-init refuses it.
	VendorKernel bool
	// Data gives the test root the folder /data: stage 2 mounts the data
	// partition there, with the slot's area on /data/slot (package
	// initramfs/dataarea).
	Data bool
	// RootDir, if set, is a prebuilt root file system tree for the slot
	// (a Debian root from make debian-root, say) instead of a test root
	// with the test init: Health and PadMiB do not apply.
	RootDir string
}

// canaryPattern fills the test roots' /etc/keel-test/canary.
const canaryPattern = "KEEL-CANARY-DATA"

// SlotCmdline is the command line of the test slots' kernels.
const SlotCmdline = "console=ttyS0 panic=1 loglevel=4"

// KeelCmdline is keel's own kernel command line (in the UKI). The
// watchdog keel-init arms must survive the kexec: the watchdog core must
// not stop it on the way.
const KeelCmdline = "console=ttyS0 panic=1 loglevel=4 watchdog.stop_on_reboot=0"

// Disk builds a disk image with the given slots.
func (a *Artefacts) Disk(ctx context.Context, out string, slots map[string]SlotSpec, log io.Writer) error {
	return a.disk(ctx, out, slots, KeelCmdline, log)
}

func (a *Artefacts) disk(ctx context.Context, out string, slots map[string]SlotSpec, keelCmdline string, log io.Writer) error {
	spec := image.Spec{
		Board:       a.Board,
		Out:         out,
		KeelKernel:  a.Kernel,
		KeelInitrd:  a.Stage1,
		KeelCmdline: a.console(keelCmdline),
		Seed:        "keel-vmtest",
		SigningKeys: []string{a.SigningKey},
		// Signed always: the plain firmware ignores it, the Secure
		// Boot one checks it once the keys are enrolled. The slot
		// kernels come signed (SlotKernel) and stay as they are.
		SecureBootKeys: a.SecureBootKeys,
		Slots:          map[string]image.Slot{},
		Log:            log,
	}
	if a.Board.Firmware == boards.FirmwareUBoot {
		spec.SecureBootKeys = "" // UEFI Secure Boot does not apply
	}
	for _, s := range slots {
		// A vendor-signed kernel must stay so (the others are signed
		// already).
		spec.KeepKernelSignatures = spec.KeepKernelSignatures || s.VendorKernel && spec.SecureBootKeys != ""
	}
	for _, name := range a.Board.Slots {
		s, ok := slots[name]
		if !ok || s.Empty {
			spec.Slots[name] = image.Slot{Empty: true}
			continue
		}
		sl, err := a.imageSlot(s)
		if err != nil {
			return err
		}
		spec.Slots[name] = sl
	}
	// The key RecoverySeed puts a seed on the recovery partition.
	if s, ok := slots[RecoverySeed]; ok {
		sl, err := a.imageSlot(s)
		if err != nil {
			return err
		}
		spec.Recovery = &sl
	}
	if err := image.Build(ctx, spec); err != nil {
		return err
	}
	// Then break what the scenario wants broken.
	for name, s := range slots {
		if s.Empty || name != RecoverySeed && !slices.Contains(a.Board.Slots, name) {
			continue
		}
		if err := breakSlot(out, spec.Seed, name, s); err != nil {
			return err
		}
	}
	return nil
}

// breakSlot applies the slot's CorruptKernel, UnknownKey and CorruptRoot
// to the built disk image img; name is the slot, or RecoverySeed for the
// seed in the partition recovery.
func breakSlot(img, seed, name string, s SlotSpec) error {
	part := layout.SlotPartition(name)
	if name == RecoverySeed {
		part = layout.Recovery
	}
	if s.CorruptKernel {
		if err := imagetest.CorruptEntry(img, part, slotimg.EntryKernel); err != nil {
			return fmt.Errorf("vmkit: %w", err)
		}
	}
	if s.UnknownKey {
		if err := imagetest.Resign(img, part, imagetest.UnknownKey(seed+"/"+name)); err != nil {
			return fmt.Errorf("vmkit: %w", err)
		}
	}
	if s.CorruptRoot {
		var err error
		if name == RecoverySeed {
			err = imagetest.CorruptSeedRoot(img, []byte(canaryPattern))
		} else {
			err = imagetest.CorruptRoot(img, name, []byte(canaryPattern))
		}
		if err != nil {
			return fmt.Errorf("vmkit: %w", err)
		}
	}
	return nil
}

// RecoverySeed is the key of Disk's slots map that describes the seed on
// the recovery partition.
const RecoverySeed = "recovery"

func (a *Artefacts) imageSlot(s SlotSpec) (image.Slot, error) {
	h := s.Health
	if h == "" {
		h = Healthy
	}
	root := s.RootDir
	if root == "" {
		var err error
		if root, err = a.rootDir(s.Version, h, s.PadMiB, s.Data); err != nil {
			return image.Slot{}, err
		}
	}
	kernel := a.SlotKernel
	if s.VendorKernel {
		kernel = a.Kernel
	}
	return image.Slot{
		Kernel: kernel, Initrd: a.Stage2, RootDir: root,
		Version: s.Version, SecurityVersion: s.SecurityVersion, Cmdline: a.console(SlotCmdline),
	}, nil
}

// console puts the board's console into a command line written for
// ttyS0 (KeelCmdline, SlotCmdline): console=ttyAMA0 on arm64's virt.
func (a *Artefacts) console(cmdline string) string {
	if a.Board.Console == "" || a.Board.Console == "ttyS0" {
		return cmdline
	}
	return strings.ReplaceAll(cmdline, "console=ttyS0", "console="+a.Board.Console)
}

// BareDisk builds the benchmark's baseline disk: the same UKI and ESP, with
// the bare init's initramfs instead of keel's, and empty slots.
func (a *Artefacts) BareDisk(ctx context.Context, out string) error {
	spec := image.Spec{Board: a.Board, Out: out, KeelKernel: a.Kernel, KeelInitrd: a.Bare, SecureBootKeys: a.SecureBootKeys,
		KeelCmdline: a.console(KeelCmdline), Seed: "keel-bench", Slots: map[string]image.Slot{}}
	if a.Board.Firmware == boards.FirmwareUBoot {
		spec.SecureBootKeys = "" // UEFI Secure Boot does not apply
	}
	for _, name := range a.Board.Slots {
		spec.Slots[name] = image.Slot{Empty: true}
	}
	return image.Build(ctx, spec)
}

// accel is the QEMU accelerator choice: TCG (no KVM here).
func accel() string {
	if runtime.GOOS == "linux" {
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			if os.Getenv("KEEL_KVM") == "1" {
				return "kvm"
			}
		}
	}
	return "tcg"
}

// QEMUArgs are the arguments for the board's machine with the given disk,
// UEFI variable store and swtpm control socket ("" for no TPM); secureBoot
// runs the board's SecureBootCode (with SMM) instead of its Code.
//
// A U-Boot board runs its firmware with -bios and has no variable store
// (vars is ignored): U-Boot's own env is not keel's state.
func QEMUArgs(b boards.Board, disk, vars, tpmSock string, secureBoot bool) []string {
	q := b.QEMU
	if b.Firmware == boards.FirmwareUBoot {
		args := []string{
			"-M", q.Machine + ",accel=" + accel(), "-cpu", q.CPU, "-m", fmt.Sprint(q.MemoryMB),
			"-display", "none", "-serial", "stdio", "-monitor", "none", "-nodefaults", "-net", "none",
			"-bios", q.Code,
			"-drive", "file=" + disk + ",format=raw,if=none,id=disk0",
			"-device", "virtio-blk-pci,drive=disk0",
		}
		return append(args, q.Extra...)
	}
	machine, code := q.Machine+",accel="+accel(), q.Code
	var sb []string
	if secureBoot {
		// OVMF's secboot build keeps its variables in SMM: the
		// variable store is writable only from SMM, so that an OS
		// cannot write db behind the firmware's back.
		machine, code = q.Machine+",smm=on,accel="+accel(), q.SecureBootCode
		sb = []string{"-global", "driver=cfi.pflash01,property=secure,value=on"}
	}
	args := append(sb,
		"-M", machine, "-cpu", q.CPU, "-m", fmt.Sprint(q.MemoryMB),
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-nodefaults", "-net", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+disk+",format=raw,if=none,id=disk0",
		"-device", "virtio-blk-pci,drive=disk0",
	)
	if tpmSock != "" && q.TPM != "" {
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+tpmSock,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", q.TPM+",tpmdev=tpm0")
	}
	return append(args, q.Extra...)
}

// CopyVars makes a machine's own copy of the board's UEFI variable store.
// A board without one (U-Boot) gets an empty file, which QEMUArgs ignores.
func CopyVars(b boards.Board, dst string) error {
	if b.QEMU.Vars == "" {
		return os.WriteFile(dst, nil, 0o644)
	}
	data, err := os.ReadFile(b.QEMU.Vars)
	if err != nil {
		return fmt.Errorf("vmkit: UEFI variable store template: %w (install ovmf)", err)
	}
	return os.WriteFile(dst, data, 0o644)
}

// StartTPM starts swtpm with its state in dir and returns the control
// socket QEMU connects to. swtpm exits when QEMU disconnects; stop kills it
// if it has not.
func StartTPM(ctx context.Context, dir string) (sock string, stop func(), err error) {
	state := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", nil, err
	}
	sock = filepath.Join(dir, "swtpm.sock")
	// A swtpm killed with its machine (a power cut) leaves its socket
	// behind: remove it, or the wait below would see the stale one and
	// QEMU could connect before the new swtpm listens.
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state, "--ctrl", "type=unixio,path="+sock, "--flags", "not-need-init")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("vmkit: starting swtpm (install swtpm): %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return "", nil, fmt.Errorf("vmkit: swtpm did not create %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return sock, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}, nil
}

// Tools lists the host tools the VM tests need, for a clear error.
func Tools(b boards.Board) []string {
	if b.Firmware == boards.FirmwareUBoot {
		return []string{b.QEMU.Binary, "mkfs.vfat", "mcopy", "mkfs.erofs", "mkimage", "mkfs.ext4"}
	}
	return []string{b.QEMU.Binary, "swtpm", "mkfs.vfat", "mcopy", "mkfs.erofs", "objcopy", "mkfs.ext4"}
}

// CheckTools fails with the missing tools named.
func CheckTools(b boards.Board) error {
	var missing []string
	for _, t := range Tools(b) {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	files := []string{b.QEMU.Code, b.QEMU.Vars, image.DefaultStub}
	if b.Firmware == boards.FirmwareUBoot {
		files = []string{b.QEMU.Code} // u-boot-qemu's u-boot.bin
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("vmkit: missing %s: run make deps", strings.Join(missing, ", "))
	}
	return nil
}

// debugCommands are the u-root commands of the optional debug cpio (for
// development images only). u-root is pinned in go.mod as a tool.
var debugCommands = [...]string{"gosh", "ls", "cat", "dmesg", "mount", "ps"}

// DebugMarker is what the debug cpio holds at layout.DebugPath, the
// development-build marker that enables keel-init's debug shell.
const DebugMarker = "development build: debug shell enabled\n"

// BuildDebugCpio builds the debug cpio (a u-root busybox with a shell and a
// few core commands, /bin/sh -> gosh, and the development-build marker at
// layout.DebugPath) with `go tool u-root` into out. As `make debug-cpio`.
func BuildDebugCpio(ctx context.Context, root, out string) error {
	marker := out + ".marker"
	if err := os.WriteFile(marker, []byte(DebugMarker), 0o644); err != nil {
		return err
	}
	defer os.Remove(marker)
	args := []string{"tool", "u-root", "-format=cpio", "-o", out, "-base=/dev/null", "-initcmd=", "-defaultsh=gosh",
		"-files", marker + ":" + strings.TrimPrefix(layout.DebugPath, "/")}
	for _, c := range debugCommands {
		args = append(args, "github.com/u-root/u-root/cmds/core/"+c)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("vmkit: go tool u-root: %w\n%s", err, out)
	}
	return nil
}

// DebugDisk builds a development disk: keel's initramfs followed by the
// debug cpio (the kernel unpacks concatenated archives), which carries the
// development-build marker (layout.DebugPath) with the shell, so that
// keel-init opens a shell instead of stopping. keel's command line is the
// production one: no parameter there enables the shell.
func (a *Artefacts) DebugDisk(ctx context.Context, root, out string, slots map[string]SlotSpec) error {
	dbg := filepath.Join(a.Dir, "debug.cpio")
	if _, err := os.Stat(dbg); err != nil {
		if err := BuildDebugCpio(ctx, root, dbg); err != nil {
			return err
		}
	}
	stage1, err := os.ReadFile(a.Stage1)
	if err != nil {
		return err
	}
	d, err := os.ReadFile(dbg)
	if err != nil {
		return err
	}
	// The kernel takes the next archive only at a 4-byte boundary
	// (init/initramfs.c, unpack_to_rootfs); zeros in between are skipped.
	for len(stage1)%4 != 0 {
		stage1 = append(stage1, 0)
	}
	combined := filepath.Join(a.Dir, "stage1-debug.cpio")
	if err := os.WriteFile(combined, append(stage1, d...), 0o644); err != nil {
		return err
	}
	dev := *a
	dev.Stage1 = combined
	return dev.disk(ctx, out, slots, KeelCmdline, nil)
}
