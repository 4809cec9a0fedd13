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

// rePCR matches a PCR 7, 8 or 9 line of keel pcr predict|read (tpm2_pcrread's format).
var rePCR = regexp.MustCompile(`(?m)^\s+(7|8|9)\s*:\s*0x([0-9A-Fa-f]{64})\r*$`)

// pcrLines maps the PCR 7/8/9 lines of keel pcr predict|read output to
// their hex values.
func pcrLines(out string) map[string]string {
	m := map[string]string{}
	for _, mm := range rePCR.FindAllStringSubmatch(out, -1) {
		m[mm[1]] = mm[2]
	}
	return m
}

// vendor is a policy key (keel secret keygen) and a secret sealed to it on
// a machine's TPM, as at provisioning.
type vendor struct {
	dir    string
	sealed []byte
}

func (v *vendor) path(n string) string { return filepath.Join(v.dir, n) }

// provision makes a vendor policy key and seals secret on the machine's own
// TPM (its swtpm state), with the machine off.
func provision(t *testing.T, m *machine, secret string) *vendor {
	t.Helper()
	v := &vendor{dir: t.TempDir()}
	hostKeel(t, "secret", "keygen", "--out", v.path("vendor"))
	if err := os.WriteFile(v.path("secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(m.Dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	sw := swtpmtest.Start(t, state)
	hostKeel(t, "secret", "seal", "--tpm", sw.Socket, "--auth", v.path("vendor.pub"), "--in", v.path("secret"), "--out", v.path("sealed.json"))
	sw.Stop()
	b, err := os.ReadFile(v.path("sealed.json"))
	if err != nil {
		t.Fatal(err)
	}
	v.sealed = b
	return v
}

// predict runs keel pcr predict on the host for slot a's normal boot
// (sha256, from the manifest and UKI read back from the machine's disk),
// with extra flags (--secure-boot DIR).
func (v *vendor) predict(t *testing.T, m *machine, extra ...string) string {
	t.Helper()
	raw, err := m.SlotManifest("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.path("manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.UKI(v.path("BOOTX64.EFI")); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"pcr", "predict", "--slot", "a", "--mode", "normal", "--store", "efivars",
		"--uki", v.path("BOOTX64.EFI"), "--banks", "sha256"}, extra...)
	return hostKeel(t, append(args, v.path("manifest.json"))...)
}

// signPolicy signs a policy over the PCRs of keel pcr predict's output
// (want of them, all required) and returns it (JSON).
func (v *vendor) signPolicy(t *testing.T, pred string, want []string, extra ...string) []byte {
	t.Helper()
	vals := pcrLines(pred)
	args := append([]string{"secret", "sign-policy", "--key", v.path("vendor.key"), "--out", v.path("policy.json")}, extra...)
	for _, p := range want {
		if vals[p] == "" {
			t.Fatalf("no PCR %s in keel pcr predict's output:\n%s", p, pred)
		}
		args = append(args, "--pcr", p+"="+vals[p])
	}
	hostKeel(t, args...)
	b, err := os.ReadFile(v.path("policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// give hands the sealed secret and a signed policy to the booted slot
// (/run/sealed.json, /run/policy.json).
func (v *vendor) give(r *run, policy []byte) {
	r.t.Helper()
	for name, b := range map[string][]byte{"sealed.json": v.sealed, "policy.json": policy} {
		r.expect("KEEL-READY")
		r.check(r.r.Send("file " + name + " " + hex.EncodeToString(b)))
		r.expect("KEEL-FILE " + name)
	}
}

// unsealCmd unseals what give handed over.
const unsealCmd = "secret unseal --sealed /run/sealed.json --policy /run/policy.json"

// unseals runs unsealCmd in the booted slot and checks that it prints the
// secret.
func (r *run) unseals(secret string) {
	r.t.Helper()
	r.expect("KEEL-READY")
	r.check(r.r.Send("keel " + unsealCmd))
	r.expect(secret)
	r.expectRe(regexp.MustCompile(`KEEL-DONE rc=0\r*\n`))
}

// Issue 4: a secret sealed on the device's TPM to the vendor's policy key
// (PolicyAuthorize) unseals in slot a, whose PCR 8/9 values the vendor
// signed from `keel pcr predict` on the host, and not in slot b (another
// image: other PCR values, no signed policy for them).
//
// This machine runs OVMF without Secure Boot (the board's plain firmware):
// the vendor signs with --no-secure-boot, the opt-out for a device that
// boots without Secure Boot, and the policy binds PCR 8/9 only. PCR 7 is
// proven in TestSecureBoot (where predicting it from the enrolled keys
// means something); here it would be the firmware's no-Secure-Boot value,
// which no key set predicts.
func TestSealedSecret(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1},
	})
	v := provision(t, m, "data-partition-key")
	// The vendor signs the PCR values slot a's normal boot will have.
	pred := v.predict(t, m)
	if _, ok := pcrLines(pred)["7"]; ok {
		t.Fatalf("keel pcr predict without --secure-boot printed PCR 7:\n%s", pred)
	}
	policy := v.signPolicy(t, pred, []string{"8", "9"}, "--no-secure-boot")

	r := m.powerOn(2 * bootTimeout)
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Fatalf("a booted in mode %s; the policy was signed for a normal boot", mode)
	}
	v.give(r, policy)
	r.unseals("data-partition-key")

	r.keel("try b --tries 1", 0)
	r.reboot()
	r.booted("b", "2.0")
	v.give(r, policy)
	r.keel(unsealCmd, 2)
	r.powerOff()
}
