package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/internal/cli"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/swtpmtest"
)

func keel(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := cli.Run(context.Background(), args, &out, &errb, cli.Deps{}); err != nil {
		t.Fatalf("keel %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// TestPredictMatchesTPM2PCRRead boots a slot's measurements into swtpm the
// way keel-init does and compares `keel pcr predict`, `keel pcr replay`
// and `keel pcr read` with what tpm2_pcrread prints, byte for byte.
func TestPredictMatchesTPM2PCRRead(t *testing.T) {
	if _, err := exec.LookPath("tpm2_pcrread"); err != nil {
		t.Fatalf("tpm2_pcrread not found (apt-get install tpm2-tools): %v", err)
	}
	dir := t.TempDir()
	m := &manifest.Manifest{
		Compatible: "qemu-x86_64-uefi", Role: manifest.RoleSlot,
		Version: "2.0", SecurityVersion: 3, Cmdline: "console=ttyS0 quiet",
		Kernel: manifest.Digest{SHA256: strings.Repeat("ab", 32), Size: 1234},
		Initrd: manifest.Digest{SHA256: strings.Repeat("cd", 32), Size: 567},
		Root:   manifest.Root{FSType: "erofs"},
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(mf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	root := bytes.Repeat([]byte{0x5a}, 32)

	// What keel-init measures for slot b on trial (the command line as
	// format/cmdline.ForManifest builds it).
	sw := swtpmtest.StartTCP(t, "")
	var log bytes.Buffer
	meas, err := tpm.NewMeasurer(sw.TPM(), &log)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := hex.DecodeString(m.Kernel.SHA256)
	id, _ := hex.DecodeString(m.Initrd.SHA256)
	in := tpm.BootMeasurement{
		ManifestBytes: raw, KernelDigest: kd, InitrdDigest: id, RootHash: root,
		Slot: "b", Mode: "trial",
		Cmdline: "console=ttyS0 quiet keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=3 keel.store=efivars",
	}
	if err := tpm.MeasureBoot(meas, in); err != nil {
		t.Fatal(err)
	}
	if err := tpm.Separator(meas); err != nil {
		t.Fatal(err)
	}

	var sel, names []string
	for _, h := range meas.Banks() {
		sel = append(sel, tpm.BankName(h)+":8,9")
		names = append(names, tpm.BankName(h))
	}
	banks := strings.Join(names, ",")
	out, err := exec.Command("tpm2_pcrread", "-T", sw.TCTI(), strings.Join(sel, "+")).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	want := string(out)
	t.Logf("tpm2_pcrread:\n%s", want)

	args := []string{"pcr", "predict", "--slot", "b", "--mode", "trial", "--store", "efivars",
		"--root-hash", hex.EncodeToString(root), "--banks", banks}
	if got := keel(t, append(args, mf)...); got != want {
		t.Errorf("keel pcr predict:\n%s\nwant (tpm2_pcrread):\n%s", got, want)
	}
	// --cmdline gives the whole line.
	args2 := []string{"pcr", "predict", "--slot", "b", "--mode", "trial", "--cmdline", in.Cmdline,
		"--root-hash", hex.EncodeToString(root), "--banks", banks, mf}
	if got := keel(t, args2...); got != want {
		t.Errorf("keel pcr predict --cmdline:\n%s\nwant:\n%s", got, want)
	}
	// A slot container holding the manifest predicts the same.
	var img bytes.Buffer
	if _, err := slotimg.Write(&img, []slotimg.Part{
		{Name: slotimg.EntryKernel, Data: []byte("k")},
		{Name: slotimg.EntryManifest, Data: raw},
	}); err != nil {
		t.Fatal(err)
	}
	slotFile := filepath.Join(dir, "slot.img")
	os.WriteFile(slotFile, img.Bytes(), 0o644)
	if got := keel(t, append(args, slotFile)...); got != want {
		t.Errorf("keel pcr predict SLOT.img:\n%s\nwant:\n%s", got, want)
	}
	// Another mode predicts something else.
	if got := keel(t, "pcr", "predict", "--slot", "b", "--mode", "normal", "--store", "efivars",
		"--root-hash", hex.EncodeToString(root), "--banks", banks, mf); got == want {
		t.Error("normal mode predicts the trial values")
	}

	logFile := filepath.Join(dir, "events.jsonl")
	os.WriteFile(logFile, log.Bytes(), 0o644)
	if got := keel(t, "pcr", "replay", logFile); got != want {
		t.Errorf("keel pcr replay:\n%s\nwant:\n%s", got, want)
	}
	vals, err := tpm.ReadPCRs(sw.TPM(), meas.Banks(), []int{8, 9})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	tpm.FormatPCRs(&b, vals)
	if b.String() != want {
		t.Errorf("FormatPCRs(ReadPCRs):\n%s\nwant:\n%s", b.String(), want)
	}
	if _, ok := vals[crypto.SHA256]; !ok {
		t.Error("swtpm has no sha256 bank")
	}
}

// TestPCRReadCommand reads PCRs 8/9 over swtpm's unix socket with
// `keel pcr read --tpm SOCKET`.
func TestPCRReadCommand(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	meas, err := tpm.NewMeasurer(sw.TPM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := meas.Extend(8, []byte("x"), tpm.Event{Type: "test"}); err != nil {
		t.Fatal(err)
	}
	vals, err := tpm.ReadPCRs(sw.TPM(), []crypto.Hash{crypto.SHA256}, []int{8, 9})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	tpm.FormatPCRs(&want, vals)
	if got := keel(t, "pcr", "read", "--tpm", sw.Socket); got != want.String() {
		t.Errorf("keel pcr read:\n%s\nwant:\n%s", got, want.String())
	}
	if !strings.Contains(want.String(), "  sha256:\n    8 : 0x") {
		t.Errorf("format: %q", want.String())
	}
}
