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

// TestPredictAfterPrior: a TPM whose PCR 9 already holds a measurement
// (the Linux EFI stub's initrd on a UKI) ends where PredictAfter says, and
// the log with PriorEntry prepended replays to it.
func TestPredictAfterPrior(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	var log bytes.Buffer
	m, err := NewMeasurer(sw.TPM(), &log)
	if err != nil {
		t.Fatal(err)
	}
	initrd := bytes.Repeat([]byte{0x28, 0xb5, 0x2f, 0xfd}, 2000) // > MaxLogData, not UTF-8
	prior := Prior{PCR: PCRImage, Data: initrd, Type: EventLinuxInitrd}
	var priorLog bytes.Buffer
	if err := m.Extend(prior.PCR, prior.Data, Event{EventLinuxInitrd, "initrd"}); err != nil {
		t.Fatal(err)
	}
	log.Reset() // keel-init's log starts after the prior measurement
	in := testBoot("b", "trial")
	if err := MeasureBoot(m, in); err != nil {
		t.Fatal(err)
	}
	if err := Separator(m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPCRs(sw.TPM(), m.Banks(), []int{8, 9})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := PredictAfter([]Prior{prior}, in, m.Banks())
	if err != nil {
		t.Fatal(err)
	}
	if !equalPCRs(got, pred) {
		t.Errorf("TPM:\n%s\nPredictAfter:\n%s", fmtPCRs(got), fmtPCRs(pred))
	}
	e, err := PriorEntry(prior, m.Banks())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(e)
	priorLog.Write(append(line, '\n'))
	priorLog.Write(log.Bytes())
	replayed, err := ReplayLog(&priorLog)
	if err != nil {
		t.Fatal(err)
	}
	if !equalPCRs(got, replayed) {
		t.Errorf("TPM:\n%s\nreplayed with the prior entry:\n%s", fmtPCRs(got), fmtPCRs(replayed))
	}
	if p, _ := Predict(in, m.Banks()); equalPCRs(p, pred) {
		t.Error("the prior measurement changed nothing")
	}
}

func TestUKIPrior(t *testing.T) {
	p := UKIPrior([]byte("console=ttyS0 a=\u00e9\n\x00"), []byte("initrd"))
	want := []byte{'c', 0, 'o', 0, 'n', 0, 's', 0, 'o', 0, 'l', 0, 'e', 0, '=', 0, 't', 0, 't', 0, 'y', 0, 'S', 0, '0', 0,
		' ', 0, 'a', 0, '=', 0, 0xe9, 0, 0, 0}
	if len(p) != 2 || !bytes.Equal(p[0].Data, want) || p[0].PCR != 9 || string(p[1].Data) != "initrd" || p[1].Type != EventLinuxInitrd {
		t.Errorf("UKIPrior = %+v", p)
	}
}

// TestCapNeverMatchesAMeasuredBoot: after a measurement fails, Cap
// extends PCR 8 and 9; whatever is extended afterwards (the rest of the
// boot, the separator), neither PCR equals the prediction of a measured
// boot, and the log still replays to the TPM's values (issue 9 item 12).
func TestCapNeverMatchesAMeasuredBoot(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	var log bytes.Buffer
	m, err := NewMeasurer(sw.TPM(), &log)
	if err != nil {
		t.Fatal(err)
	}
	in := testBoot("a", "normal")
	if err := Cap(m); err != nil {
		t.Fatal(err)
	}
	if err := MeasureBoot(m, in); err != nil {
		t.Fatal(err)
	}
	if err := Separator(m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPCRs(sw.TPM(), m.Banks(), []int{8, 9})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := Predict(in, m.Banks())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range m.Banks() {
		for _, p := range []int{8, 9} {
			if bytes.Equal(got[h][p], pred[h][p]) {
				t.Errorf("%s PCR %d equals a measured boot's value after Cap", BankName(h), p)
			}
		}
	}
	replayed, err := ReplayLog(bytes.NewReader(log.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{8, 9} {
		if !bytes.Equal(replayed[crypto.SHA256][p], got[crypto.SHA256][p]) {
			t.Errorf("the log does not replay to the TPM's PCR %d after Cap", p)
		}
	}
	if !strings.Contains(log.String(), EventCap) {
		t.Error("no cap event in the log")
	}
}
