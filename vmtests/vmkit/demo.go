package vmkit

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/boards"
)

// Demo tells two stories on the qemu-x86_64-uefi board, booting it in QEMU
// from its disk through OVMF with swtpm: an update that commits, and an
// update whose health check fails and falls back. It prints keel-init's
// console lines and what the slots say. With secureBoot (the default of
// keel-demo) the firmware is OVMF's Secure Boot build: the first power-on
// is the factory step (the slot enrols keel's keys), and every boot after
// it is verified; without, the plain build, Secure Boot off.
func Demo(ctx context.Context, root string, out io.Writer, secureBoot bool) error {
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		return err
	}
	if err := CheckTools(b); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keel-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say := func(format string, args ...any) { fmt.Fprintf(out, "\n\033[1m==> "+format+"\033[0m\n", args...) }
	say("building keel-init, the initramfs, the slots' stage-2 initrd and the test root filesystems")
	art, err := Build(ctx, root, dir, b, out)
	if err != nil {
		return err
	}
	console := qemu.LogSerialByLine(func(line string) {
		if strings.Contains(line, "keel-init:") || strings.Contains(line, "KEEL-") ||
			strings.HasPrefix(line, "slot ") || strings.Contains(line, "BdsDxe: starting") ||
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
	say("power on: OVMF boots keel's UKI from the ESP; keel-init reads the state from a UEFI variable")
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
