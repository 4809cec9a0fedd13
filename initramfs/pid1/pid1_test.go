//go:build linux

package pid1

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// A stage-1 command line as an unauthenticated U-Boot env could give it:
// every parameter that used to choose something.
const hostileLine = "console=ttyS0 keel.stage=2 keel.slot=a keel.mode=normal keel.rootfstype=erofs " +
	"keel.verity=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,-,1,4096 " +
	"keel.debug=1 keel.recovery=1 keel.factory_reset=1"

// fake records what run did.
type fake struct {
	stage1, stage2, shell int
	line                  string
	halts                 []int
}

func (f *fake) system(root, line string, pid1 bool) system {
	return system{
		root:    root,
		mount:   func(sysinit.Logf) error { return nil },
		cmdline: func() string { return line },
		stage1: func(context.Context, sysinit.Logf) error {
			f.stage1++
			return errors.New("NO BOOTABLE SLOT")
		},
		stage2: func(_ context.Context, line string, _ sysinit.Logf) error {
			f.stage2++
			f.line = line
			return errors.New("stage 2 failed")
		},
		shell: func(sysinit.Logf) { f.shell++ },
		pid1:  pid1,
		halt:  func(_ sysinit.Logf, _ string, cmd int) { f.halts = append(f.halts, cmd) },
	}
}

// initramfs makes a root with the files given (path -> content).
func initramfs(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestStageFromTheInitramfsNotTheCommandLine(t *testing.T) {
	// Item 8: keel.stage=2 keel.verity=… on keel's own command line must
	// not make keel-init map a root: the archive says stage 1.
	var f fake
	var out bytes.Buffer
	root := initramfs(t, map[string]string{layout.StagePath: "1\n", "/bin/sh": "#!"})
	run(context.Background(), &out, f.system(root, hostileLine, true))
	if f.stage1 != 1 || f.stage2 != 0 {
		t.Errorf("stage 1 ran %d times, stage 2 %d times; want stage 1 once\n%s", f.stage1, f.stage2, out.String())
	}
	if f.shell != 0 {
		t.Errorf("keel.debug=1 on the command line opened the debug shell in a build without %s\n%s", layout.DebugPath, out.String())
	}
	if len(f.halts) != 1 || f.halts[0] != unix.LINUX_REBOOT_CMD_POWER_OFF {
		t.Errorf("halts %#x, want one power off", f.halts)
	}
	if strings.Contains(out.String(), "DEVELOPMENT BUILD") {
		t.Errorf("a production build says DEVELOPMENT BUILD:\n%s", out.String())
	}
}

func TestStage2(t *testing.T) {
	var f fake
	var out bytes.Buffer
	root := initramfs(t, map[string]string{layout.StagePath: "2\n"})
	run(context.Background(), &out, f.system(root, hostileLine, true))
	if f.stage1 != 0 || f.stage2 != 1 || f.line != hostileLine {
		t.Errorf("stage 1 ran %d times, stage 2 %d times with %q; want stage 2 once with the kernel's command line", f.stage1, f.stage2, f.line)
	}
	if f.shell != 0 {
		t.Error("debug shell in a production stage 2")
	}
	if len(f.halts) != 1 || f.halts[0] != unix.LINUX_REBOOT_CMD_RESTART {
		t.Errorf("halts %#x, want one restart (the slot's try is used)", f.halts)
	}
}

func TestNoStageFilePowersOff(t *testing.T) {
	var f fake
	var out bytes.Buffer
	root := initramfs(t, map[string]string{"/etc/keel/board.json": "{}"})
	run(context.Background(), &out, f.system(root, hostileLine, true))
	if f.stage1 != 0 || f.stage2 != 0 {
		t.Errorf("without a stage file stage 1 ran %d times, stage 2 %d times; want neither", f.stage1, f.stage2)
	}
	if len(f.halts) != 1 || f.halts[0] != unix.LINUX_REBOOT_CMD_POWER_OFF {
		t.Errorf("halts %#x, want one power off", f.halts)
	}
	if !strings.Contains(out.String(), "NO STAGE") || !strings.Contains(out.String(), layout.StagePath) {
		t.Errorf("the console does not say why:\n%s", out.String())
	}
}

func TestDevelopmentBuildOpensTheShell(t *testing.T) {
	var f fake
	var out bytes.Buffer
	root := initramfs(t, map[string]string{layout.StagePath: "1", layout.DebugPath: "", "/bin/sh": "#!"})
	run(context.Background(), &out, f.system(root, "console=ttyS0", true))
	if f.stage1 != 1 || f.shell != 1 {
		t.Errorf("stage 1 ran %d times, the shell %d times; want once each", f.stage1, f.shell)
	}
	if !strings.Contains(out.String(), "DEVELOPMENT BUILD: debug shell enabled") {
		t.Errorf("a development build does not say so:\n%s", out.String())
	}
	if dev, fail := strings.Index(out.String(), "DEVELOPMENT BUILD"), strings.Index(out.String(), "NO BOOTABLE SLOT"); dev > fail {
		t.Errorf("DEVELOPMENT BUILD is not said at start, before the stage runs:\n%s", out.String())
	}
	if len(f.halts) != 1 || f.halts[0] != unix.LINUX_REBOOT_CMD_POWER_OFF {
		t.Errorf("halts %#x, want one power off after the shell", f.halts)
	}
}

func TestNotPID1(t *testing.T) {
	var f fake
	root := initramfs(t, map[string]string{layout.StagePath: "1", layout.DebugPath: ""})
	if code := run(context.Background(), new(bytes.Buffer), f.system(root, "", false)); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if f.shell != 0 || len(f.halts) != 0 {
		t.Errorf("not PID 1: shell %d, halts %#x; want neither", f.shell, f.halts)
	}
}
