package cli

import (
	"crypto"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/swtpmtest"
)

// TestSecretSealUnseal seals a secret on a TPM (swtpm), signs a policy for
// the current PCR 8/9 values, unseals it; after PCR 9 changes (another
// slot image) the same policy fails, and a newly signed policy for the new
// values unseals it without resealing.
func TestSecretSealUnseal(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	keel(t, "secret", "keygen", "--out", p("vendor")).ok(t)
	keel(t, "secret", "keygen", "--out", p("vendor")).fails(t, ExitStorage, "refusing to overwrite")
	os.WriteFile(p("secret"), []byte("data-partition-key"), 0o600)
	keel(t, "secret", "seal", "--tpm", sw.Socket, "--auth", p("vendor.pub"), "--in", p("secret"), "--out", p("sealed.json")).ok(t)
	sign := func(out string) {
		t.Helper()
		vals, err := tpm.ReadPCRs(sw.TPM(), []crypto.Hash{crypto.SHA256}, []int{7, 8, 9})
		if err != nil {
			t.Fatal(err)
		}
		v := vals[crypto.SHA256]
		r := keel(t, "secret", "sign-policy", "--key", p("vendor.key"), "--pcr", "7="+hex.EncodeToString(v[7]),
			"--pcr", "8="+hex.EncodeToString(v[8]), "--pcr", "9="+hex.EncodeToString(v[9]), "--out", out).ok(t)
		if !strings.Contains(r.stderr, "signed for PCRs [7 8 9]: PCR 7 binds the firmware's Secure Boot state and keys") {
			t.Errorf("sign-policy said %q", r.stderr)
		}
	}
	sign(p("policy-a.json"))
	unseal := func(policy string) result {
		return keel(t, "secret", "unseal", "--tpm", sw.Socket, "--sealed", p("sealed.json"), "--policy", policy)
	}
	if got := unseal(p("policy-a.json")).ok(t).stdout; got != "data-partition-key" {
		t.Fatalf("unsealed %q", got)
	}
	m, err := tpm.NewMeasurer(sw.TPM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Extend(9, []byte("a tampered or different slot image"), tpm.Event{Type: "test"}); err != nil {
		t.Fatal(err)
	}
	unseal(p("policy-a.json")).fails(t, ExitStorage, "do not match the signed policy")
	sign(p("policy-b.json"))
	if got := unseal(p("policy-b.json")).ok(t).stdout; got != "data-partition-key" {
		t.Fatalf("unsealed %q with the new policy", got)
	}
	keel(t, "secret", "sign-policy", "--key", p("vendor.key"), "--pcr", "9=zz").fails(t, ExitUsage, "64-digit")
	keel(t, "secret", "unseal", "--sealed", p("sealed.json")).fails(t, ExitUsage, "--policy")
	if r := keel(t, "secret", "seal", "--tpm", sw.Socket, "--auth", p("vendor.key"), "--in", p("secret")); r.code != ExitStorage || !strings.Contains(r.stderr, "PUBLIC KEY") {
		t.Errorf("sealing with a private key file: %+v", r)
	}
}

// TestSecretKeygenNeverOverwrites: keygen creates exclusively and a policy
// key others can read is refused (issue 9 item 16).
func TestSecretKeygenNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "vendor")
	keel(t, "secret", "keygen", "--out", name).ok(t)
	before, _ := os.ReadFile(name + ".key")
	keel(t, "secret", "keygen", "--out", name).fails(t, ExitStorage, "exists")
	if after, _ := os.ReadFile(name + ".key"); string(after) != string(before) {
		t.Error("the existing key was overwritten")
	}
	if err := os.Remove(name + ".key"); err != nil {
		t.Fatal(err)
	}
	// Only the public half left: the private key is still created
	// exclusively and the public one is not replaced.
	keel(t, "secret", "keygen", "--out", name).fails(t, ExitStorage, "vendor.pub exists")
	if _, err := os.Stat(name + ".key"); err == nil {
		t.Error("a failed keygen left a private key without its .pub")
	}
	os.Remove(name + ".pub")
	keel(t, "secret", "keygen", "--out", name).ok(t)
	os.Chmod(name+".key", 0o644)
	os.WriteFile(filepath.Join(dir, "pcrs"), nil, 0o600)
	keel(t, "secret", "sign-policy", "--key", name+".key", "--no-secure-boot", "--pcr", "9="+strings.Repeat("00", 32), "--out", filepath.Join(dir, "p.json")).fails(t, ExitStorage, "chmod 600")
}

// TestSignPolicyNeedsPCR7: every signed policy binds PCR 7 (Secure Boot
// state and keys) unless --no-secure-boot says the device boots without
// Secure Boot, and sign-policy says which it did.
func TestSignPolicyNeedsPCR7(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	keel(t, "secret", "keygen", "--out", p("vendor")).ok(t)
	z := strings.Repeat("00", 32)
	keel(t, "secret", "sign-policy", "--key", p("vendor.key"), "--pcr", "8="+z, "--pcr", "9="+z).
		fails(t, ExitUsage, "the policy has no PCR 7")
	keel(t, "secret", "sign-policy", "--key", p("vendor.key"), "--no-secure-boot", "--pcr", "7="+z, "--pcr", "9="+z).
		fails(t, ExitUsage, "contradict")
	r := keel(t, "secret", "sign-policy", "--key", p("vendor.key"), "--no-secure-boot", "--pcr", "8="+z, "--pcr", "9="+z, "--out", p("p.json")).ok(t)
	if !strings.Contains(r.stderr, "signed for PCRs [8 9] WITHOUT PCR 7 (--no-secure-boot)") {
		t.Errorf("sign-policy --no-secure-boot said %q", r.stderr)
	}
	var sp tpm.SignedPolicy
	if err := readJSON(p("p.json"), &sp); err != nil {
		t.Fatal(err)
	}
	if _, ok := sp.PCRs[7]; ok || len(sp.PCRs) != 2 {
		t.Errorf("--no-secure-boot policy over %v", sp.PCRs)
	}
	keel(t, "secret", "sign-policy", "--key", p("vendor.key"), "--pcr", "7="+z, "--out", p("p7.json")).ok(t)
}
