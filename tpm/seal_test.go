package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"

	"github.com/keelboot/keel/tpm/swtpmtest"
)

// policyFor is the PCR 8 + 9 SHA-256 values the OS sees after keel-init
// booted in.
func policyFor(t *testing.T, in BootMeasurement) PCRValues {
	t.Helper()
	p, err := Predict(in, []crypto.Hash{crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return PCRValues{8: p[crypto.SHA256][8], 9: p[crypto.SHA256][9]}
}

func boot(t *testing.T, sw *swtpmtest.SWTPM, in BootMeasurement) *Measurer {
	t.Helper()
	m, err := NewMeasurer(sw.TPM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := MeasureBoot(m, in); err != nil {
		t.Fatal(err)
	}
	if err := Separator(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSealUnseal(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	vendor, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("data partition key 0123456789abcdef")
	sealed, err := Seal(sw.TPM(), secret, vendor.Public())
	if err != nil {
		t.Fatal(err)
	}
	// It round-trips through JSON (it is stored on disk).
	js, _ := json.Marshal(sealed)
	sealed = new(Sealed)
	if err := json.Unmarshal(js, sealed); err != nil {
		t.Fatal(err)
	}

	bootA, bootB := testBoot("a", "normal"), testBoot("b", "normal")
	polA, err := SignPolicy(vendor, policyFor(t, bootA))
	if err != nil {
		t.Fatal(err)
	}
	polB, err := SignPolicy(vendor, policyFor(t, bootB))
	if err != nil {
		t.Fatal(err)
	}
	js, _ = json.Marshal(polA)
	polA = new(SignedPolicy)
	if err := json.Unmarshal(js, polA); err != nil {
		t.Fatal(err)
	}

	// Slot a booted: a's policy unseals, b's does not.
	m := boot(t, sw, bootA)
	got, err := Unseal(sw.TPM(), sealed, polA)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal(a) = %q, %v", got, err)
	}
	if _, err := Unseal(sw.TPM(), sealed, polB); !errors.Is(err, ErrPolicy) {
		t.Errorf("b's policy unsealed in a's boot: %v", err)
	}

	// A policy signed by someone else, or altered, does not unseal.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	polX, err := SignPolicy(other, policyFor(t, bootA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(sw.TPM(), sealed, polX); !errors.Is(err, ErrPolicy) {
		t.Errorf("a policy signed by another key: %v", err)
	}
	forged := *polA
	forged.PCRs = policyFor(t, testBoot("a", "trial"))
	if _, err := Unseal(sw.TPM(), sealed, &forged); err == nil {
		t.Error("a policy with altered PCR values unsealed")
	}

	// Anything extended afterwards (a tampered chain) locks it.
	if err := m.Extend(9, []byte("evil kernel"), Event{Type: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(sw.TPM(), sealed, polA); !errors.Is(err, ErrPolicy) {
		t.Errorf("unsealed after PCR 9 changed: %v", err)
	}

	// Reboot into slot b (a new signed slot): b's policy unseals the same
	// object, without resealing; a's no longer does.
	sw.Restart()
	boot(t, sw, bootB)
	got, err = Unseal(sw.TPM(), sealed, polB)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal(b) = %q, %v", got, err)
	}
	if _, err := Unseal(sw.TPM(), sealed, polA); !errors.Is(err, ErrPolicy) {
		t.Errorf("a's policy unsealed in b's boot: %v", err)
	}

	// A boot with the same slot but a tampered kernel does not unseal.
	sw.Restart()
	bad := testBoot("b", "normal")
	bad.KernelDigest = bytes.Repeat([]byte{1}, 32)
	boot(t, sw, bad)
	if _, err := Unseal(sw.TPM(), sealed, polB); !errors.Is(err, ErrPolicy) {
		t.Errorf("tampered kernel unsealed: %v", err)
	}
}

func TestSealRSA(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	vendor, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal(sw.TPM(), []byte("k"), vendor.Public())
	if err != nil {
		t.Fatal(err)
	}
	in := testBoot("a", "trial")
	boot(t, sw, in)
	pol, err := SignPolicy(vendor, policyFor(t, in))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Unseal(sw.TPM(), sealed, pol); err != nil || string(got) != "k" {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	pol2, _ := SignPolicy(vendor, policyFor(t, testBoot("a", "normal")))
	if _, err := Unseal(sw.TPM(), sealed, pol2); !errors.Is(err, ErrPolicy) {
		t.Errorf("normal-mode policy unsealed in a trial boot: %v", err)
	}
}

func TestSealRejects(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	vendor, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Seal(sw.TPM(), []byte("x"), vendor.Public()); err == nil {
		t.Error("P-384 key accepted")
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Seal(sw.TPM(), make([]byte, MaxSecret+1), p256.Public()); err == nil {
		t.Error("oversized secret accepted")
	}
	if _, err := SignPolicy(p256, PCRValues{}); err == nil {
		t.Error("empty PCR set signed")
	}
}
