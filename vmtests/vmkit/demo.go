package vmkit

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
)

// DemoOptions choose the demo's board and firmware.
type DemoOptions struct {
	// Board is the board to boot (boards.Get); empty: DefaultDemoBoard.
	Board string
	// SecureBoot runs a UEFI board's Secure Boot firmware: the first
	// power-on is the factory step (the slot enrols keel's keys), and
	// every boot after it is verified. Boards without one (U-Boot boards)
	// ignore it, and the demo says so.
	SecureBoot bool
}

// DefaultDemoBoard is the board the demo boots unless told otherwise.
const DefaultDemoBoard = "qemu-x86_64-uefi"

// Demo tells two stories on a board, booting it in QEMU from its disk
// through its firmware (OVMF with swtpm on qemu-x86_64-uefi, U-Boot
// running keel's boot.scr on qemu-arm64-uboot): an update that commits,
// and an update whose health check fails and falls back. It prints
// keel-init's console lines and what the slots say.
func Demo(ctx context.Context, root string, out io.Writer, o DemoOptions) error {
	if o.Board == "" {
		o.Board = DefaultDemoBoard
	}
	b, err := boards.Get(o.Board)
	if err != nil {
		return err
	}
	if err := CheckTools(b); err != nil {
		return err
	}
	secureBoot := o.SecureBoot && b.Firmware == boards.FirmwareUEFI && b.QEMU.SecureBootCode != ""
	dir, err := os.MkdirTemp("", "keel-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say := func(format string, args ...any) { fmt.Fprintf(out, "\n\033[1m==> "+format+"\033[0m\n", args...) }
	say("board %s (%s, %s firmware): building keel-init, the initramfs, the slots' stage-2 initrd and the test root filesystems", b.Name, b.Arch, b.Firmware)
	if o.SecureBoot && !secureBoot {
		say("UEFI Secure Boot does not apply to board %s: keel-init still enforces the slots' signatures and dm-verity", b.Name)
	}
	art, err := Build(ctx, root, dir, b, out)
	if err != nil {
		return err
	}
	console := qemu.LogSerialByLine(func(line string) {
		if strings.Contains(line, "keel-init:") || strings.Contains(line, "KEEL-") ||
			strings.HasPrefix(line, "slot ") || strings.Contains(line, "BdsDxe: starting") ||
			strings.HasPrefix(line, "Found U-Boot script") || strings.HasPrefix(line, "keel: loading keel") ||
			strings.Contains(line, "Secure Boot is enabled") || strings.HasPrefix(strings.TrimSpace(line), "enrolled ") {
			fmt.Fprintf(out, "    | %s\n", strings.TrimSpace(line))
		}
	})
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	booted := func(r *Run, wantSlot string) (string, error) {
		s, v, mode, err := r.Booted()
		if err != nil {
			return "", err
		}
		say("slot %s (version %s) is running, boot mode %s", s, v, mode)
		if s != wantSlot {
			return "", fmt.Errorf("booted slot %s, expected %s", s, wantSlot)
		}
		return mode, nil
	}
	showStatus := func(r *Run) error {
		s, err := r.Status()
		if err != nil {
			return err
		}
		say("keel status (inside the slot): active %s, generation %d", deref(s.Active), s.Generation)
		for _, name := range b.Slots {
			sl := s.Slots[name]
			line := fmt.Sprintf("      slot %s: %-5s version %-4s", name, sl.State, sl.Version)
			if sl.State == "trial" {
				line += fmt.Sprintf(" %d tries left", sl.TriesLeft)
			}
			if sl.Reason != "" {
				line += "  why: " + sl.Reason
			}
			fmt.Fprintln(out, line)
		}
		return nil
	}

	// Story 1.
	say("story 1: slot a runs 1.0; an update 2.0 was installed into slot b")
	m, err := NewMachine(ctx, art, mkdir(dir, "story1"), map[string]SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1}, "b": {Version: "2.0", SecurityVersion: 1}})
	if err != nil {
		return err
	}
	m.SecureBoot = secureBoot
	switch b.Firmware {
	case boards.FirmwareUBoot:
		say("power on: U-Boot runs boot.scr from the boot partition, which boots keel's kernel and initramfs; keel-init reads the state from the redundant U-Boot env on the bootstate partition")
	default:
		say("power on: OVMF boots keel's UKI from the ESP; keel-init reads the state from a UEFI variable")
	}
	r, err := m.PowerOn(ctx, 10*time.Minute, console)
	if err != nil {
		return err
	}
	defer r.Kill()
	if _, err := booted(r, "a"); err != nil {
		return err
	}
	if secureBoot {
		say("the factory step: the firmware is in setup mode (no keys); inside slot a: keel secureboot enroll %s", EnrolmentDir)
		if rc, err := r.Keel("secureboot enroll " + EnrolmentDir); err != nil || rc != 0 {
			return step("keel secureboot enroll", fmt.Errorf("rc %d, %v", rc, err))
		}
		say("reboot: from now on the firmware starts only images signed with keel's db key")
		if err := r.Reboot(); err != nil {
			return err
		}
		if _, err := booted(r, "a"); err != nil {
			return err
		}
	}
	say("inside slot a: keel try b --tries 2   (b may boot twice; if it never marks itself good, keel goes back to a)")
	if rc, err := r.Keel("try b --tries 2"); err != nil || rc != 0 {
		return step("keel try", fmt.Errorf("rc %d, %v", rc, err))
	}
	say("reboot")
	if err := r.Reboot(); err != nil {
		return err
	}
	if _, err := booted(r, "b"); err != nil {
		return err
	}
	say("slot b's health check passed: it ran keel mark-good")
	if err := showStatus(r); err != nil {
		return err
	}
	say("reboot: b is now the active slot")
	if err := r.Reboot(); err != nil {
		return err
	}
	if _, err := booted(r, "b"); err != nil {
		return err
	}
	if err := step("power off", r.PowerOff()); err != nil {
		return err
	}
	if b.Store == boards.StoreUBootEnv {
		say("on the host, after power-off: fw_printenv reads keel's record from the bootstate partition of the disk image")
		env, err := hostEnv(ctx, m.Disk, dir)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(env), "\n") {
			if strings.HasPrefix(l, "keel_") {
				fmt.Fprintf(out, "      %s\n", l)
			}
		}
	}

	// Story 2.
	say("story 2: slot a runs 1.0; an update 2.1 in slot b has a health check that fails")
	m2, err := NewMachine(ctx, art, mkdir(dir, "story2"), map[string]SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1}, "b": {Version: "2.1", SecurityVersion: 1, Health: HealthFail}})
	if err != nil {
		return err
	}
	m2.SecureBoot = secureBoot
	r2, err := m2.PowerOn(ctx, 15*time.Minute, console)
	if err != nil {
		return err
	}
	defer r2.Kill()
	if _, err := booted(r2, "a"); err != nil {
		return err
	}
	if secureBoot {
		say("the factory step for this device: keel secureboot enroll, reboot")
		if rc, err := r2.Keel("secureboot enroll " + EnrolmentDir); err != nil || rc != 0 {
			return step("keel secureboot enroll", fmt.Errorf("rc %d, %v", rc, err))
		}
		if err := r2.Reboot(); err != nil {
			return err
		}
		if _, err := booted(r2, "a"); err != nil {
			return err
		}
	}
	say("inside slot a: keel try b --tries 2")
	if rc, err := r2.Keel("try b --tries 2"); err != nil || rc != 0 {
		return step("keel try", fmt.Errorf("rc %d, %v", rc, err))
	}
	if err := r2.Reboot(); err != nil {
		return err
	}
	for i := 1; i <= 2; i++ {
		if _, err := booted(r2, "b"); err != nil {
			return err
		}
		say("slot b's health check failed (try %d of 2): it reboots without keel mark-good", i)
	}
	if _, err := booted(r2, "a"); err != nil {
		return err
	}
	say("b used up its tries: keel marked it bad and fell back to a, which lost nothing")
	if err := showStatus(r2); err != nil {
		return err
	}
	if err := step("power off", r2.PowerOff()); err != nil {
		return err
	}
	say("done: both stories ran on real firmware, a real kernel and keel's real PID 1")
	return nil
}

// hostEnv runs fw_printenv (libubootenv) on the redundant env in the
// bootstate partition of the disk image, with a config that names the two
// copies by their offsets in the image, and returns what it printed.
func hostEnv(ctx context.Context, disk, dir string) (string, error) {
	f, err := os.Open(disk)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", disk, err)
	}
	p, err := tab.Find(layout.Bootstate)
	if err != nil {
		return "", fmt.Errorf("%s: %w", disk, err)
	}
	conf := filepath.Join(dir, "fw_env.config")
	n := int64(ubootenv.BootstateEnvSize)
	text := fmt.Sprintf("%s %#x %#x\n%s %#x %#x\n", disk, p.Offset(), n, disk, p.Offset()+n, n)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "fw_printenv", "-c", conf).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("fw_printenv -c %s: %w\n%s", conf, err, out)
	}
	return string(out), nil
}

func mkdir(parent, name string) string {
	p := parent + "/" + name
	os.MkdirAll(p, 0o755)
	return p
}

func deref(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}
