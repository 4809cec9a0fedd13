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
		vals, err := tpm.ReadPCRs(sw.TPM(), []crypto.Hash{crypto.SHA256}, []int{8, 9})
		if err != nil {
			t.Fatal(err)
		}
		v := vals[crypto.SHA256]
		keel(t, "secret", "sign-policy", "--key", p("vendor.key"),
			"--pcr", "8="+hex.EncodeToString(v[8]), "--pcr", "9="+hex.EncodeToString(v[9]), "--out", out).ok(t)
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
	keel(t, "secret", "sign-policy", "--key", name+".key", "--pcr", "9="+strings.Repeat("00", 32), "--out", filepath.Join(dir, "p.json")).fails(t, ExitStorage, "chmod 600")
}
