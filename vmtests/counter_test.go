package vmtests

import (
	"regexp"
	"strconv"
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

// Scenario (issues 11 and 19): root in the booted OS attacks the
// anti-rollback counter and its floor record, which keel-init keeps in the
// owner hierarchy here (OVMF randomises the platform authorization). a
// (security version 2) boots normally, so keel-init creates them and
// advances the floor to 2; b (security version 1) is prepared, the
// recovery seed has security version 3.
//
//  1. Nothing writes them after the handoff: TPM2_NV_Increment with owner
//     authorization (the write lock), with the index's empty authValue
//     (no AUTHWRITE), under keel's write policy (PCR 8 is not zero) or a
//     policy of PCR 8 as it is, TPM2_NV_Write of the record: the floor
//     stays 2.
//  2. The attack of issue 19: the owner deletes the counter, defines the
//     identical public area (a fresh index, not write-locked) and tries to
//     increment it: refused the same way. At the reboot keel-init finds it
//     unwritten, re-creates it (KEEL-TAMPER: the counter reads 4, its
//     record 3) and keeps the recorded floor 2: a boots normally (before
//     issue 19 the OS raised the floor at will; before the record the
//     re-creation alone cost one version, refusing a).
//  3. The max-count inflation: a counter of the OS's own driven up and
//     deleted, keel's counter deleted and replaced by the layout of issue
//     11 (which the OS can write), raised 50 times. keel-init reports it,
//     replaces it and keeps the floor 2: a boots normally.
//  4. The residual of an owner counter: the OS deletes both the record and
//     the counter. keel-init has only the TPM's lower bound, the new
//     counter's first value (above the 50 of step 3): KEEL-TAMPER, and
//     with every slot and the seed below it, a loud NO BOOTABLE SLOT, never
//     a rollback.
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

	// 1. TPM_RC_NV_LOCKED is checked before the owner's write attribute;
	// the index's authValue is refused at the authorization
	// (TPM_RC_AUTH_UNAVAILABLE, 0x12f); keel's policy at TPM2_PolicyPCR
	// (TPM_RC_VALUE, parameter 1: 0x1c4).
	const floor2 = "counter now: floor 2"
	r.tpmAttack("increment-owner", "0x148", "TPM_RC_NV_LOCKED", floor2)
	r.tpmAttack("increment-index", "0x12f", "TPM_RC_AUTH_UNAVAILABLE", floor2)
	r.tpmAttack("increment-policy", "0x1c4", "TPM_RC_VALUE", "TPM_RC_POLICY_FAIL", floor2)
	r.tpmAttack("write-record", "0x12f", "TPM_RC_AUTH_UNAVAILABLE", floor2)

	// 2. Deleted, identically re-defined, not writable.
	r.tpmAttack("undefine-owner", "0", "(before: floor 2)", floor2)
	r.tpmAttack("redefine-identical", "0", floor2)
	r.tpmAttack("increment-index", "0x12f", "TPM_RC_AUTH_UNAVAILABLE", floor2)
	r.tpmAttack("increment-policy", "0x1c4", "TPM_RC_POLICY_FAIL", floor2)
	r.reboot()
	tamper := r.expectRe(reLine("KEEL-TAMPER"))
	for _, w := range []string{"reads 4, but keel's floor record says 3", "the counter was deleted and re-created", "the floor stays 2", "the anti-rollback floor is 2"} {
		mustContain(t, "KEEL-TAMPER line", tamper[0], w)
	}
	r.expect("anti-rollback counter: 2 (owner hierarchy)")
	if mode := r.booted("a", "2.0"); mode != "normal" {
		t.Errorf("after the re-definition: a booted in mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")

	// 3. The TPM's highest count inflated, the counter replaced by one
	// the OS can write and raised.
	r.tpmAttack("inflate", "0", "incremented 5 times")
	r.tpmAttack("undefine-owner", "0", "(before: floor 2)")
	r.tpmAttack("redefine-v11", "0", "incremented it 50 times", floor2)
	r.reboot()
	tamper = r.expectRe(reLine("KEEL-TAMPER"))
	for _, w := range []string{"holds keel's counter of issue 11", "keel-init keeps the recorded floor 2", "the anti-rollback floor is 2"} {
		mustContain(t, "KEEL-TAMPER line", tamper[0], w)
	}
	if mode := r.booted("a", "2.0"); mode != "normal" {
		t.Errorf("after the replacement: a booted in mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if s.Slots["a"].State != "good" {
		t.Errorf("slots after the attacks: %+v", s.Slots)
	}

	// 4. Both deleted.
	r.tpmAttack("undefine-record", "0")
	r.tpmAttack("undefine-owner", "0")
	r.reboot()
	tamper = r.expectRe(regexp.MustCompile(`KEEL-TAMPER [^\r\n]*is missing too[^\r\n]*the anti-rollback floor is (\d+)\r*\n`))
	mustContain(t, "KEEL-TAMPER line", tamper[0], "keel-init keeps it")
	f, err := strconv.Atoi(tamper[1])
	if err != nil || f <= 50 {
		t.Errorf("floor %q after both were deleted, want above the 50 the OS counted to", tamper[1])
	}
	halt := r.expectRe(reLine("NO BOOTABLE SLOT"))
	for _, w := range []string{"below the anti-rollback counter " + tamper[1], "RECOVERY FAILED"} {
		mustContain(t, "halt message", halt[0], w)
	}
	r.expect("powering off")
	r.wait()
	t.Logf("scenario took %s", time.Since(start).Round(time.Second))
}
