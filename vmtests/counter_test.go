package vmtests

import (
	"testing"
	"time"

	"github.com/keelboot/keel/vmtests/vmkit"
)

// tpmAttack runs one attack on keel's anti-rollback counter as root in
// the booted slot (vmkit.Run.TPMAttack), checks the TPM's response code
// and that the slot's text contains each of want, and returns the text.
func (r *run) tpmAttack(name, wantRC string, want ...string) string {
	r.t.Helper()
	rc, text, err := r.r.TPMAttack(name)
	r.check(err)
	r.t.Logf("tpmattack %s: rc=%s %s", name, rc, text)
	if rc != wantRC {
		r.t.Errorf("tpmattack %s: rc=%s (%s), want rc=%s", name, rc, text, wantRC)
	}
	for _, w := range want {
		mustContain(r.t, "tpmattack "+name, text, w)
	}
	return text
}

// Scenario (issue 11): root in the booted OS attacks the anti-rollback
// counter, which keel-init keeps in the owner hierarchy here (OVMF
// randomises the platform authorization). a (security version 2) boots
// normally, so keel-init creates the counter and advances it to floor 2;
// b (security version 1) is prepared, the recovery seed has security
// version 3.
//
//  1. The counter is write-locked for the OS: TPM2_NV_Increment with
//     owner or index authorization and TPM2_NV_Write fail, the floor
//     stays 2.
//  2. `keel try b`; the owner deletes the counter (the documented
//     residual of an owner counter) and puts keel's old owner-written
//     layout at its handle, reading floor 0. At the reboot keel-init
//     reports KEEL-TAMPER and re-creates the counter, which the TPM starts
//     above the deleted one: floor 3, not 0. b is refused as a rollback,
//     and so is a (security version 2: the +1 the documented denial of
//     service costs); recovery installs the seed (security version 3),
//     which boots.
//  3. The OS inflates the TPM's highest deleted count (a counter of its
//     own, five increments, deleted), deletes keel's counter again and
//     squats its handle with an ordinary index holding 1: keel-init
//     replaces the squatter (KEEL-TAMPER), the re-created floor (8) is
//     above everything on the disk and keel-init stops with NO BOOTABLE
//     SLOT (the documented residual: loud, never a rollback).
func TestTPMCounterAttacks(t *testing.T) {
	t.Parallel()
	start := time.Now()
	m := newMachine(t, withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "2.0", SecurityVersion: 2},
		"b": {Version: "1.0", SecurityVersion: 1},
	}, vmkit.SlotSpec{Version: "3.0-seed", SecurityVersion: 3}))
	r := m.powerOn(4 * bootTimeout)
	r.expect("anti-rollback counter created in the owner hierarchy")
	r.expect("anti-rollback counter advanced to 2")
	ph := r.expectRe(reLine("platform hierarchy left as it is"))
	mustContain(t, "keel-init", ph[0], "TPM_RC_BAD_AUTH")
	if mode := r.booted("a", "2.0"); mode != "normal" {
		t.Errorf("a booted in mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")

	// 1. Locked: TPM_RC_NV_LOCKED is checked before the authorization.
	const floor2 = "counter now: floor 2"
	r.tpmAttack("increment-owner", "0x148", "TPM_RC_NV_LOCKED", floor2)
	r.tpmAttack("increment-index", "0x148", "TPM_RC_NV_LOCKED", floor2)
	r.tpmAttack("write-index", "0x148", "TPM_RC_NV_LOCKED", floor2)

	// 2. Deleted and replaced by a low-looking index.
	r.keel("try b", 0)
	r.tpmAttack("undefine-owner", "0", "(before: floor 2)", "counter now: unreadable", "not defined")
	r.tpmAttack("redefine-low", "0", "counter now: floor 0")
	r.reboot()
	tamper := r.expectRe(reLine("KEEL-TAMPER"))
	mustContain(t, "KEEL-TAMPER line", tamper[0], "the anti-rollback floor is 3 (never lowered)")
	r.expect("anti-rollback counter: 3 (owner hierarchy)")
	r.expect("rollback refused: security version 1 is below the anti-rollback counter 3")
	r.expect("rollback refused: security version 2 is below the anti-rollback counter 3")
	r.expect("recovery seed verified")
	r.expect("KEEL-RECOVERED slot")
	slot, version, mode, err := r.r.Booted()
	r.check(err)
	if version != "3.0-seed" || mode != "recovery" {
		t.Errorf("after the tampering: slot %s version %s mode %s, want the seed (3.0-seed) in mode recovery", slot, version, mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	mustContain(t, "b's reason", s.Slots["b"].Reason, "security version 1 is below the anti-rollback counter 3")
	if s.Slots["b"].State != "bad" {
		t.Errorf("b = %+v, want bad", s.Slots["b"])
	}
	r.tpmAttack("increment-owner", "0x148", "TPM_RC_NV_LOCKED", "counter now: floor 3")

	// 3. maxCount inflated, the counter deleted again.
	r.tpmAttack("inflate", "0", "incremented 5 times to 8")
	r.tpmAttack("undefine-owner", "0", "(before: floor 3)")
	r.tpmAttack("redefine-ordinary", "0", "holding 1", "counter now: unreadable", "not keel's anti-rollback counter")
	r.reboot()
	tamper = r.expectRe(reLine("KEEL-TAMPER"))
	for _, w := range []string{"was not keel's anti-rollback counter", "the anti-rollback floor is 8 (never lowered)"} {
		mustContain(t, "KEEL-TAMPER line", tamper[0], w)
	}
	halt := r.expectRe(reLine("NO BOOTABLE SLOT"))
	for _, w := range []string{"below the anti-rollback counter 8", "RECOVERY FAILED"} {
		mustContain(t, "halt message", halt[0], w)
	}
	r.expect("powering off")
	r.wait()
	t.Logf("scenario took %s", time.Since(start).Round(time.Second))
}
