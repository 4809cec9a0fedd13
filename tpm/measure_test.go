package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keelboot/keel/tpm/swtpmtest"
)

func testBoot(slot, mode string) BootMeasurement {
	k := sha256.Sum256([]byte("kernel " + slot))
	i := sha256.Sum256([]byte("initrd " + slot))
	r := sha256.Sum256([]byte("root " + slot))
	return BootMeasurement{
		ManifestBytes: []byte(`{"version":"1.0","slot":"` + slot + `"}`),
		KernelDigest:  k[:], InitrdDigest: i[:], RootHash: r[:],
		Slot: slot, Mode: mode,
		Cmdline: "console=ttyS0 keel.stage=2 keel.slot=" + slot + " keel.mode=" + mode,
	}
}

func allPCRs() []int {
	var p []int
	for i := 0; i < 24; i++ {
		p = append(p, i)
	}
	return p
}

func TestMeasureReplayPredict(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	var log bytes.Buffer
	m, err := NewMeasurer(sw.TPM(), &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Banks()) < 2 {
		t.Logf("only %d active banks: %v", len(m.Banks()), m.Banks())
	}
	in := testBoot("a", "normal")
	initial, err := ReadPCRs(sw.TPM(), m.Banks(), allPCRs())
	if err != nil {
		t.Fatal(err)
	}
	if err := MeasureBoot(m, in); err != nil {
		t.Fatal(err)
	}
	before, err := ReadPCRs(sw.TPM(), m.Banks(), []int{8, 9})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := PredictBeforeSeparator(in, m.Banks())
	if err != nil {
		t.Fatal(err)
	}
	if !equalPCRs(before, pre) {
		t.Errorf("PCRs before separator differ from PredictBeforeSeparator:\n%s\nwant\n%s", fmtPCRs(before), fmtPCRs(pre))
	}
	if err := Separator(m); err != nil {
		t.Fatal(err)
	}
	// The whole TPM: PCRs 8 and 9 replay from zero, the others are untouched
	// (17-22 reset to all ones).
	got, err := ReadPCRs(sw.TPM(), m.Banks(), allPCRs())
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := ReplayLog(bytes.NewReader(log.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range m.Banks() {
		for p, v := range got[h] {
			want := replayed[h][p]
			if want == nil {
				want = initial[h][p]
			}
			if !bytes.Equal(v, want) {
				t.Errorf("%s PCR %d: TPM %x, replayed log %x", BankName(h), p, v, want)
			}
		}
	}
	pred, err := Predict(in, m.Banks())
	if err != nil {
		t.Fatal(err)
	}
	read89, _ := ReadPCRs(sw.TPM(), m.Banks(), []int{8, 9})
	if !equalPCRs(read89, pred) {
		t.Errorf("TPM:\n%s\nPredict:\n%s", fmtPCRs(read89), fmtPCRs(pred))
	}
	if bytes.Equal(pred[crypto.SHA256][8], pre[crypto.SHA256][8]) {
		t.Error("separator did not change PCR 8")
	}

	// The log: 8 lines, in order, with the data.
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	wantTypes := []string{EventManifest, EventKernel, EventInitrd, EventRootHash, EventSlot, EventCmdline, EventMode, EventSeparator}
	if len(lines) != len(wantTypes) {
		t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(wantTypes), log.String())
	}
	for i, l := range lines {
		var e LogEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type != wantTypes[i] || len(e.Digests) != len(m.Banks()) || e.Data == nil {
			t.Errorf("log line %d: %s", i, l)
		}
	}
	if !strings.Contains(lines[4], `"data":"keel:slot=a"`) || !strings.Contains(lines[6], `"data":"keel:mode=normal"`) {
		t.Errorf("log lines:\n%s", log.String())
	}
	t.Logf("event log line: %s", lines[4])

	// A tampered log does not replay.
	bad := strings.Replace(log.String(), "keel:mode=normal", "keel:mode=trial", 1)
	if _, err := ReplayLog(strings.NewReader(bad)); err == nil {
		t.Error("replay of a log with tampered data succeeded")
	}
}

func TestPredictDiffers(t *testing.T) {
	banks := []crypto.Hash{crypto.SHA256}
	base, err := Predict(testBoot("a", "normal"), banks)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]BootMeasurement{
		"slot": func() BootMeasurement { b := testBoot("a", "normal"); b.Slot = "b"; return b }(),
		"mode": testBoot("a", "trial"),
		"cmdline": func() BootMeasurement {
			b := testBoot("a", "normal")
			b.Cmdline += " x"
			return b
		}(),
		"noroot": func() BootMeasurement { b := testBoot("a", "normal"); b.RootHash = nil; return b }(),
	} {
		p, err := Predict(in, banks)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(p[crypto.SHA256][8], base[crypto.SHA256][8]) && bytes.Equal(p[crypto.SHA256][9], base[crypto.SHA256][9]) {
			t.Errorf("%s: same PCRs", name)
		}
	}
	bad := testBoot("a", "sideways")
	if _, err := Predict(bad, banks); err == nil {
		t.Error("unknown mode accepted")
	}
	bad = testBoot("a", "normal")
	bad.KernelDigest = bad.KernelDigest[:5]
	if _, err := Predict(bad, banks); err == nil {
		t.Error("short kernel digest accepted")
	}
}

func equalPCRs(a, b map[crypto.Hash]map[int][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for h, pa := range a {
		pb := b[h]
		if len(pa) != len(pb) {
			return false
		}
		for p, v := range pa {
			if !bytes.Equal(v, pb[p]) {
				return false
			}
		}
	}
	return true
}

func fmtPCRs(v map[crypto.Hash]map[int][]byte) string {
	var b strings.Builder
	FormatPCRs(&b, v)
	return b.String()
}
