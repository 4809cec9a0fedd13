package vmtests

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keelboot/keel/vmtests/vmkit"
)

// Scenario 1: a new device: no state yet; keel initialises it, boots a,
// and a marks itself good.
func TestFirstBoot(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	r := m.powerOn(bootTimeout)
	r.expect("no boot state yet: initialising")
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Errorf("mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if deref(s.Active) != "a" || s.Trial != nil || s.Slots["a"].State != "good" || s.Slots["b"].State != "empty" {
		t.Errorf("status after first boot: %+v", s)
	}
	if s.Slots["a"].Version != "1.0" {
		t.Errorf("slot a version %q, want 1.0 (from its manifest)", s.Slots["a"].Version)
	}
	r.powerOff()
}

// Scenario 2: an update that commits: b holds 2.0; `keel try b` from the
// running a; the reboot boots b on trial; b marks good; the next boot takes
// b again, and a stays good as the fallback.
func TestUpdateCommit(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		// b's security version equals a's: keel-init's first start makes
		// the highest security version active (both good), and this
		// story starts on a.
		"b": {Version: "2.0", SecurityVersion: 1},
	})
	r := m.powerOn(2 * bootTimeout)
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 2", 0)
	r.reboot()
	if mode := r.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if deref(s.Active) != "b" || s.Trial != nil || s.Slots["a"].State != "good" {
		t.Errorf("after b marked good: %+v", s)
	}
	r.reboot()
	if mode := r.booted("b", "2.0"); mode != "normal" {
		t.Errorf("b booted in mode %s, want normal", mode)
	}
	r.powerOff()
}

// Scenario 3: a failed trial: b's health check fails (or its init makes the
// kernel panic, or hangs until the watchdog keel-init armed resets the
// machine); after its tries keel falls back to a, which never lost a try,
// and `keel status --json` inside a says why b is bad.
func TestFailedTrial(t *testing.T) {
	for _, h := range []vmkit.Health{vmkit.HealthFail, vmkit.HealthPanc, vmkit.HealthHang} {
		t.Run(string(h), func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, map[string]vmkit.SlotSpec{
				"a": {Version: "1.0", SecurityVersion: 1},
				"b": {Version: "2.0", SecurityVersion: 1, Health: h},
			})
			r := m.powerOn(4 * bootTimeout)
			r.booted("a", "1.0")
			r.expect("KEEL-MARKED-GOOD")
			// A hang costs a watchdog timeout per try: one try is enough.
			tries := 2
			if h == vmkit.HealthHang {
				tries = 1
			}
			r.keel(fmt.Sprintf("try b --tries %d", tries), 0)
			r.reboot()
			for i := 0; i < tries; i++ {
				if mode := r.booted("b", "2.0"); mode != "trial" {
					t.Fatalf("try %d: b in mode %s", i+1, mode)
				}
			}
			if mode := r.booted("a", "1.0"); mode != "fallback" {
				t.Errorf("a came back in mode %s, want fallback", mode)
			}
			s := r.status()
			b := s.Slots["b"]
			if b.State != "bad" || b.Reason == "" {
				t.Errorf("b = %+v, want bad with a reason", b)
			}
			mustContain(t, "b's reason", b.Reason, "no tries left")
			if deref(s.Active) != "a" || s.Slots["a"].State != "good" || s.Slots["a"].TriesLeft != 0 {
				t.Errorf("a = %+v, active %s", s.Slots["a"], deref(s.Active))
			}
			r.powerOff()
		})
	}
}

// Scenario 4: both slots unbootable (a's manifest is signed by a key keel
// does not trust, b's kernel does not match its manifest): keel says there
// is no bootable slot, why, and stops (powers off) with the state kept.
func TestNoBootableSlot(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1, UnknownKey: true},
		"b": {Version: "2.0", SecurityVersion: 2, CorruptKernel: true},
	})
	r := m.powerOn(bootTimeout)
	r.expect("slot a does not verify: slot-a")
	r.expect("slot b does not verify: slot-b: kernel digest mismatch")
	why := r.expectRe(reLine("NO BOOTABLE SLOT"))
	mustContain(t, "halt message", why[0], "a bad (slot-a")
	mustContain(t, "halt message", why[0], "unknown key")
	mustContain(t, "halt message", why[0], "b bad (slot-b: kernel digest mismatch")
	r.expect("powering off")
	r.wait()
	// A second power-on finds the state intact and says the same.
	r2 := m.powerOn(bootTimeout)
	r2.expect("decision: recovery")
	st := r2.expectRe(reLine("KEEL-STATE"))
	mustContain(t, "state", st[0], `"keel_slot_a_state":"bad"`)
	mustContain(t, "state", st[0], `"keel_slot_b_state":"bad"`)
	mustContain(t, "state", st[0], `kernel digest mismatch`)
	r2.expect("NO BOOTABLE SLOT")
	r2.wait()
}

// A flipped block in b's root filesystem: the root is mapped through
// dm-verity with the root hash from b's signed manifest, so reading the
// block fails verification and restarts the machine (restart_on_corruption)
// before b can mark itself good; its try is used up, b is marked bad and a
// boots again.
func TestVerityCorruptRoot(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1, CorruptRoot: true},
	})
	r := m.powerOn(2 * bootTimeout)
	r.expect("dm-verity: /dev/dm-0 maps root-a")
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 1", 0)
	r.reboot()
	r.expect("dm-verity: /dev/dm-0 maps root-b")
	if mode := r.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b in mode %s", mode)
	}
	r.expect("data block")
	if mode := r.booted("a", "1.0"); mode != "fallback" {
		t.Errorf("a came back in mode %s, want fallback", mode)
	}
	s := r.status()
	if b := s.Slots["b"]; b.State != "bad" {
		t.Errorf("b = %+v, want bad", b)
	}
	r.powerOff()
}

// A development image (keel's initramfs plus the u-root debug cpio, which
// carries the development-build marker; keel's command line has no
// keel.debug=1): keel-init says so at start and, when nothing can boot,
// opens a shell on the console instead of powering off.
func TestDebugShell(t *testing.T) {
	t.Parallel()
	art := artefacts(t)
	root, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vm := &vmkit.Machine{Art: art, Dir: dir, Disk: filepath.Join(dir, "disk.img"), Vars: filepath.Join(dir, "OVMF_VARS.fd")}
	if err := art.DebugDisk(context.Background(), root, vm.Disk, map[string]vmkit.SlotSpec{"a": {Empty: true}, "b": {Empty: true}}); err != nil {
		t.Fatal(err)
	}
	if err := vmkit.CopyVars(art.Board, vm.Vars); err != nil {
		t.Fatal(err)
	}
	m := &machine{t: t, Machine: vm}
	r := m.powerOn(bootTimeout)
	r.expect("DEVELOPMENT BUILD: debug shell enabled")
	r.expect("watchdog armed")
	r.expect("NO BOOTABLE SLOT")
	r.expect("KEEL-DEBUG-SHELL")
	r.check(r.r.Send("ls /bbin"))
	r.expect("gosh")
	r.check(r.r.Send("exit"))
	r.expect("powering off")
	r.wait()
}

// Issue 4: a flipped byte in b's kernel: keel-init refuses b (its kernel
// does not match the signed manifest), marks it bad with the reason, and
// boots a in the same boot.
func TestCorruptKernelFallsBack(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1, CorruptKernel: true},
	})
	r := m.powerOn(2 * bootTimeout)
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 3", 0)
	r.reboot()
	r.expect("slot b failed: slot-b: kernel digest mismatch")
	if mode := r.booted("a", "1.0"); mode != "fallback" {
		t.Errorf("a booted in mode %s, want fallback", mode)
	}
	s := r.status()
	mustContain(t, "b's reason", s.Slots["b"].Reason, "kernel digest mismatch")
	if s.Slots["b"].State != "bad" || deref(s.Active) != "a" {
		t.Errorf("status %+v", s)
	}
	r.powerOff()
}
