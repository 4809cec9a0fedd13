// Package vmrun boots a Linux kernel directly in QEMU (-kernel/-initrd, no
// firmware, no disk) with an initramfs whose /init is a test program, and
// returns the serial console: the harness for tests that need a real
// kernel (device-mapper, module loading, archive unpacking) but no disk
// image. Disk images booted through firmware (OVMF, swtpm) use package
// vmtests/vmkit.
package vmrun

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/builder/kmod"
	"github.com/keelboot/keel/format/cpio"
)

// Machine is one direct-boot QEMU run.
type Machine struct {
	// Arch is the kernel's Debian architecture: amd64 (q35) or arm64
	// (virt, cortex-a57).
	Arch string
	// Kernel and Initrd are the files QEMU loads.
	Kernel, Initrd string
	// Append is added to the kernel command line after the console.
	Append string
	// MemoryMB defaults to 512.
	MemoryMB int
	// Timeout bounds the run; 0 means 5 minutes.
	Timeout time.Duration
}

// Accel is the QEMU accelerator and CPU: TCG unless KEEL_KVM=1 and
// /dev/kvm opens (KVM is not usable on every machine that has /dev/kvm).
func Accel() (accel, cpu string) {
	if os.Getenv("KEEL_KVM") == "1" {
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			return "kvm", "host"
		}
	}
	return "tcg", "max"
}

// Run boots the machine until it powers off (the init must power off or
// panic; -no-reboot turns a reboot into an exit) and returns the console
// with \r\n turned into \n. A QEMU that cannot start is an error; what the
// guest printed is for the caller to judge (a kernel panic still exits 0).
func (m Machine) Run(ctx context.Context) (string, error) {
	var bin, console string
	var args []string
	accel, cpu := Accel()
	switch m.Arch {
	case "amd64":
		bin, console = "qemu-system-x86_64", "ttyS0"
		args = []string{"-machine", "q35", "-cpu", cpu}
	case "arm64":
		bin, console = "qemu-system-aarch64", "ttyAMA0"
		args = []string{"-machine", "virt", "-cpu", "cortex-a57"}
		accel = "tcg"
	default:
		return "", fmt.Errorf("vmrun: no QEMU set up for arch %q", m.Arch)
	}
	qemu, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("vmrun: %w (scripts/install-deps.sh installs QEMU)", err)
	}
	mem := m.MemoryMB
	if mem == 0 {
		mem = 512
	}
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args = append(args, "-accel", accel, "-m", fmt.Sprint(mem), "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", m.Kernel, "-initrd", m.Initrd,
		"-append", strings.TrimSpace("console="+console+" panic=-1 loglevel=4 "+m.Append))
	out, err := exec.CommandContext(ctx, qemu, args...).CombinedOutput()
	text := strings.ReplaceAll(string(out), "\r\n", "\n")
	if ctx.Err() != nil {
		return text, fmt.Errorf("vmrun: the VM did not power off within %s", timeout)
	}
	if err != nil {
		return text, fmt.Errorf("vmrun: %s: %w", bin, err)
	}
	return text, nil
}

// InitWithModules writes an uncompressed initramfs to dir/initrd.cpio with
// init as /init, /dev/console, /proc, /sys, /tmp, the named modules of the
// kernel's modules folder (with their dependencies) under /lib/modules, and
// /modules listing their paths in load order. It returns the archive's path
// and the module paths.
func InitWithModules(dir string, init []byte, modulesDir string, modules []string) (string, []string, error) {
	var a cpio.Archive
	var list []string
	steps := []func() error{
		func() error { return a.File("init", 0o755, init) },
		func() error { return a.CharDev("dev/console", 0o600, 5, 1) },
		func() error { return a.Dir("proc", 0o755) },
		func() error { return a.Dir("sys", 0o755) },
		func() error { return a.Dir("tmp", 0o755) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return "", nil, err
		}
	}
	if len(modules) > 0 {
		modDir, err := filepath.EvalSymlinks(modulesDir)
		if err != nil {
			return "", nil, err
		}
		tree, err := kmod.Scan(modDir)
		if err != nil {
			return "", nil, err
		}
		order, err := tree.Resolve(modules, kmod.Options{})
		if err != nil {
			return "", nil, err
		}
		for _, m := range order {
			ko, err := os.ReadFile(filepath.Join(modDir, m.Path))
			if err != nil {
				return "", nil, err
			}
			p := "lib/modules/" + m.Path
			if err := a.File(p, 0o644, ko); err != nil {
				return "", nil, err
			}
			list = append(list, "/"+p)
		}
	}
	if err := a.File("modules", 0o644, []byte(strings.Join(list, "\n")+"\n")); err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(path)
	if err != nil {
		return "", nil, err
	}
	if _, err := a.WriteTo(f); err != nil {
		f.Close()
		return "", nil, err
	}
	return path, list, f.Close()
}

// StaticTestBinary returns the running test binary if it is statically
// linked, else builds a static one of the package in the working directory
// (CGO_ENABLED=0): an initramfs has no libc.
func StaticTestBinary(t testing.TB) []byte {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if ef, err := elf.Open(self); err == nil {
		dynamic := false
		for _, p := range ef.Progs {
			dynamic = dynamic || p.Type == elf.PT_INTERP
		}
		ef.Close()
		if !dynamic {
			b, err := os.ReadFile(self)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	out := filepath.Join(t.TempDir(), "static.test")
	cmd := exec.Command("go", "test", "-c", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
