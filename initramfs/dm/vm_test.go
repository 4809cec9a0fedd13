package dm

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/testkit/testkernel"
	"github.com/keelboot/keel/vmtests/vmrun"
)

// TestMain doubles as the init of a tiny VM: TestInVM boots Debian's
// kernel (make kernel) with an initramfs whose /init is this test binary,
// so the live device-mapper tests run against a kernel with device-mapper
// even where the host's has none.
func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		os.Exit(vmInit(m))
	}
	os.Exit(m.Run())
}

const vmExitMarker = "keel-dm-vm: exit"

// vmInit is PID 1 in the VM: mounts, loads the modules listed in /modules
// (in order), runs TestInVM (whose subtests are the live tests) and powers
// off.
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
	code := 1
	if err := loadModules("/modules"); err != nil {
		fmt.Println(err)
	} else {
		flag.Set("test.v", "true")
		flag.Set("test.run", "^TestInVM$")
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

// liveTests run as PID 1 of the VM.
var liveTests = []struct {
	name string
	fn   func(*testing.T)
}{
	{"Linear", liveLinear},
	{"NoDevtmpfs", liveNoDevtmpfs},
	{"Verity", liveVerity},
}

// TestInVM runs the live device-mapper tests (linear and verity targets
// over loop devices, a /dev without devtmpfs) in a VM with Debian's kernel;
// as PID 1 of that VM it is those tests.
func TestInVM(t *testing.T) {
	if os.Getpid() == 1 {
		for _, lt := range liveTests {
			t.Run(lt.name, lt.fn)
		}
		return
	}
	if testing.Short() {
		t.Skip("boots a VM: not with -short")
	}
	kdir := testkernel.Dir(t, "amd64")
	initrd, list, err := vmrun.InitWithModules(t.TempDir(), vmrun.StaticTestBinary(t), kdir+"/modules", []string{"loop", "dm-mod", "dm-verity"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("modules: %s", strings.Join(list, " "))
	start := time.Now()
	text, err := vmrun.Machine{Arch: "amd64", Kernel: kdir + "/vmlinuz", Initrd: initrd}.Run(context.Background())
	t.Logf("VM ran %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, text)
	}

	// Echo the tests' own lines; all must pass, none skip.
	var passed []string
	result := -1
	exitRE := regexp.MustCompile(regexp.QuoteMeta(vmExitMarker) + ` (\d+)`)
	passRE := regexp.MustCompile(`--- PASS: (\S+)`)
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "---") || strings.Contains(line, "live_test.go") || strings.HasPrefix(line, "===") || strings.Contains(line, vmExitMarker) || strings.Contains(line, "device-mapper:") {
			t.Log("vm: " + line)
		}
		if m := passRE.FindStringSubmatch(line); m != nil {
			passed = append(passed, m[1])
		}
		if m := exitRE.FindStringSubmatch(line); m != nil {
			fmt.Sscan(m[1], &result)
		}
	}
	if result != 0 {
		t.Fatalf("the tests in the VM did not pass (exit %d); console:\n%s", result, text)
	}
	for _, want := range []string{"TestInVM/Linear", "TestInVM/NoDevtmpfs", "TestInVM/Verity", "TestInVM/Verity/superblock=false", "TestInVM/Verity/superblock=true"} {
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
