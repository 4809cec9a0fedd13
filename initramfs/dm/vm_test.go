package dm

import (
	"bufio"
	"context"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/builder/kmod"
	"github.com/keelboot/keel/format/cpio"
)

// TestMain doubles as the init of a tiny VM: TestInVM boots the Debian
// kernel (KEEL_KERNEL_DIR, as the kmod tests) with an initramfs whose /init
// is this test binary, so the TestLive* tests run against a kernel with
// device-mapper even where the host's has none.
func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		os.Exit(vmInit(m))
	}
	os.Exit(m.Run())
}

const vmExitMarker = "keel-dm-vm: exit"

// vmInit is PID 1 in the VM: mounts, loads the modules listed in /modules
// (in order), runs the TestLive* tests and powers off.
func vmInit(m *testing.M) int {
	for _, mnt := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		os.MkdirAll(mnt.dir, 0o755)
		if err := unix.Mount(mnt.src, mnt.dir, mnt.fs, 0, ""); err != nil {
			fmt.Printf("mount %s: %v\n", mnt.dir, err)
		}
	}
	os.Setenv("TMPDIR", "/tmp")
	os.Setenv("KEEL_DM_REQUIRE", "1")
	code := 1
	if err := loadModules("/modules"); err != nil {
		fmt.Println(err)
	} else {
		flag.Set("test.v", "true")
		flag.Set("test.run", "^TestLive")
		code = m.Run()
	}
	fmt.Printf("%s %d\n", vmExitMarker, code)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	return code
}

func loadModules(list string) error {
	b, err := os.ReadFile(list)
	if err != nil {
		return err
	}
	for _, path := range strings.Fields(string(b)) {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("finit_module %s: %w", path, err)
		}
	}
	return nil
}

func TestInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	// KEEL_KERNEL_DIR as in the kmod tests, else the kernel make test
	// fetches (make kernel: build/kernel/amd64).
	kdir := os.Getenv("KEEL_KERNEL_DIR")
	if kdir == "" {
		kdir = filepath.Join("..", "build", "kernel", "amd64")
		if _, err := os.Stat(filepath.Join(kdir, "vmlinuz")); err != nil {
			t.Skip("no kernel: run make kernel (or set KEEL_KERNEL_DIR) to run the device-mapper tests in a VM")
		}
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the VM run is for amd64 hosts and kernels (GOARCH=%s)", runtime.GOARCH)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps installs it)")
	}
	modDir, err := filepath.EvalSymlinks(filepath.Join(kdir, "modules"))
	if err != nil {
		t.Fatalf("KEEL_KERNEL_DIR=%s: %v", kdir, err)
	}
	tree, err := kmod.Scan(modDir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := tree.Resolve([]string{"loop", "dm-mod", "dm-verity"}, kmod.Options{})
	if err != nil {
		t.Fatal(err)
	}

	var a cpio.Archive
	bin := staticTestBinary(t)
	must(t, a.File("init", 0o755, bin))
	must(t, a.CharDev("dev/console", 0o600, 5, 1))
	for _, d := range []string{"proc", "sys", "tmp"} {
		must(t, a.Dir(d, 0o755))
	}
	var list []string
	for _, m := range order {
		ko, err := os.ReadFile(filepath.Join(modDir, m.Path))
		if err != nil {
			t.Fatal(err)
		}
		p := "lib/modules/" + m.Path
		must(t, a.File(p, 0o644, ko))
		list = append(list, "/"+p)
	}
	must(t, a.File("modules", 0o644, []byte(strings.Join(list, "\n")+"\n")))
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	args := []string{"-m", "512", "-smp", "1", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4"}
	// TCG unless KEEL_KVM=1, as internal/vmkit: KVM is not usable on every
	// machine that has /dev/kvm.
	accel, cpu := "tcg", "max"
	if os.Getenv("KEEL_KVM") == "1" {
		accel, cpu = "kvm", "host"
	}
	args = append(args, "-cpu", cpu)
	args = append(args, "-accel", accel)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Logf("modules: %s; accel %s", strings.Join(list, " "), accel)
	start := time.Now()
	out, err := exec.CommandContext(ctx, qemu, args...).CombinedOutput()
	t.Logf("VM ran %v (qemu: %v)", time.Since(start).Round(time.Millisecond), err)
	text := strings.ReplaceAll(string(out), "\r\n", "\n")

	// Echo the tests' own lines; all three must pass, none skip.
	var passed []string
	result := -1
	exitRE := regexp.MustCompile(regexp.QuoteMeta(vmExitMarker) + ` (\d+)`)
	s := bufio.NewScanner(strings.NewReader(text))
	for s.Scan() {
		line := s.Text()
		if strings.Contains(line, "---") || strings.Contains(line, "live_test.go") || strings.HasPrefix(line, "===") || strings.Contains(line, vmExitMarker) || strings.Contains(line, "device-mapper:") {
			t.Log("vm: " + line)
		}
		if m := regexp.MustCompile(`--- PASS: (\S+)`).FindStringSubmatch(line); m != nil {
			passed = append(passed, m[1])
		}
		if m := exitRE.FindStringSubmatch(line); m != nil {
			fmt.Sscan(m[1], &result)
		}
	}
	if result != 0 {
		t.Fatalf("the tests in the VM did not pass (exit %d); console:\n%s", result, text)
	}
	for _, want := range []string{"TestLiveLinear", "TestLiveNoDevtmpfs", "TestLiveVerity", "TestLiveVerity/superblock=false", "TestLiveVerity/superblock=true"} {
		found := false
		for _, p := range passed {
			found = found || p == want
		}
		if !found {
			t.Errorf("%s did not pass in the VM; console:\n%s", want, text)
		}
	}
	if strings.Contains(text, "--- SKIP") {
		t.Errorf("a test skipped in the VM; console:\n%s", text)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// staticTestBinary returns this test binary if it is statically linked,
// else builds a static one (CGO_ENABLED=0): the initramfs has no libc.
func staticTestBinary(t *testing.T) []byte {
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
	out := filepath.Join(t.TempDir(), "dm.test")
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
