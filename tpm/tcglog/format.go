package tcglog

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Format writes l as text, one event a line: its sequence number, PCR,
// type, digest in bank h ("-" when the event has none) and Describe's
// description. pcrs, when not empty, selects the PCRs shown. A header line
// names the log's spec version and banks.
func Format(w io.Writer, l *Log, h crypto.Hash, pcrs []int) error {
	var b strings.Builder
	var banks []string
	for _, a := range l.Spec.Algorithms {
		if x, ok := HashAlg(a.ID); ok {
			banks = append(banks, strings.ToLower(strings.ReplaceAll(x.String(), "-", "")))
		} else {
			banks = append(banks, fmt.Sprintf("alg%#04x", a.ID))
		}
	}
	fmt.Fprintf(&b, "# TCG event log, PC Client PFP spec %d.%d errata %d, %d events, banks %s\n",
		l.Spec.VersionMajor, l.Spec.VersionMinor, l.Spec.Errata, len(l.Events), strings.Join(banks, " "))
	sel := map[int]bool{}
	for _, p := range pcrs {
		sel[p] = true
	}
	for _, e := range l.Events {
		if len(sel) > 0 && !sel[int(e.PCR)] {
			continue
		}
		d := "-"
		if v := e.Digest(h); v != nil {
			d = hex.EncodeToString(v)
		}
		fmt.Fprintf(&b, "%3d PCR %-2d %-32s %s %s\n", e.Seq, e.PCR, e.Type, d, Describe(e))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
