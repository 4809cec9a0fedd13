package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PolicyRef is the policyRef of keel's TPM2_PolicyAuthorize: a signing key
// that also signs other things cannot be tricked into authorizing keel
// policies, and vice versa.
var PolicyRef = []byte("keel:seal-v1")

// MaxSecret is the largest secret Seal takes (MAX_SYM_DATA on most TPMs).
const MaxSecret = 128

// HexBytes is a byte string that encodes as lowercase hex in JSON.
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// PCRValues are expected values of PCRs in the SHA-256 bank.
type PCRValues map[int]HexBytes

func (v PCRValues) sorted() ([]int, error) {
	if len(v) == 0 {
		return nil, errors.New("policy: no PCRs")
	}
	var pcrs []int
	for p, d := range v {
		if err := checkPCR(p); err != nil {
			return nil, err
		}
		if len(d) != sha256.Size {
			return nil, fmt.Errorf("policy: PCR %d value is %d bytes, want a SHA-256 bank value", p, len(d))
		}
		pcrs = append(pcrs, p)
	}
	sort.Ints(pcrs)
	return pcrs, nil
}

// policyPCR is the TPM2_PolicyPCR command (Part 3 §23.7) for v, without the
// session handle: the selection and the SHA-256 of the selected values,
// concatenated in ascending PCR order.
func (v PCRValues) policyPCR() (tpm2.PolicyPCR, error) {
	pcrs, err := v.sorted()
	if err != nil {
		return tpm2.PolicyPCR{}, err
	}
	h := sha256.New()
	for _, p := range pcrs {
		h.Write(v[p])
	}
	return tpm2.PolicyPCR{
		PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		Pcrs: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
			{Hash: tpm2.TPMAlgSHA256, PCRSelect: pcrSelect(pcrs...)},
		}},
	}, nil
}

// PolicyDigest is the policy digest (SHA-256 session) of TPM2_PolicyPCR over
// v: the approvedPolicy a vendor signs.
func (v PCRValues) PolicyDigest() ([]byte, error) {
	cmd, err := v.policyPCR()
	if err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := cmd.Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// SignedPolicy authorizes unsealing when the SHA-256 PCRs hold PCRs. The
// image builder makes one per slot image (SignPolicy) and ships it with the
// slot; it is not secret.
type SignedPolicy struct {
	PCRs PCRValues `json:"pcrs"`
	// Policy is PCRs.PolicyDigest(), the approvedPolicy.
	Policy HexBytes `json:"policy"`
	// Signature is over SHA-256(Policy || PolicyRef): ASN.1 DER for ECDSA,
	// PKCS #1 v1.5 for RSA.
	Signature HexBytes `json:"signature"`
}

// SignPolicy signs the PolicyPCR digest of pcrs with priv (an ECDSA P-256
// or RSA key; ed25519 is not supported by TPMs).
func SignPolicy(priv crypto.Signer, pcrs PCRValues) (*SignedPolicy, error) {
	if _, err := authKeyPublic(priv.Public()); err != nil {
		return nil, err
	}
	pol, err := pcrs.PolicyDigest()
	if err != nil {
		return nil, err
	}
	sig, err := priv.Sign(rand.Reader, aHash(pol), crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing policy: %w", err)
	}
	return &SignedPolicy{PCRs: pcrs, Policy: pol, Signature: sig}, nil
}

// aHash is what TPM2_VerifySignature checks for TPM2_PolicyAuthorize
// (Part 3 §23.16): H_nameAlg(approvedPolicy || policyRef).
func aHash(policy []byte) []byte {
	h := sha256.New()
	h.Write(policy)
	h.Write(PolicyRef)
	return h.Sum(nil)
}

// authKeyPublic is the TPMT_PUBLIC the authorization key is loaded as (its
// Name is bound into the sealed object's policy, so this must not change).
func authKeyPublic(pub crypto.PublicKey) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return tpm2.TPMTPublic{}, errors.New("policy key: only ECDSA P-256 is supported")
		}
		b, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			return tpm2.TPMTPublic{}, err
		}
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   tpm2.TPMECCNistP256,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: b[1:33]},
				Y: tpm2.TPM2BECCParameter{Buffer: b[33:]},
			}),
		}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 && k.N.BitLen() != 3072 && k.N.BitLen() != 4096 {
			return tpm2.TPMTPublic{}, fmt.Errorf("policy key: RSA-%d: want 2048, 3072 or 4096 bits", k.N.BitLen())
		}
		exp := uint32(k.E)
		if k.E == 65537 {
			exp = 0 // the TPM's encoding of the default exponent
		}
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   tpm2.TPMKeyBits(k.N.BitLen()),
				Exponent:  exp,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("policy key: %T is not supported (use ECDSA P-256 or RSA)", pub)
}

// tpmSignature converts a Go signature to a TPMT_SIGNATURE.
func tpmSignature(pub crypto.PublicKey, sig []byte) (tpm2.TPMTSignature, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
			return tpm2.TPMTSignature{}, errors.New("policy signature: not an ASN.1 ECDSA signature")
		}
		return tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
				Hash:       tpm2.TPMAlgSHA256,
				SignatureR: tpm2.TPM2BECCParameter{Buffer: rs.R.FillBytes(make([]byte, 32))},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: rs.S.FillBytes(make([]byte, 32))},
			})}, nil
	case *rsa.PublicKey:
		return tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig},
			})}, nil
	}
	return tpm2.TPMTSignature{}, fmt.Errorf("policy key: %T is not supported", pub)
}

// Sealed is a sealed data object: the TPM2B_PUBLIC and TPM2B_PRIVATE from
// TPM2_Create, and the TPMT_PUBLIC of the policy key it trusts. It can be
// stored anywhere (the private part is encrypted to the TPM's storage
// primary key); only this TPM can load it.
type Sealed struct {
	Public  HexBytes `json:"public"`
	Private HexBytes `json:"private"`
	AuthKey HexBytes `json:"auth_key"`
}

// SealedPolicy is the authPolicy of objects Seal creates:
// TPM2_PolicyAuthorize(Name(authPub), PolicyRef), Part 3 §23.16.
func SealedPolicy(authPub crypto.PublicKey) ([]byte, error) {
	pub, err := authKeyPublic(authPub)
	if err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	pa := tpm2.PolicyAuthorize{PolicyRef: tpm2.TPM2BDigest{Buffer: PolicyRef}, KeySign: *name}
	if err := pa.Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// srk creates the owner hierarchy's ECC P-256 storage primary key from the
// TCG template (TPM2_CreatePrimary, Part 3 §24.1): the same key every time,
// as long as the owner seed is not changed (TPM2_Clear).
func srk(t transport.TPM) (*tpm2.CreatePrimaryResponse, func(), error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return nil, nil, fmt.Errorf("TPM2_CreatePrimary(owner SRK): %w", err)
	}
	return rsp, func() { flush(t, rsp.ObjectHandle) }, nil
}

// flush is TPM2_FlushContext (Part 3 §28.4).
func flush(t transport.TPM, h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// srkSalt salts a session with the SRK; with AES-128-CFB parameter
// encryption (EncryptIn for Create, EncryptOut for Unseal) the secret never
// crosses the bus in the clear.
func srkSalt(s *tpm2.CreatePrimaryResponse) (tpm2.AuthOption, error) {
	pub, err := s.OutPublic.Contents()
	if err != nil {
		return nil, err
	}
	return tpm2.Salted(s.ObjectHandle, *pub), nil
}

// Seal seals secret (at most MaxSecret bytes) in an object under the owner
// SRK whose only authorization is the policy SealedPolicy(authPub): it
// unseals for any PCR state authPub's holder signed (SignPolicy), and for no
// other. No password works (userWithAuth clear), dictionary-attack lockout
// does not apply (noDA). TPM2_Create, Part 3 §12.1.
func Seal(t transport.TPM, secret []byte, authPub crypto.PublicKey) (*Sealed, error) {
	if len(secret) == 0 || len(secret) > MaxSecret {
		return nil, fmt.Errorf("seal: secret of %d bytes: want 1 to %d", len(secret), MaxSecret)
	}
	keyPub, err := authKeyPublic(authPub)
	if err != nil {
		return nil, err
	}
	policy, err := SealedPolicy(authPub)
	if err != nil {
		return nil, err
	}
	s, done, err := srk(t)
	if err != nil {
		return nil, err
	}
	defer done()
	salt, err := srkSalt(s)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: s.ObjectHandle, Name: s.Name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(nil), salt, tpm2.AESEncryption(128, tpm2.EncryptIn))},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgKeyedHash,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM: true, FixedParent: true, NoDA: true,
				UserWithAuth: false, AdminWithPolicy: true,
			},
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
			}),
		}),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_Create(sealed object): %w", err)
	}
	return &Sealed{
		Public:  tpm2.Marshal(rsp.OutPublic),
		Private: tpm2.Marshal(rsp.OutPrivate),
		AuthKey: tpm2.Marshal(keyPub),
	}, nil
}

// ErrPolicy says the TPM refused the policy: the PCRs do not hold the
// values the signed policy names, or the signature or key do not match.
var ErrPolicy = errors.New("TPM policy not satisfied")

// Unseal returns the sealed secret if the TPM's SHA-256 PCRs hold the values
// sp names and sp is signed by the key s was sealed to:
//
//  1. TPM2_CreatePrimary the owner SRK and TPM2_Load s under it (§12.2)
//  2. TPM2_LoadExternal the policy key's public part into the owner
//     hierarchy (§12.3; a NULL-hierarchy key would yield a NULL ticket)
//  3. TPM2_StartAuthSession a policy session (§11.1), salted with the SRK
//  4. TPM2_PolicyPCR with sp's selection and digest (§23.7): fails unless
//     the PCRs hold those values
//  5. TPM2_VerifySignature of sp over aHash = SHA-256(policy || PolicyRef)
//     (§20.1): returns the verified ticket
//  6. TPM2_PolicyAuthorize(policy, PolicyRef, key name, ticket) (§23.16)
//  7. TPM2_Unseal (§12.7) with the session, response encrypted
func Unseal(t transport.TPM, s *Sealed, sp *SignedPolicy) ([]byte, error) {
	if s == nil || sp == nil {
		return nil, errors.New("unseal: nothing to unseal or no signed policy")
	}
	keyPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](s.AuthKey)
	if err != nil {
		return nil, fmt.Errorf("unseal: policy key: %w", err)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](s.Public)
	if err != nil {
		return nil, fmt.Errorf("unseal: public: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](s.Private)
	if err != nil {
		return nil, fmt.Errorf("unseal: private: %w", err)
	}
	pcrCmd, err := sp.PCRs.policyPCR()
	if err != nil {
		return nil, err
	}
	want, err := sp.PCRs.PolicyDigest()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(want, sp.Policy) {
		return nil, fmt.Errorf("unseal: signed policy digest %x does not match its PCR values (%x)", []byte(sp.Policy), want)
	}
	goKey, err := goPublic(keyPub)
	if err != nil {
		return nil, err
	}
	sig, err := tpmSignature(goKey, sp.Signature)
	if err != nil {
		return nil, err
	}

	primary, done, err := srk(t)
	if err != nil {
		return nil, err
	}
	defer done()
	obj, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: primary.ObjectHandle, Name: primary.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_Load(sealed object): %w", err)
	}
	defer flush(t, obj.ObjectHandle)
	key, err := tpm2.LoadExternal{
		InPublic:  tpm2.New2B(*keyPub),
		Hierarchy: tpm2.TPMRHOwner,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_LoadExternal(policy key): %w", err)
	}
	defer flush(t, key.ObjectHandle)

	salt, err := srkSalt(primary)
	if err != nil {
		return nil, err
	}
	sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16, salt, tpm2.AESEncryption(128, tpm2.EncryptOut))
	if err != nil {
		return nil, fmt.Errorf("TPM2_StartAuthSession: %w", err)
	}
	defer closeSess()

	pcrCmd.PolicySession = sess.Handle()
	if _, err := pcrCmd.Execute(t); err != nil {
		return nil, fmt.Errorf("%w: TPM2_PolicyPCR: the PCRs do not hold the signed values: %v", ErrPolicy, err)
	}
	ver, err := tpm2.VerifySignature{
		KeyHandle: tpm2.NamedHandle{Handle: key.ObjectHandle, Name: key.Name},
		Digest:    tpm2.TPM2BDigest{Buffer: aHash(sp.Policy)},
		Signature: sig,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("%w: TPM2_VerifySignature: the policy is not signed by the sealing key: %v", ErrPolicy, err)
	}
	_, err = tpm2.PolicyAuthorize{
		PolicySession:  sess.Handle(),
		ApprovedPolicy: tpm2.TPM2BDigest{Buffer: sp.Policy},
		PolicyRef:      tpm2.TPM2BDigest{Buffer: PolicyRef},
		KeySign:        key.Name,
		CheckTicket:    ver.Validation,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("%w: TPM2_PolicyAuthorize: %v", ErrPolicy, err)
	}
	out, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle, Name: obj.Name, Auth: sess},
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("%w: TPM2_Unseal: %v", ErrPolicy, err)
	}
	return out.OutData.Buffer, nil
}

// goPublic converts the stored policy key back to a Go public key.
func goPublic(p *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch p.Type {
	case tpm2.TPMAlgECC:
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, err
		}
		b := append([]byte{4}, pt.X.Buffer...)
		b = append(b, pt.Y.Buffer...)
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	case tpm2.TPMAlgRSA:
		n, err := p.Unique.RSA()
		if err != nil {
			return nil, err
		}
		parms, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, err
		}
		e := int(parms.Exponent)
		if e == 0 {
			e = 65537
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}, nil
	}
	return nil, fmt.Errorf("policy key type %v is not supported", p.Type)
}
