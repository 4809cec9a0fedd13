package manifest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// SigEntry is the slot container entry holding the signature envelope of
// the slot's manifest entry.
const SigEntry = "manifest.sig"

// SigDomain prefixes the manifest bytes in every signature, so that a
// manifest signature can never be taken for a signature of anything else
// made with the same key (and the other way round).
const SigDomain = "keel manifest v1\x00"

// Limits of a signature envelope.
const (
	// MaxSignatures is the most signatures an envelope may hold.
	MaxSignatures = 16
	// MaxSigSize is the largest envelope, in bytes.
	MaxSigSize = 16 << 10
)

// Error is a sentinel error of this package; test with errors.Is.
type Error string

func (e Error) Error() string { return string(e) }

// Sentinel errors of Verify.
const (
	// ErrUnsigned: there is no signature envelope (an empty manifest.sig,
	// or none: pass nil).
	ErrUnsigned Error = "manifest is unsigned"
	// ErrMalformedSig: the signature envelope does not parse.
	ErrMalformedSig Error = "malformed manifest signature"
	// ErrUnknownKey: no signature is by a trusted key.
	ErrUnknownKey Error = "manifest not signed by a trusted key"
	// ErrBadSignature: a trusted key's signature does not match the
	// manifest bytes (the manifest or the signature was changed).
	ErrBadSignature Error = "manifest signature does not verify"
)

// Sentinel errors of VerifyFor (and Expect.Check): a manifest validly
// signed by a trusted key, but not for this place.
const (
	// ErrWrongBoard: the manifest is for another board (its compatible).
	ErrWrongBoard Error = "manifest is for another board"
	// ErrWrongRole: a seed's manifest where a slot's belongs, or the
	// other way round.
	ErrWrongRole Error = "manifest is for another role"
)

// Signature is one signature of a manifest.
type Signature struct {
	// KeyID names the signing key (KeyID of its public key).
	KeyID string `json:"key_id"`
	// Sig is the ed25519 signature of SigDomain + the manifest bytes;
	// base64 (standard, padded) in JSON.
	Sig []byte `json:"sig"`
}

// Envelope is the content of the manifest.sig entry:
//
//	{"signatures": [{"key_id": "3f2a…", "sig": "base64…"}, …]}
//
// Several signatures allow key rotation: during a transition a manifest is
// signed with the old and the new key, and keel-init accepts it as long as
// it trusts either.
type Envelope struct {
	Signatures []Signature `json:"signatures"`
}

// ParseEnvelope decodes and checks a signature envelope: one JSON object
// with no unknown fields, 1..MaxSignatures signatures, each with a
// 16-hex-digit key ID, no key ID twice, and a 64-byte signature.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxSigSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedSig, len(b), MaxSigSize)
	}
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedSig, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformedSig)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *Envelope) check() error {
	n := len(e.Signatures)
	if n == 0 || n > MaxSignatures {
		return fmt.Errorf("%w: %d signatures, want 1..%d", ErrMalformedSig, n, MaxSignatures)
	}
	seen := map[string]bool{}
	for i, s := range e.Signatures {
		if !validKeyID(s.KeyID) {
			return fmt.Errorf("%w: signature %d: key_id %q is not %d lower-case hex digits", ErrMalformedSig, i+1, abbrev(s.KeyID), KeyIDLen)
		}
		if seen[s.KeyID] {
			return fmt.Errorf("%w: two signatures by key %s", ErrMalformedSig, s.KeyID)
		}
		seen[s.KeyID] = true
		if len(s.Sig) != ed25519.SignatureSize {
			return fmt.Errorf("%w: signature %d (key %s) is %d bytes, want %d", ErrMalformedSig, i+1, s.KeyID, len(s.Sig), ed25519.SignatureSize)
		}
	}
	return nil
}

func validKeyID(id string) bool {
	if len(id) != KeyIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// KeyIDs returns the key IDs of the signatures, in order.
func (e *Envelope) KeyIDs() []string {
	ids := make([]string, len(e.Signatures))
	for i, s := range e.Signatures {
		ids[i] = s.KeyID
	}
	return ids
}

// Marshal encodes e after checking it as ParseEnvelope does.
func (e *Envelope) Marshal() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// signedMessage is what a manifest signature covers.
func signedMessage(manifest []byte) []byte {
	return append([]byte(SigDomain), manifest...)
}

// Sign signs the manifest bytes with each key and returns the envelope:
// the signatures of sigBytes (an existing envelope of the same manifest;
// nil or empty starts a new one) followed by the new ones. A key that
// already signed replaces its earlier signature. The manifest must parse:
// Sign refuses to sign what keel-init would refuse to boot.
//
// Sign cannot check the earlier signatures (it has no public keys); they
// must be over the same manifest bytes, or they will not verify.
func Sign(manifestBytes, sigBytes []byte, keys ...PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("manifest: sign: no key given")
	}
	if _, err := Parse(manifestBytes); err != nil {
		return nil, fmt.Errorf("manifest: refusing to sign an invalid manifest: %w", err)
	}
	return SignMessage(SigDomain, manifestBytes, sigBytes, keys...)
}

// SignMessage signs domain + msg with each key, in the envelope format of
// manifest signatures (Sign, for manifests, is SignMessage with SigDomain
// after checking the manifest). Other signed keel objects (an update
// bundle's header) use it with a domain of their own, so that no signature
// can be taken for one of another kind of object.
func SignMessage(domain string, msg, sigBytes []byte, keys ...PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("manifest: sign: no key given")
	}
	if domain == "" {
		return nil, fmt.Errorf("manifest: sign: no signature domain")
	}
	e := &Envelope{}
	if len(bytes.TrimSpace(sigBytes)) > 0 {
		var err error
		if e, err = ParseEnvelope(sigBytes); err != nil {
			return nil, err
		}
	}
	signed := append([]byte(domain), msg...)
	for _, k := range keys {
		if len(k.Key) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("manifest: sign: private key of %d bytes, want %d", len(k.Key), ed25519.PrivateKeySize)
		}
		s := Signature{KeyID: k.ID(), Sig: ed25519.Sign(k.Key, signed)}
		replaced := false
		for i := range e.Signatures {
			if e.Signatures[i].KeyID == s.KeyID {
				e.Signatures[i], replaced = s, true
			}
		}
		if !replaced {
			e.Signatures = append(e.Signatures, s)
		}
	}
	if len(e.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("manifest: sign: %d signatures, at most %d", len(e.Signatures), MaxSignatures)
	}
	return e.Marshal()
}

// Verify checks the signature envelope sigBytes of the manifest bytes
// against the trusted public keys and only then parses the manifest. It
// does not check which board and role the manifest is for: keel-init and
// recovery call VerifyFor; Verify is for tools that inspect a manifest. At
// least one signature by a trusted key must verify; signatures by other
// keys are ignored (an old key still listed after a rotation, a key of
// another product line).
//
// The error wraps ErrUnsigned (sigBytes empty), ErrMalformedSig (the
// envelope does not parse),
// ErrBadSignature (a trusted key's signature does not match: the manifest
// or signature was changed) or ErrUnknownKey (no signature by a trusted
// key; the message names the key IDs found and the trusted ones), or is a
// Parse error of a validly signed but invalid manifest. An empty trusted
// list is an error, never "accept anything".
func Verify(manifestBytes, sigBytes []byte, trusted []PublicKey) (*Manifest, error) {
	id, err := VerifyMessage(SigDomain, "manifest", manifestBytes, sigBytes, trusted)
	if err != nil {
		return nil, err
	}
	m, err := Parse(manifestBytes)
	if err != nil {
		return nil, fmt.Errorf("manifest signed by trusted key %s: %w", id, err)
	}
	return m, nil
}

// VerifyMessage checks the envelope sigBytes over domain + msg against the
// trusted keys, as Verify does for a manifest, and returns the ID of the
// trusted key whose signature verifies. what names the signed object in
// errors ("manifest", "bundle header"); the sentinel errors are Verify's.
func VerifyMessage(domain, what string, msg, sigBytes []byte, trusted []PublicKey) (string, error) {
	if len(trusted) == 0 {
		return "", fmt.Errorf("manifest: verify: no trusted keys given")
	}
	if len(sigBytes) == 0 {
		return "", fmt.Errorf("%w: the %s has no signature", ErrUnsigned, what)
	}
	e, err := ParseEnvelope(sigBytes)
	if err != nil {
		return "", err
	}
	signed := append([]byte(domain), msg...)
	var bad []string
	for _, s := range e.Signatures {
		for _, k := range trusted {
			if len(k.Key) != ed25519.PublicKeySize || k.ID() != s.KeyID {
				continue
			}
			if ed25519.Verify(k.Key, signed, s.Sig) {
				return s.KeyID, nil
			}
			bad = append(bad, s.KeyID)
		}
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("%w: the signature by trusted key %s does not match the %s: the %s or its signature was changed after signing",
			ErrBadSignature, strings.Join(bad, ", "), what, what)
	}
	verb := "are"
	if len(e.Signatures) == 1 {
		verb = "is"
	}
	return "", fmt.Errorf("%w: the %s is signed by %s, which %s not among the trusted keys %s: it was signed with an unknown key",
		ErrUnknownKey, what, strings.Join(e.KeyIDs(), ", "), verb, strings.Join(trustedIDs(trusted), ", "))
}

// VerifyFor is Verify, then want.Check: the manifest must also be for
// want's board and role. want must name both (its Compatible may be
// AnyBoard, for host tools only); the error wraps ErrWrongBoard or
// ErrWrongRole when the manifest, validly signed, is for another board or
// role, or is one of Verify's.
func VerifyFor(manifestBytes, sigBytes []byte, trusted []PublicKey, want Expect) (*Manifest, error) {
	if want.Compatible == "" {
		return nil, fmt.Errorf("manifest: verify: no board to check the manifest against")
	}
	if want.Role != RoleSlot && want.Role != RoleSeed {
		return nil, fmt.Errorf("manifest: verify: role %q to check the manifest against: want %q or %q", want.Role, RoleSlot, RoleSeed)
	}
	m, err := Verify(manifestBytes, sigBytes, trusted)
	if err != nil {
		return nil, err
	}
	if err := want.Check(m); err != nil {
		return nil, err
	}
	return m, nil
}

func trustedIDs(keys []PublicKey) []string {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, k.ID())
	}
	sort.Strings(ids)
	return ids
}
