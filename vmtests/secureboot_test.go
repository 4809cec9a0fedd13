package vmtests

import (
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/image/imagetest"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// secureBootState runs `keel secureboot status` in the booted slot.
func (r *run) secureBootState() string {
	r.t.Helper()
	rc, out, err := r.r.KeelOutput("secureboot status")
	r.check(err)
	if rc != 0 {
		r.t.Fatalf("keel secureboot status: rc=%d\n%s", rc, out)
	}
	return out
}

// TestSecureBoot is a device's life under UEFI Secure Boot, on the board's
// Secure Boot firmware (OVMF's secboot build, SMM on):
//
//  1. The factory step. The firmware starts in setup mode (no keys): it
//     boots keel's signed UKI without checking it; the slot enrols keel's
//     keys (keel secureboot enroll, from the enrolment files in its root).
//  2. From the next boot the firmware enforces Secure Boot and the chain
//     still boots: the UKI passes the firmware's check, Debian's kernel
//     runs in lockdown, keel-init's kexec of slot a (its kernel signed
//     with the db key by the image builder) passes the kernel's signature
//     check.
//  3. Slot b holds a kernel as Debian signed it (not by a key in db): tried,
//     keel-init refuses it before kexec, naming Secure Boot, and a boots.
//  4. An unsigned UKI on the ESP (an attacker with write access to the
//     disk): the firmware refuses to start it.
func TestSecureBoot(t *testing.T) {
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1, VendorKernel: true},
	})
	m.SecureBoot = true

	// 1. Setup mode: enrol.
	r := m.powerOn(2 * bootTimeout)
	r.booted("a", "1.0")
	st := r.secureBootState()
	mustContain(t, "status in setup mode", st, "secure boot: off")
	mustContain(t, "status in setup mode", st, "setup mode: on")
	rc, out, err := r.r.KeelOutput("secureboot enroll " + vmkit.EnrolmentDir)
	r.check(err)
	if rc != 0 {
		t.Fatalf("keel secureboot enroll: rc=%d\n%s", rc, out)
	}
	mustContain(t, "enroll", out, "the firmware left setup mode")

	// 2. Enforced.
	r.reboot()
	r.expect("Secure Boot: on; slot kernels must be signed by db")
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Fatalf("slot a booted in mode %s", mode)
	}
	st = r.secureBootState()
	for _, want := range []string{"secure boot: on", "setup mode: off", "kernel lockdown: integrity"} {
		if !strings.Contains(st, want) {
			t.Fatalf("after enrolment: %q, want %q", st, want)
		}
	}

	// 3. A slot kernel not signed by db.
	r.keel("try b", 0)
	r.reboot()
	r.expect(`would refuse to kexec this kernel (build the slot with secure_boot_keys: the image builder signs slot kernels with the db key): secureboot: the kernel is not signed by a key the firmware's db holds: its first signature is by "Debian Secure Boot Signer`)
	if mode := r.booted("a", "1.0"); mode != "fallback" {
		t.Fatalf("after b was refused: slot a in mode %s", mode)
	}
	s := r.status()
	mustContain(t, "last boot reason", s.LastBoot.Reason+" "+s.Raw, "Secure Boot")
	r.powerOff()

	// 4. An unsigned UKI.
	if err := imagetest.UnsignUKI(m.Disk); err != nil {
		t.Fatal(err)
	}
	r = m.powerOn(bootTimeout)
	r.expect("Access Denied")
	r.r.Kill()
}
