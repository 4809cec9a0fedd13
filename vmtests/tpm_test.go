package vmtests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// hostKeel runs the keel binary the suite built, on the host.
func hostKeel(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(artefacts(t).Keel, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("keel %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// Scenario: a measured boot. In the booted slot, PCR 8 and 9 (read with
// `keel pcr read` from /dev/tpmrm0) equal what `keel pcr predict` computes
// on the host from the slot's manifest (read back from the disk), slot,
// mode and store; the event log keel-init handed over in /run/keel
// replays (on the host) to the same values, in every bank it covers, and
// the trusted keys it handed over there are its initramfs's, mode 0444.
// PCR 9 starts from the EFI stub's measurements of keel's UKI (its command
// line, then "EFI stub: Measured initrd data into PCR 9" on the console):
// --uki.
func TestTPMMeasuredBoot(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	r := m.powerOn(bootTimeout)
	r.expect("measured slot a into PCR 8/9")
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Errorf("mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")

	log, err := r.r.EventLog()
	r.check(err)
	// Next to the event log: the trusted keys keel-init verified slot a
	// with, byte for byte the file in keel's initramfs, read-only.
	keys, mode, err := r.r.TrustedKeys()
	r.check(err)
	if want, err := os.ReadFile(artefacts(t).TrustedKeys); err != nil || !bytes.Equal(keys, want) || mode != 0o444 {
		t.Errorf("/run/keel/trusted-keys in the slot: mode %v, %q; want 0444, %q (%v)", mode, keys, want, err)
	}
	dir := t.TempDir()
	logFile := filepath.Join(dir, "eventlog.jsonl")
	if err := os.WriteFile(logFile, log, 0o644); err != nil {
		t.Fatal(err)
	}
	vals, err := tpm.ReplayLog(bytes.NewReader(log))
	if err != nil {
		t.Fatalf("the event log does not replay: %v\n%s", err, log)
	}
	var banks []string
	for _, name := range []string{"sha1", "sha256", "sha384", "sha512"} {
		if h, err := tpm.ParseBank(name); err == nil && vals[h] != nil {
			banks = append(banks, name)
		}
	}
	if len(banks) == 0 || !bytes.Contains(log, []byte(`"type":"keel.separator"`)) {
		t.Fatalf("event log without sha banks or separator:\n%s", log)
	}
	bankList := strings.Join(banks, ",")
	got, err := r.r.PCRs(bankList)
	r.check(err)

	raw, err := m.SlotManifest("a")
	if err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(mf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// The Linux EFI stub of keel's kernel measured the UKI's command line
	// and initrd (keel's initramfs) into PCR 9 before keel-init ran:
	// predict and replay start from there (--uki).
	uki := filepath.Join(dir, "BOOTX64.EFI")
	if err := m.UKI(uki); err != nil {
		t.Fatal(err)
	}
	want := hostKeel(t, "pcr", "predict", "--slot", "a", "--mode", "normal", "--store", "efivars",
		"--uki", uki, "--banks", bankList, mf)
	replayed := hostKeel(t, "pcr", "replay", "--uki", uki, "--banks", bankList, logFile)
	// Without the UKI's measurements PCR 8 still matches, PCR 9 does not.
	zero := hostKeel(t, "pcr", "predict", "--slot", "a", "--mode", "normal", "--store", "efivars", "--banks", bankList, mf)
	if zero == want {
		t.Errorf("the UKI's measurements changed nothing")
	}
	t.Logf("PCRs in slot a (banks %s):\n%s", bankList, got)
	if got != want {
		t.Errorf("PCR 8/9 in the slot:\n%s\nkeel pcr predict on the host:\n%s", got, want)
	}

	if replayed != want {
		t.Errorf("the event log replays to:\n%s\nwant (predicted):\n%s", replayed, want)
	}
	r.powerOff()
}

// Scenario: anti-rollback. a (security version 2) boots normally: keel-init
// advances the TPM's counter to 2 before the kexec (issue 11: only keel-init
// writes it); b is validly signed but has security version 1: `keel try b`
// and a reboot -> keel-init refuses b (marked bad, the reason names both
// numbers) and falls back to a.
func TestTPMRollbackRefused(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "2.0", SecurityVersion: 2},
		"b": {Version: "1.0", SecurityVersion: 1},
	})
	r := m.powerOn(2 * bootTimeout)
	r.expect("anti-rollback counter advanced to 2")
	r.booted("a", "2.0")
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b", 0)
	r.reboot()
	r.expect("rollback refused")
	if mode := r.booted("a", "2.0"); mode != "fallback" {
		t.Errorf("a came back in mode %s, want fallback", mode)
	}
	s := r.status()
	b := s.Slots["b"]
	if b.State != "bad" {
		t.Errorf("b = %+v, want bad", b)
	}
	mustContain(t, "b's reason", b.Reason, "security version 1 is below the anti-rollback counter 2")
	if deref(s.Active) != "a" || s.Slots["a"].State != "good" {
		t.Errorf("a = %+v, active %s", s.Slots["a"], deref(s.Active))
	}
	r.powerOff()
}
