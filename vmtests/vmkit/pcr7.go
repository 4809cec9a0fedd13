package vmkit

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// reHexLine matches a line of `keel pcr log --raw-hex` (64 bytes a line,
// the last one shorter).
var reHexLine = regexp.MustCompile(`^[0-9a-f]{2,128}$`)

// FirmwareEventLog returns the firmware's TCG event log as the booted
// slot's kernel exposes it (securityfs, tcglog.DefaultPath), carried over
// the console by `keel pcr log --raw-hex`.
func (r *Run) FirmwareEventLog() ([]byte, error) {
	rc, out, err := r.KeelOutput("pcr log --raw-hex")
	if err != nil {
		return nil, err
	}
	if rc != 0 {
		return nil, fmt.Errorf("keel pcr log --raw-hex: rc=%d\n%s", rc, out)
	}
	var b []byte
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if !reHexLine.MatchString(l) || len(l)%2 != 0 {
			continue
		}
		d, err := hex.DecodeString(l)
		if err != nil {
			return nil, fmt.Errorf("keel pcr log --raw-hex: %w", err)
		}
		b = append(b, d...)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("keel pcr log --raw-hex printed no log:\n%s", out)
	}
	return b, nil
}

// PCRValue reads one PCR of one bank in the booted slot with
// `keel pcr read --pcr N --banks BANK`.
func (r *Run) PCRValue(bank string, pcr int) ([]byte, error) {
	args := fmt.Sprintf("pcr read --banks %s --pcr %d", bank, pcr)
	rc, out, err := r.KeelOutput(args)
	if err != nil {
		return nil, err
	}
	if rc != 0 {
		return nil, fmt.Errorf("keel %s: rc=%d\n%s", args, rc, out)
	}
	m := regexp.MustCompile(fmt.Sprintf(`(?m)^\s+%d\s*:\s*0x([0-9A-F]+)\r*$`, pcr)).FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("keel %s: no PCR %d in\n%s", args, pcr, out)
	}
	return hex.DecodeString(m[1])
}
