package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/efi/util"
	"github.com/foxboron/go-uefi/pkcs7"

	"github.com/keelboot/keel/format/uefi"
)

// The GUIDs in their byte order in memory, written out by hand from UEFI
// 2.10 (EFI_GLOBAL_VARIABLE 8be4df61-93ca-11d2-aa0d-00e098032b8c,
// EFI_IMAGE_SECURITY_DATABASE_GUID d719b2cb-3d3a-4596-a3bc-dad00e67656f).
const (
	globalHex  = "61dfe48bca93d211aa0d00e098032b8c"
	imageDBHex = "cbb219d73a3d9645a3bcdad00e67656f"
	x509Hex    = "a159c0a5e494a74a87b5ab155c2bf072" // EFI_CERT_X509_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072
	pkcs7Hex   = "9dd2af4adf68ee498aa9347d375665a7" // EFI_CERT_TYPE_PKCS7_GUID 4aafd29d-68df-49ee-8aa9-347d375665a7
	ownerHex   = "4b3a7451122c7e48bd4eb0105fdb8961"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOwnerGUID: keel's signature owner in its text form and in memory
// (package format/uefi tests the vendor GUIDs).
func TestOwnerGUID(t *testing.T) {
	if OwnerGUID.String() != "51743a4b-2c12-487e-bd4e-b0105fdb8961" || hex.EncodeToString(OwnerGUID[:]) != ownerHex {
		t.Errorf("OwnerGUID %s (%x), want 51743a4b-2c12-487e-bd4e-b0105fdb8961 (%s)", OwnerGUID, OwnerGUID[:], ownerHex)
	}
	if e := toEFIGUID(OwnerGUID); fromEFIGUID(e) != OwnerGUID {
		t.Errorf("go-uefi's EFI_GUID round trip: %v", e)
	}
}

// TestSignatureList: one EFI_CERT_X509_GUID list with one entry, laid out
// as UEFI 2.10 section 32.4.1 says; go-uefi's parser reads it back, and
// efitools' cert-to-efi-sig-list makes the same bytes given OwnerGUID.
func TestSignatureList(t *testing.T) {
	dir := keys(t)
	cert, _, _ := LoadKey(dir, DB)
	esl := SignatureList(cert)

	n := len(cert.Raw)
	want := unhex(t, x509Hex)
	want = binary.LittleEndian.AppendUint32(want, uint32(16+4+4+4+16+n)) // SignatureListSize
	want = binary.LittleEndian.AppendUint32(want, 0)                     // SignatureHeaderSize
	want = binary.LittleEndian.AppendUint32(want, uint32(16+n))          // SignatureSize
	want = append(want, unhex(t, ownerHex)...)
	want = append(want, cert.Raw...)
	if !bytes.Equal(esl, want) {
		t.Errorf("ESL:\n% x\nwant\n% x", esl[:48], want[:48])
	}

	l, err := signature.ReadSignatureList(bytes.NewReader(esl))
	if err != nil {
		t.Fatal(err)
	}
	if l.SignatureType != signature.CERT_X509_GUID || len(l.Signatures) != 1 ||
		l.Signatures[0].Owner != util.EFIGUID(toEFIGUID(OwnerGUID)) || !bytes.Equal(l.Signatures[0].Data, cert.Raw) {
		t.Errorf("go-uefi reads %+v", l)
	}
	if c, err := x509.ParseCertificate(l.Signatures[0].Data); err != nil || !c.Equal(cert) {
		t.Errorf("the entry is not the certificate: %v", err)
	}

	out := filepath.Join(t.TempDir(), "db.esl")
	if msg, ok := run(t, "efitools", "cert-to-efi-sig-list", "-g", OwnerGUID.String(), CertPath(dir, DB), out); !ok {
		t.Fatalf("cert-to-efi-sig-list:\n%s", msg)
	}
	if theirs, _ := os.ReadFile(out); !bytes.Equal(theirs, esl) {
		t.Errorf("cert-to-efi-sig-list writes\n% x\nSignatureList\n% x", theirs, esl)
	}
}

// signedBytes is the serialization UEFI 2.10 section 8.2.2 signs, built
// by hand: the name in UTF-16LE without its zero, the vendor GUID, the
// attributes (UINT32 LE), the EFI_TIME, the data.
func signedBytes(t testing.TB, name, guidHex string, ts time.Time, data []byte) []byte {
	t.Helper()
	var b []byte
	for _, c := range []byte(name) {
		b = append(b, c, 0)
	}
	b = append(b, unhex(t, guidHex)...)
	b = append(b, 0x27, 0, 0, 0)
	b = append(b, efiTime(ts)...)
	return append(b, data...)
}

// efiTime is EFI_TIME: Year (UINT16 LE), Month, Day, Hour, Minute, Second,
// Pad1, Nanosecond (UINT32), TimeZone (INT16), Daylight, Pad2.
func efiTime(ts time.Time) []byte {
	ts = ts.UTC()
	b := binary.LittleEndian.AppendUint16(nil, uint16(ts.Year()))
	b = append(b, byte(ts.Month()), byte(ts.Day()), byte(ts.Hour()), byte(ts.Minute()), byte(ts.Second()), 0)
	return append(b, make([]byte, 8)...)
}

// checkAuthVariable parses an AuthVariable blob by hand and with go-uefi,
// and checks its PKCS#7 against signer over the serialization of 8.2.2.
// It returns the serialization and the SignedData.
func checkAuthVariable(t *testing.T, blob []byte, name, guidHex string, ts time.Time, data []byte, signer *x509.Certificate) (signed, sd []byte) {
	t.Helper()
	// EFI_VARIABLE_AUTHENTICATION_2: EFI_TIME, then
	// WIN_CERTIFICATE_UEFI_GUID {dwLength, wRevision 0x0200,
	// wCertificateType WIN_CERT_TYPE_EFI_GUID 0x0EF1, CertType
	// EFI_CERT_TYPE_PKCS7_GUID, CertData}, then the data.
	if len(blob) < 40 || !bytes.Equal(blob[:16], efiTime(ts)) {
		t.Fatalf("%s: time stamp % x, want % x", name, blob[:16], efiTime(ts))
	}
	length := binary.LittleEndian.Uint32(blob[16:])
	if rev, typ := binary.LittleEndian.Uint16(blob[20:]), binary.LittleEndian.Uint16(blob[22:]); rev != 0x0200 || typ != 0x0EF1 {
		t.Errorf("%s: WIN_CERTIFICATE revision %#x type %#x", name, rev, typ)
	}
	if !bytes.Equal(blob[24:40], unhex(t, pkcs7Hex)) {
		t.Errorf("%s: CertType % x, want EFI_CERT_TYPE_PKCS7_GUID", name, blob[24:40])
	}
	if int(16+length) > len(blob) || length < 24 {
		t.Fatalf("%s: dwLength %d in a %d-byte blob", name, length, len(blob))
	}
	sd = blob[40 : 16+length]
	if got := blob[16+length:]; !bytes.Equal(got, data) {
		t.Errorf("%s: %d bytes of data after the descriptor, want the %d given", name, len(got), len(data))
	}

	// go-uefi's reader agrees.
	a, err := signature.ReadEFIVariableAuthencation2(bytes.NewBuffer(bytes.Clone(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if a.AuthInfo.Header.Length != length || a.AuthInfo.CertType != signature.EFI_CERT_TYPE_PKCS7_GUID || !bytes.Equal(a.AuthInfo.CertData, sd) ||
		int(a.Time.Year) != ts.UTC().Year() || a.Time.Nanosecond != 0 || a.Time.TimeZone != 0 {
		t.Errorf("%s: go-uefi reads %+v", name, a.AuthInfo.Header)
	}

	// The SignedData: detached id-data, the signer's certificate, one
	// signer info naming it, no authenticated attributes (8.2.2), an
	// RSA PKCS#1 v1.5 SHA-256 signature over the serialization.
	var top asn1.RawValue
	if rest, err := asn1.Unmarshal(sd, &top); err != nil || len(rest) != 0 || top.Tag != asn1.TagSequence {
		t.Fatalf("%s: CertData is not one DER SEQUENCE (a SignedData without ContentInfo): %v", name, err)
	}
	p, err := pkcs7.ParsePKCS7(sd)
	if err != nil {
		t.Fatal(err)
	}
	if !p.OID.Equal(pkcs7.OIDData) || len(p.ContentInfo) != 0 {
		t.Errorf("%s: content %v with %d bytes, want detached id-data", name, p.OID, len(p.ContentInfo))
	}
	if len(p.Certs) != 1 || !p.Certs[0].Equal(signer) {
		t.Errorf("%s: embedded certificates %d, want the signer's", name, len(p.Certs))
	}
	if len(p.SignerInfo) != 1 || !p.HasCertificate(signer) {
		t.Fatalf("%s: %d signer infos, not naming %s", name, len(p.SignerInfo), signer.Subject)
	}
	si := p.SignerInfo[0]
	if si.AuthenticatedAttributes != nil || si.UnauthenticatedAttributes != nil {
		t.Errorf("%s: the signer info has attributes", name)
	}
	if !si.DigestAlgorithm.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA256) || !si.EncryptedDigestAlgorithm.Algorithm.Equal(pkcs7.OIDEncryptionAlgorithmRSA) {
		t.Errorf("%s: algorithms %v %v", name, si.DigestAlgorithm.Algorithm, si.EncryptedDigestAlgorithm.Algorithm)
	}
	signed = signedBytes(t, name, guidHex, ts, data)
	h := sha256.Sum256(signed)
	if err := rsa.VerifyPKCS1v15(signer.PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], si.EncryptedDigest); err != nil {
		t.Errorf("%s: the signature does not verify with %s over name||guid||attributes||time||data: %v", name, signer.Subject, err)
	}
	return signed, sd
}

// TestEnrolment: db signed by KEK, KEK and PK by PK, in that order, each
// the SignatureList of its certificate behind an
// EFI_VARIABLE_AUTHENTICATION_2 that parses (by hand and with go-uefi)
// and whose PKCS#7 verifies with the signer's certificate over
// name||guid||attributes||time stamp||data, and with no other key. openssl
// verifies each SignedData against its signer; efitools'
// sign-efi-sig-list, given the same time stamp, keys and list, writes the
// same bytes, and its -o bundle is the serialization checked.
func TestEnrolment(t *testing.T) {
	dir := keys(t)
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600))
	vars, err := Enrolment(dir, ts)
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]*x509.Certificate{}
	for _, n := range KeyNames {
		certs[n], _, _ = LoadKey(dir, n)
	}
	want := []struct{ name, signer, guid, efivarfs string }{
		{DB, KEK, imageDBHex, "db-d719b2cb-3d3a-4596-a3bc-dad00e67656f"},
		{KEK, PK, globalHex, "KEK-8be4df61-93ca-11d2-aa0d-00e098032b8c"},
		{PK, PK, globalHex, "PK-8be4df61-93ca-11d2-aa0d-00e098032b8c"},
	}
	if len(vars) != len(want) {
		t.Fatalf("%d variables, want %d", len(vars), len(want))
	}
	tmp := t.TempDir()
	for i, w := range want {
		v := vars[i]
		if v.Name != w.name || v.Signer != w.signer || hex.EncodeToString(v.GUID[:]) != w.guid || v.Attributes != 0x27 || v.EfivarfsName() != w.efivarfs {
			t.Errorf("variable %d: %s signed by %s, uefi.GUID %s, attributes %#x, efivarfs %s; want %+v", i, v.Name, v.Signer, v.GUID, v.Attributes, v.EfivarfsName(), w)
		}
		if ed := v.EfivarfsData(); !bytes.Equal(ed[:4], []byte{0x27, 0, 0, 0}) || !bytes.Equal(ed[4:], v.Data) {
			t.Errorf("%s: efivarfs data starts % x", v.Name, ed[:8])
		}
		esl := SignatureList(certs[w.name])
		signed, sd := checkAuthVariable(t, v.Data, w.name, w.guid, ts, esl, certs[w.signer])
		// No other key's signature.
		for _, other := range KeyNames {
			if other == w.signer {
				continue
			}
			h := sha256.Sum256(signed)
			p, _ := pkcs7.ParsePKCS7(sd)
			if rsa.VerifyPKCS1v15(certs[other].PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], p.SignerInfo[0].EncryptedDigest) == nil || p.HasCertificate(certs[other]) {
				t.Errorf("%s verifies with %s too", w.name, other)
			}
		}

		// openssl: the SignedData, in a ContentInfo, verifies detached
		// over the serialization with the signer's certificate as the
		// only trust anchor; with another one it does not.
		ci, err := asn1.Marshal(struct {
			Type    asn1.ObjectIdentifier
			Content asn1.RawValue
		}{pkcs7.OIDSignedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd}})
		if err != nil {
			t.Fatal(err)
		}
		p7, content := filepath.Join(tmp, w.name+".p7"), filepath.Join(tmp, w.name+".signed")
		os.WriteFile(p7, ci, 0o644)
		os.WriteFile(content, signed, 0o644)
		verify := func(ca string) (string, bool) {
			return run(t, "openssl", "openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", p7,
				"-content", content, "-CAfile", CertPath(dir, ca), "-purpose", "any", "-out", os.DevNull)
		}
		if msg, ok := verify(w.signer); !ok || !strings.Contains(msg, "Verification successful") {
			t.Errorf("openssl smime -verify %s with %s:\n%s", w.name, w.signer, msg)
		}
		if msg, ok := verify(DB); ok && w.signer != DB {
			t.Errorf("openssl smime -verify %s with db succeeds:\n%s", w.name, msg)
		}

		// efitools, same inputs: the same bytes.
		eslPath, auth, bundle := filepath.Join(tmp, w.name+".esl"), filepath.Join(tmp, w.name+".auth"), filepath.Join(tmp, w.name+".bundle")
		os.WriteFile(eslPath, esl, 0o644)
		stamp := ts.UTC().Format("2006-01-02 15:04:05")
		if msg, ok := run(t, "efitools", "sign-efi-sig-list", "-t", stamp, "-c", CertPath(dir, w.signer), "-k", KeyPath(dir, w.signer), w.name, eslPath, auth); !ok {
			t.Fatalf("sign-efi-sig-list:\n%s", msg)
		}
		if theirs, _ := os.ReadFile(auth); !bytes.Equal(theirs, v.Data) {
			t.Errorf("%s: sign-efi-sig-list writes %d bytes, AuthVariable %d, not the same", w.name, len(theirs), len(v.Data))
		}
		if msg, ok := run(t, "efitools", "sign-efi-sig-list", "-o", "-t", stamp, w.name, eslPath, bundle); !ok {
			t.Fatalf("sign-efi-sig-list -o:\n%s", msg)
		}
		if theirs, _ := os.ReadFile(bundle); !bytes.Equal(theirs, signed) {
			t.Errorf("%s: sign-efi-sig-list -o bundle\n% x\nwant\n% x", w.name, theirs[:48], signed[:48])
		}
	}

	// Deterministic: the same inputs, the same bytes.
	again, err := Enrolment(dir, ts.Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for i := range vars {
		if !bytes.Equal(again[i].Data, vars[i].Data) {
			t.Errorf("%s: a second Enrolment gives other bytes", vars[i].Name)
		}
	}
}

func TestAuthVariableErrors(t *testing.T) {
	dir := keys(t)
	pk, pkKey, _ := LoadKey(dir, PK)
	_, kekKey, _ := LoadKey(dir, KEK)
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := AuthVariable("PK", uefi.GlobalVariableGUID(), nil, pk, kekKey, ts); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("KEK's key with PK's certificate: %v", err)
	}
	if _, err := AuthVariable("PK", uefi.GlobalVariableGUID(), nil, pk, pkKey, time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC)); err == nil || !strings.Contains(err.Error(), "EFI_TIME") {
		t.Errorf("year 1899: %v", err)
	}
	if _, err := AuthVariable("", uefi.GlobalVariableGUID(), nil, pk, pkKey, ts); err == nil {
		t.Error("no name: no error")
	}
	// An empty list (what deletes PK, signed by PK) is fine.
	b, err := AuthVariable("PK", uefi.GlobalVariableGUID(), nil, pk, pkKey, ts)
	if err != nil {
		t.Fatal(err)
	}
	checkAuthVariable(t, b, "PK", globalHex, ts, nil, pk)
}
