package vmtests

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/keelboot/keel/tpm/swtpmtest"
	"github.com/keelboot/keel/vmtests/vmkit"
)

var rePCR = regexp.MustCompile(`(?m)^\s+(8|9)\s*:\s*0x([0-9A-Fa-f]{64})$`)

// Issue 4: a secret sealed on the device's TPM to the vendor's policy key
// (PolicyAuthorize) unseals in slot a, whose PCR 8/9 values the vendor
// signed from `keel pcr predict` on the host, and not in slot b (another
// image: other PCR values, no signed policy for them).
func TestSealedSecret(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1},
	})
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	hostKeel(t, "secret", "keygen", "--out", p("vendor"))
	if err := os.WriteFile(p("secret"), []byte("data-partition-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Provisioning: seal on the machine's own TPM (its swtpm state), with
	// the machine off.
	state := filepath.Join(m.Dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	sw := swtpmtest.Start(t, state)
	hostKeel(t, "secret", "seal", "--tpm", sw.Socket, "--auth", p("vendor.pub"), "--in", p("secret"), "--out", p("sealed.json"))
	sw.Stop()

	// The vendor signs the PCR values slot a's normal boot will have.
	raw, err := m.SlotManifest("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.UKI(p("BOOTX64.EFI")); err != nil {
		t.Fatal(err)
	}
	pred := hostKeel(t, "pcr", "predict", "--slot", "a", "--mode", "normal", "--store", "efivars",
		"--uki", p("BOOTX64.EFI"), "--banks", "sha256", p("manifest.json"))
	args := []string{"secret", "sign-policy", "--key", p("vendor.key"), "--out", p("policy.json")}
	for _, mm := range rePCR.FindAllStringSubmatch(pred, -1) {
		args = append(args, "--pcr", mm[1]+"="+mm[2])
	}
	if len(args) != 10 {
		t.Fatalf("could not read PCR 8 and 9 from keel pcr predict:\n%s", pred)
	}
	hostKeel(t, args...)
	sealed, _ := os.ReadFile(p("sealed.json"))
	policy, _ := os.ReadFile(p("policy.json"))
	give := func(r *run) {
		for name, b := range map[string][]byte{"sealed.json": sealed, "policy.json": policy} {
			r.expect("KEEL-READY")
			r.check(r.r.Send("file " + name + " " + hex.EncodeToString(b)))
			r.expect("KEEL-FILE " + name)
		}
	}
	const unseal = "secret unseal --sealed /run/sealed.json --policy /run/policy.json"

	r := m.powerOn(2 * bootTimeout)
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Fatalf("a booted in mode %s; the policy was signed for a normal boot", mode)
	}
	give(r)
	r.expect("KEEL-READY")
	r.check(r.r.Send("keel " + unseal))
	r.expect("data-partition-key")
	r.expectRe(regexp.MustCompile(`KEEL-DONE rc=0\r*\n`))

	r.keel("try b --tries 1", 0)
	r.reboot()
	r.booted("b", "2.0")
	give(r)
	r.keel(unseal, 2)
	r.powerOff()
}
