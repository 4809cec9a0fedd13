package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func genKey(t testing.TB, comment string) (PrivateKey, PublicKey) {
	t.Helper()
	priv, pub, err := GenerateKey(rand.Reader, comment)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// fixedKey is a deterministic key for fuzz seeds.
func fixedKey(seed byte) PrivateKey {
	return PrivateKey{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)), Comment: "fixed"}
}

func signedSample(t testing.TB, keys ...PrivateKey) (mb, sig []byte) {
	t.Helper()
	mb, err := sample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err = Sign(mb, nil, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return mb, sig
}

func TestSignVerifyRoundTrip(t *testing.T) {
	priv, pub := genKey(t, "release 2026")
	mb, sig := signedSample(t, priv)
	m, err := Verify(mb, sig, []PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	if *m != *sample(t) {
		t.Errorf("Verify returned %+v", m)
	}
	e, err := ParseEnvelope(sig)
	if err != nil {
		t.Fatal(err)
	}
	if ids := e.KeyIDs(); len(ids) != 1 || ids[0] != pub.ID() || len(ids[0]) != KeyIDLen {
		t.Errorf("key IDs %v, want [%s]", ids, pub.ID())
	}
	// The signature is over the domain prefix: a plain signature of the
	// manifest bytes by the same key is not a manifest signature.
	if !ed25519.Verify(pub.Key, append([]byte(SigDomain), mb...), e.Signatures[0].Sig) {
		t.Error("signature is not over SigDomain + manifest")
	}
	plain := Envelope{Signatures: []Signature{{KeyID: pub.ID(), Sig: ed25519.Sign(priv.Key, mb)}}}
	pb, _ := plain.Marshal()
	if _, err := Verify(mb, pb, []PublicKey{pub}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signature without the domain prefix: %v, want ErrBadSignature", err)
	}
}

func TestVerifyTampered(t *testing.T) {
	priv, pub := genKey(t, "")
	mb, sig := signedSample(t, priv)
	for i := range mb {
		bad := bytes.Clone(mb)
		bad[i] ^= 0x01
		_, err := Verify(bad, sig, []PublicKey{pub})
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("byte %d flipped: %v, want ErrBadSignature", i, err)
		}
		if i == 0 && !strings.Contains(err.Error(), pub.ID()) {
			t.Errorf("error does not name the key: %v", err)
		}
	}
	// A flipped bit in the signature itself.
	var e Envelope
	json.Unmarshal(sig, &e)
	e.Signatures[0].Sig[10] ^= 0x80
	bad, _ := e.Marshal()
	if _, err := Verify(mb, bad, []PublicKey{pub}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("flipped signature bit: %v", err)
	}
	// Appended whitespace changes the signed bytes too.
	if _, err := Verify(append(bytes.Clone(mb), '\n'), sig, []PublicKey{pub}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("appended newline: %v", err)
	}
}

func TestVerifyUnknownKey(t *testing.T) {
	unknown, _ := genKey(t, "attacker")
	_, t1 := genKey(t, "release 1")
	_, t2 := genKey(t, "release 2")
	mb, sig := signedSample(t, unknown)
	_, err := Verify(mb, sig, []PublicKey{t1, t2})
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Verify = %v, want ErrUnknownKey", err)
	}
	for _, want := range []string{"signed by " + unknown.ID() + ", which is not among the trusted keys", t1.ID(), t2.ID(), "unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if _, err := Verify(mb, sig, nil); err == nil || !strings.Contains(err.Error(), "no trusted keys") {
		t.Errorf("no trusted keys: %v", err)
	}
	if _, err := Verify(mb, nil, []PublicKey{t1}); !errors.Is(err, ErrUnsigned) {
		t.Errorf("no signature: %v, want ErrUnsigned", err)
	}
}

// TestRotation: devices trusting the old and the new key accept a manifest
// signed by either; a transition manifest carries both signatures.
func TestRotation(t *testing.T) {
	oldPriv, oldPub := genKey(t, "old")
	newPriv, newPub := genKey(t, "new")
	both := []PublicKey{oldPub, newPub}

	mb, sig := signedSample(t, newPriv)
	if _, err := Verify(mb, sig, both); err != nil {
		t.Errorf("signed by the second trusted key only: %v", err)
	}
	if _, err := Verify(mb, sig, []PublicKey{oldPub}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("device trusting only the old key: %v, want ErrUnknownKey", err)
	}

	// Transition: the old key signs, then the new key adds its signature.
	_, sig = signedSample(t, oldPriv)
	sig, err := Sign(mb, sig, newPriv)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := ParseEnvelope(sig)
	if ids := e.KeyIDs(); len(ids) != 2 || ids[0] != oldPub.ID() || ids[1] != newPub.ID() {
		t.Errorf("envelope key IDs %v, want [%s %s]", ids, oldPub.ID(), newPub.ID())
	}
	for _, trusted := range [][]PublicKey{{oldPub}, {newPub}, both} {
		if _, err := Verify(mb, sig, trusted); err != nil {
			t.Errorf("trusting %v: %v", trustedIDs(trusted), err)
		}
	}
	// Signing again with a key replaces its signature, never duplicates it.
	sig2, err := Sign(mb, sig, newPriv)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := ParseEnvelope(sig2); len(e.Signatures) != 2 {
		t.Errorf("re-signing with the same key gave %d signatures", len(e.Signatures))
	}

	// A bad signature by one trusted key does not hide a good one by another.
	var env Envelope
	json.Unmarshal(sig, &env)
	env.Signatures[0].Sig[0] ^= 1
	sig3, _ := env.Marshal()
	if _, err := Verify(mb, sig3, both); err != nil {
		t.Errorf("old signature broken, new one good: %v", err)
	}
	if _, err := Verify(mb, sig3, []PublicKey{oldPub}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("only the broken signature trusted: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	priv, _ := genKey(t, "")
	if _, err := Sign([]byte(`{"version": "1"}`), nil, priv); err == nil || !strings.Contains(err.Error(), "refusing to sign an invalid manifest") {
		t.Errorf("invalid manifest: %v", err)
	}
	mb, _ := sample(t).Marshal()
	if _, err := Sign(mb, nil); err == nil {
		t.Error("no key accepted")
	}
	if _, err := Sign(mb, []byte("garbage"), priv); !errors.Is(err, ErrMalformedSig) {
		t.Errorf("appending to garbage: %v", err)
	}
	if _, err := Sign(mb, nil, PrivateKey{}); err == nil {
		t.Error("zero key accepted")
	}
}

// A validly signed manifest that does not parse is still refused.
func TestVerifySignedInvalid(t *testing.T) {
	priv, pub := genKey(t, "")
	bad := []byte(`{"version": "1", "kernel": {"sha256": "00", "size": 1}}`)
	e := Envelope{Signatures: []Signature{{KeyID: pub.ID(), Sig: ed25519.Sign(priv.Key, append([]byte(SigDomain), bad...))}}}
	sig, _ := e.Marshal()
	if _, err := Verify(bad, sig, []PublicKey{pub}); err == nil || !strings.Contains(err.Error(), "signed by trusted key "+pub.ID()) {
		t.Errorf("signed invalid manifest: %v", err)
	}
}

func TestParseEnvelopeErrors(t *testing.T) {
	sig := base64.StdEncoding.EncodeToString(make([]byte, 64))
	short := base64.StdEncoding.EncodeToString(make([]byte, 63))
	for _, tc := range []struct{ in, want string }{
		{``, "EOF"},
		{`{`, "unexpected EOF"},
		{`[]`, "cannot unmarshal array"},
		{`{"signatures": []}`, "0 signatures"},
		{`{"signatures": null}`, "0 signatures"},
		{`{"sigs": []}`, `unknown field "sigs"`},
		{`{"signatures": [{"key_id": "0011223344556677", "sig": "` + sig + `", "alg": "rsa"}]}`, `unknown field "alg"`},
		{`{"signatures": [{"key_id": "00112233", "sig": "` + sig + `"}]}`, `key_id "00112233" is not 16 lower-case hex digits`},
		{`{"signatures": [{"key_id": "00112233445566ZZ", "sig": "` + sig + `"}]}`, "not 16 lower-case hex"},
		{`{"signatures": [{"key_id": "00112233445566AA", "sig": "` + sig + `"}]}`, "not 16 lower-case hex"},
		{`{"signatures": [{"key_id": "0011223344556677", "sig": "` + short + `"}]}`, "63 bytes, want 64"},
		{`{"signatures": [{"key_id": "0011223344556677", "sig": "!!"}]}`, "illegal base64"},
		{`{"signatures": [{"key_id": "0011223344556677", "sig": "` + sig + `"}, {"key_id": "0011223344556677", "sig": "` + sig + `"}]}`, "two signatures by key 0011223344556677"},
		{`{"signatures": [{"key_id": "0011223344556677", "sig": "` + sig + `"}]} {}`, "data after the JSON object"},
		{strings.Repeat(" ", MaxSigSize+1), "more than"},
	} {
		_, err := ParseEnvelope([]byte(tc.in))
		if !errors.Is(err, ErrMalformedSig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.60q: %v; want ErrMalformedSig saying %q", tc.in, err, tc.want)
		}
	}
	var many Envelope
	for i := 0; i <= MaxSignatures; i++ {
		many.Signatures = append(many.Signatures, Signature{KeyID: fixedKey(byte(i)).ID(), Sig: make([]byte, 64)})
	}
	if _, err := many.Marshal(); !errors.Is(err, ErrMalformedSig) {
		t.Errorf("%d signatures: %v", len(many.Signatures), err)
	}
}

// FuzzVerify: whatever the manifest and envelope bytes, Verify never
// panics, and it accepts only the manifest bytes the trusted key signed.
func FuzzVerify(f *testing.F) {
	key := fixedKey(1)
	trusted := []PublicKey{key.Public(), fixedKey(2).Public()}
	mb, sig := signedSample(f, key)
	f.Add(mb, sig)
	_, sig2 := signedSample(f, key, fixedKey(3))
	f.Add(mb, sig2)
	f.Add(mb, []byte(`{"signatures":[{"key_id":"0011223344556677","sig":""}]}`))
	f.Add([]byte("{}"), []byte("{}"))
	seedMB, seedSig := func() ([]byte, []byte) {
		b, _ := seedSample(f).Marshal()
		s, _ := Sign(b, nil, key)
		return b, s
	}()
	f.Add(seedMB, seedSig)
	f.Fuzz(func(t *testing.T, m, s []byte) {
		if _, err := VerifyFor(m, s, trusted, Expect{Compatible: testBoard, Role: RoleSlot}); err == nil && !bytes.Equal(m, mb) {
			t.Fatalf("VerifyFor as a slot accepted bytes other than the signed slot manifest: %q", m)
		}
		got, err := Verify(m, s, trusted)
		if err != nil {
			return
		}
		if bytes.Equal(m, seedMB) {
			return
		}
		if !bytes.Equal(m, mb) {
			t.Fatalf("accepted manifest bytes the key never signed: %q", m)
		}
		if *got != *sample(t) {
			t.Fatalf("accepted manifest %+v", got)
		}
	})
}

// FuzzParseEnvelope: an envelope that parses marshals to one that parses
// to the same signatures.
func FuzzParseEnvelope(f *testing.F) {
	_, sig := signedSample(f, fixedKey(1), fixedKey(2))
	f.Add(sig)
	f.Add([]byte(`{"signatures":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedSig) {
				t.Fatalf("error without ErrMalformedSig: %v", err)
			}
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ParseEnvelope(again)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(e2.Signatures) != len(e.Signatures) {
			t.Fatal("re-parse changed the signatures")
		}
		for i := range e.Signatures {
			if e.Signatures[i].KeyID != e2.Signatures[i].KeyID || !bytes.Equal(e.Signatures[i].Sig, e2.Signatures[i].Sig) {
				t.Fatalf("signature %d changed", i)
			}
		}
	})
}

// TestVerifyFor: a manifest validly signed by a trusted key is still
// refused for another board or in another role (issue 9 item 14). On the
// old code there was nothing to check: Verify accepted all of these.
func TestVerifyFor(t *testing.T) {
	priv, pub := genKey(t, "release")
	trusted := []PublicKey{pub}
	signed := func(m *Manifest) (mb, sig []byte) {
		t.Helper()
		mb, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if sig, err = Sign(mb, nil, priv); err != nil {
			t.Fatal(err)
		}
		return mb, sig
	}
	slotMB, slotSig := signed(sample(t))
	seedMB, seedSig := signed(seedSample(t))
	other := sample(t)
	other.Compatible = "qemu-arm64-uboot"
	otherMB, otherSig := signed(other)

	asSlot := Expect{Compatible: testBoard, Role: RoleSlot}
	asSeed := Expect{Compatible: testBoard, Role: RoleSeed}
	if m, err := VerifyFor(slotMB, slotSig, trusted, asSlot); err != nil || m.Role != RoleSlot || m.Compatible != testBoard {
		t.Errorf("slot manifest as a slot: %+v, %v", m, err)
	}
	if m, err := VerifyFor(seedMB, seedSig, trusted, asSeed); err != nil || m.Role != RoleSeed || m.Data == nil {
		t.Errorf("seed manifest as the seed: %+v, %v", m, err)
	}
	for _, tc := range []struct {
		name     string
		mb, sig  []byte
		want     Expect
		sentinel error
		msg      string
	}{
		{"another board's slot", otherMB, otherSig, asSlot, ErrWrongBoard, "manifest is for board qemu-arm64-uboot, this is qemu-x86_64-uefi"},
		{"another board's slot as a seed", otherMB, otherSig, asSeed, ErrWrongRole, "a slot's, not a seed's"},
		{"a seed's manifest as a slot", seedMB, seedSig, asSlot, ErrWrongRole, "manifest is a seed's, not a slot's"},
		{"a slot's manifest as the seed", slotMB, slotSig, asSeed, ErrWrongRole, "manifest is a slot's, not a seed's"},
	} {
		m, err := VerifyFor(tc.mb, tc.sig, trusted, tc.want)
		if m != nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.sentinel, tc.msg)
		}
		// Verify (no binding) accepts it: the signature is good.
		if _, err := Verify(tc.mb, tc.sig, trusted); err != nil {
			t.Errorf("%s: Verify: %v", tc.name, err)
		}
	}
	// AnyBoard (host tools) skips the board, never the role.
	if _, err := VerifyFor(otherMB, otherSig, trusted, Expect{Compatible: AnyBoard, Role: RoleSlot}); err != nil {
		t.Errorf("AnyBoard: %v", err)
	}
	if _, err := VerifyFor(seedMB, seedSig, trusted, Expect{Compatible: AnyBoard, Role: RoleSlot}); !errors.Is(err, ErrWrongRole) {
		t.Errorf("AnyBoard, seed as slot: %v", err)
	}
	// The role and board are signed: rewriting them breaks the signature.
	for _, edit := range [][2]string{{`"role": "seed"`, `"role": "slot"`}, {`"compatible": "qemu-x86_64-uefi"`, `"compatible": "qemu-arm64-uboot"`}} {
		b := bytes.Replace(seedMB, []byte(edit[0]), []byte(edit[1]), 1)
		if _, err := VerifyFor(b, seedSig, trusted, asSlot); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s -> %s: %v, want ErrBadSignature", edit[0], edit[1], err)
		}
	}
	// What to check against must be given.
	for _, want := range []Expect{{Role: RoleSlot}, {Compatible: testBoard}, {Compatible: testBoard, Role: "bundle"}, {}} {
		if _, err := VerifyFor(slotMB, slotSig, trusted, want); err == nil || !strings.Contains(err.Error(), "to check the manifest against") {
			t.Errorf("Expect %+v: %v", want, err)
		}
	}
	// The checks come after the signature: an unknown key's manifest for
	// another board is refused as unknown, not as another board's.
	unknown, _ := genKey(t, "attacker")
	ub, _ := other.Marshal()
	us, _ := Sign(ub, nil, unknown)
	if _, err := VerifyFor(ub, us, trusted, asSlot); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key, other board: %v, want ErrUnknownKey", err)
	}
}

// TestVerifyForRefusesOldManifest: a manifest signed before the binding
// (no compatible, no role) by a still-trusted key does not verify.
func TestVerifyForRefusesOldManifest(t *testing.T) {
	priv, pub := genKey(t, "")
	old := []byte(`{"version": "1.0", "security_version": 1, "cmdline": "", "kernel": {"sha256": "` + strings.Repeat("ab", 32) + `", "size": 1}, "initrd": {"sha256": "` + strings.Repeat("cd", 32) + `", "size": 1}, "root": {"fstype": "erofs"}}`)
	e := Envelope{Signatures: []Signature{{KeyID: pub.ID(), Sig: ed25519.Sign(priv.Key, append([]byte(SigDomain), old...))}}}
	sig, _ := e.Marshal()
	_, err := VerifyFor(old, sig, []PublicKey{pub}, Expect{Compatible: testBoard, Role: RoleSlot})
	if err == nil || !strings.Contains(err.Error(), "no compatible") {
		t.Errorf("old manifest: %v, want no compatible", err)
	}
}
