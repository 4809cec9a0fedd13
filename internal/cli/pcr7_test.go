package cli

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/tpm/tcglog"
)

// The firmware event logs captured in the vmtests (Debian's OVMF 2022.11
// secboot build): see tpm/tcglog/testdata.
const capture = "../../tpm/tcglog/testdata/ovmf-secboot"

func capturedPCR7(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capture, name+".pcr7"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(strings.TrimSpace(string(b)))
}

// TestPCRPredictSecureBoot: keel pcr predict --secure-boot predicts the
// PCR 7 the TPM held in the captured enforced boot, from the enrolment
// files and from the key directory, alone and with PCR 8/9.
func TestPCRPredictSecureBoot(t *testing.T) {
	want := "    7 : 0x" + capturedPCR7(t, "enforced") + "\n"
	for _, dir := range []string{"enrol", "keys"} {
		out := keel(t, "pcr", "predict", "--secure-boot", filepath.Join(capture, dir)).ok(t).stdout
		if out != "  sha256:\n"+want {
			t.Errorf("--secure-boot %s:\n%s\nwant PCR 7 %s", dir, out, want)
		}
	}
	dir := t.TempDir()
	out := keel(t, "pcr", "predict", "--secure-boot", filepath.Join(capture, "enrol"), "--banks", "sha1,sha256", signTestManifest(t, dir)).ok(t).stdout
	if !strings.Contains(out, want) || strings.Count(out, "    7 : ") != 2 || strings.Count(out, "    8 : ") != 2 || strings.Count(out, "    9 : ") != 2 {
		t.Errorf("predict with a manifest and --secure-boot:\n%s", out)
	}
	without := keel(t, "pcr", "predict", "--banks", "sha1,sha256", signTestManifest(t, t.TempDir())).ok(t).stdout
	if strings.Contains(without, "    7 : ") {
		t.Errorf("predict without --secure-boot printed PCR 7:\n%s", without)
	}
	keel(t, "pcr", "predict").fails(t, ExitUsage, "want one MANIFEST")
	keel(t, "pcr", "predict", "--secure-boot", dir).fails(t, ExitStorage, "neither an enrolment directory")
}

// TestPCRLog: keel pcr log prints the captured log's PCR 7 events (the
// golden file's lines), replays it to the TPM's PCR 7, and --raw-hex
// gives back its bytes.
func TestPCRLog(t *testing.T) {
	file := filepath.Join(capture, "enforced.bin")
	out := keel(t, "pcr", "log", "--file", file, "--pcr", "7").ok(t).stdout
	golden, err := os.ReadFile(filepath.Join(capture, "enforced.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, l := range strings.Split(strings.TrimSuffix(string(golden), "\n"), "\n") {
		if i == 0 || strings.Contains(l, " PCR 7 ") {
			want = append(want, l)
		}
	}
	if out != strings.Join(want, "\n")+"\n" {
		t.Errorf("keel pcr log --pcr 7:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if n := strings.Count(out, "EV_EFI_VARIABLE_AUTHORITY"); n != 1 {
		t.Errorf("%d authority events", n)
	}
	rep := keel(t, "pcr", "log", "--file", file, "--replay", "--pcr", "7").ok(t).stdout
	if rep != "  sha256:\n    7 : 0x"+capturedPCR7(t, "enforced")+"\n" {
		t.Errorf("--replay --pcr 7: %s", rep)
	}
	all := keel(t, "pcr", "log", "--file", file, "--replay", "--bank", "sha384").ok(t).stdout
	// PCRs 0-7, 9 (the Linux EFI stub) and 11 (the UKI's stub).
	if !strings.HasPrefix(all, "  sha384:\n") || strings.Count(all, "0x") != 10 {
		t.Errorf("--replay --bank sha384:\n%s", all)
	}
	raw := keel(t, "pcr", "log", "--file", file, "--raw-hex").ok(t).stdout
	b, err := hex.DecodeString(strings.ReplaceAll(raw, "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if orig, _ := os.ReadFile(file); !bytes.Equal(b, orig) {
		t.Error("--raw-hex does not give back the log")
	}
	keel(t, "pcr", "log", "--file", filepath.Join(capture, "enforced.pcr7")).fails(t, ExitStorage, "not a crypto-agile")
	keel(t, "pcr", "log", "--file", file, "--pcr", "24").fails(t, ExitUsage, "0..23")
	if tcglog.DefaultPath != "/sys/kernel/security/tpm0/binary_bios_measurements" {
		t.Error(tcglog.DefaultPath)
	}
}
