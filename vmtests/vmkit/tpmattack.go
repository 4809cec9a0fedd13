package vmkit

import (
	"fmt"
	"regexp"
)

// TPMAttack runs the test init's `tpmattack NAME` in the booted slot: one
// attack of root in the OS on keel's anti-rollback counter and floor record
// (increment-owner, increment-index, increment-policy, write-record,
// undefine-owner, undefine-record, redefine-identical, redefine-v11,
// inflate; see vmtests/testinit). It returns the TPM's
// response code as the slot printed it ("0" when the attack went through,
// else 0x and hex, e.g. "0x148" for TPM_RC_NV_LOCKED) and the slot's text,
// which ends with the floor keel's reader sees afterwards ("counter now:
// floor N"). An attack that failed outside the TPM (no device, unknown
// name) is an error.
func (r *Run) TPMAttack(name string) (rc, text string, err error) {
	if err := r.command("tpmattack " + name); err != nil {
		return "", "", err
	}
	re := regexp.MustCompile(`KEEL-TPMATTACK ` + regexp.QuoteMeta(name) + ` rc=(\S+) ([^\r\n]*)\r*\n`)
	m, err := r.ExpectRe(re)
	if err != nil {
		return "", "", fmt.Errorf("tpmattack %s: %w", name, err)
	}
	if m[1] == "-1" {
		return m[1], m[2], fmt.Errorf("tpmattack %s: %s", name, m[2])
	}
	return m[1], m[2], nil
}
