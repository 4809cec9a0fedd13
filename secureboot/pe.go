package secureboot

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"debug/pe"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/pkcs7"
)

// ErrUnsigned is wrapped by VerifyPE when the image has no Authenticode
// signature at all.
var ErrUnsigned = errors.New("the image has no Authenticode signature")

// ErrBadSignature is wrapped by VerifyPE when no signature of the image
// verifies with the certificate.
var ErrBadSignature = errors.New("no valid Authenticode signature by the certificate")

// SignPE returns the PE/COFF image in with an Authenticode signature by
// key (whose certificate is cert) added to its attribute certificate table
// (UEFI 2.10 section 32.5; signatures already there are kept): SHA-256,
// PKCS#7 SignedData with cert embedded, no timestamp server. The PE
// checksum is recomputed (it is not part of the Authenticode hash, so the
// signature stays valid), as sbsign does. The result is checked with
// VerifyPE before it is returned.
//
// go-uefi stamps the signing time (PKCS#9 signingTime) into the
// signature, so signing the same image twice gives different bytes in the
// signature, and only there.
func SignPE(in []byte, cert *x509.Certificate, key crypto.Signer) (out []byte, err error) {
	if err := checkPair(cert, key); err != nil {
		return nil, fmt.Errorf("secureboot: signing key: %w", err)
	}
	if err := checkCertTable(in); err != nil {
		return nil, fmt.Errorf("secureboot: signing: %w", err)
	}
	// go-uefi's parser trusts the headers; checkCertTable vetted the
	// part it indexes with, and this catches whatever else it trips on.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("secureboot: signing: malformed PE image (%v)", r)
		}
	}()
	bin, err := authenticode.Parse(bytes.NewReader(in))
	if err != nil {
		return nil, fmt.Errorf("secureboot: signing: %w", err)
	}
	if _, err := bin.Sign(key, cert); err != nil {
		return nil, fmt.Errorf("secureboot: signing: %w", err)
	}
	out = bin.Bytes()
	if err := fixChecksum(out); err != nil {
		return nil, fmt.Errorf("secureboot: signing: %w", err)
	}
	if err := VerifyPE(out, cert); err != nil {
		return nil, fmt.Errorf("secureboot: the signed image does not verify: %w", err)
	}
	return out, nil
}

// VerifyPE checks that img carries an Authenticode signature by cert over
// its current contents: the signer is cert (issuer and serial number),
// the signed SpcIndirectDataContent holds the image's SHA-256
// Authenticode hash, the signed attributes' messageDigest is the digest of
// that content, and the RSA signature over the signed attributes verifies
// with cert's key. It builds no chain (firmware also accepts a signer that
// chains up to a db certificate): cert itself must be the signer. The error wraps ErrUnsigned or
// ErrBadSignature and says why.
func VerifyPE(img []byte, cert *x509.Certificate) (err error) {
	if err := checkCertTable(img); err != nil {
		return fmt.Errorf("secureboot: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("secureboot: malformed PE image (%v)", r)
		}
	}()
	bin, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("secureboot: %w", err)
	}
	sigs, err := bin.Signatures()
	if err != nil {
		return fmt.Errorf("secureboot: %w", err)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("secureboot: %w", ErrUnsigned)
	}
	digest := bin.Hash(crypto.SHA256)
	var signers, problems []string
	for _, s := range sigs {
		if s.CertType != signature.WIN_CERT_TYPE_PKCS_SIGNED_DATA {
			problems = append(problems, fmt.Sprintf("a certificate of type %#x, not PKCS#7 SignedData", s.CertType))
			continue
		}
		a, err := authenticode.ParseAuthenticode(s.Certificate)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, c := range a.Pkcs.Certs {
			signers = append(signers, c.Subject.String())
		}
		if !a.Pkcs.HasCertificate(cert) {
			continue
		}
		if err := checkAuthenticode(a, digest, cert); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		return nil
	}
	msg := fmt.Sprintf("%d signature(s)", len(sigs))
	if len(signers) > 0 {
		msg += " with certificates " + fmt.Sprintf("%q", signers)
	}
	for _, p := range problems {
		msg += "; " + p
	}
	return fmt.Errorf("secureboot: %w %q: %s", ErrBadSignature, cert.Subject.String(), msg)
}

// checkAuthenticode checks one Authenticode signature whose signer info
// names cert: the image digest, the messageDigest attribute over the
// signed content (go-uefi's Verify checks neither the attribute nor its
// presence), then the RSA signature.
func checkAuthenticode(a *authenticode.Authenticode, digest []byte, cert *x509.Certificate) error {
	if !a.Algid.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
		return fmt.Errorf("digest algorithm %v, want SHA-256", a.Algid.Algorithm)
	}
	if !bytes.Equal(a.Digest, digest) {
		return fmt.Errorf("the signed Authenticode hash %x is not the image's %x: the image changed after signing", a.Digest, digest)
	}
	// The content is [0] EXPLICIT SpcIndirectDataContent; messageDigest
	// is over the SEQUENCE's contents, without its tag and length.
	var content asn1.RawValue
	if rest, err := asn1.Unmarshal(a.Pkcs.ContentInfo, &content); err != nil || len(rest) != 0 ||
		content.Class != asn1.ClassUniversal || content.Tag != asn1.TagSequence {
		return errors.New("no SpcIndirectDataContent")
	}
	want := sha256.Sum256(content.Bytes)
	for _, si := range a.Pkcs.SignerInfo {
		if si.IssuerAndSerialnumber == nil || !bytes.Equal(si.IssuerAndSerialnumber.RawIssuer, cert.RawIssuer) ||
			si.IssuerAndSerialnumber.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		attrs := si.AuthenticatedAttributes
		if attrs == nil {
			return errors.New("the signer info has no authenticated attributes (Authenticode requires them)")
		}
		if !bytes.Equal(attrs.MessageDigest, want[:]) {
			return errors.New("the messageDigest attribute does not match the signed content")
		}
		if !attrs.ContentType.Equal(authenticode.OIDSpcIndirectDataContent) {
			return fmt.Errorf("content type attribute %v, want SpcIndirectDataContent", attrs.ContentType)
		}
	}
	ok, err := a.Pkcs.Verify(cert)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the RSA signature does not verify")
	}
	return nil
}

// checkCertTable checks the PE headers and the attribute certificate table
// (data directory entry 4) as far as go-uefi's parser relies on them
// without checks: the table, if any, is the end of the file, 8-byte
// aligned, and made of WIN_CERTIFICATEs whose lengths stay inside it.
func checkCertTable(img []byte) error {
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("not a PE image: %w", err)
	}
	defer f.Close()
	var dd pe.DataDirectory
	var headers uint32
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		if h.NumberOfRvaAndSizes > pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
			dd = h.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
		}
		headers = h.SizeOfHeaders
	case *pe.OptionalHeader32:
		if h.NumberOfRvaAndSizes > pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
			dd = h.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
		}
		headers = h.SizeOfHeaders
	default:
		return errors.New("not a PE image: no optional header")
	}
	if dd.VirtualAddress == 0 && dd.Size == 0 {
		return nil
	}
	end := uint64(dd.VirtualAddress) + uint64(dd.Size)
	if dd.VirtualAddress < headers || dd.VirtualAddress%8 != 0 || end != uint64(len(img)) {
		return fmt.Errorf("the certificate table (offset %d, %d bytes) does not end the %d-byte image, 8-byte aligned after its headers", dd.VirtualAddress, dd.Size, len(img))
	}
	t := img[dd.VirtualAddress:]
	for len(t) > 0 {
		if len(t) < signature.SizeofWINCertificate {
			return errors.New("a truncated WIN_CERTIFICATE at the end of the certificate table")
		}
		n := uint64(binary.LittleEndian.Uint32(t))
		if n < signature.SizeofWINCertificate || n > uint64(len(t)) {
			return fmt.Errorf("a WIN_CERTIFICATE of %d bytes in a certificate table with %d left", n, len(t))
		}
		n = (n + 7) &^ 7
		if n > uint64(len(t)) {
			n = uint64(len(t))
		}
		t = t[n:]
	}
	return nil
}

// checksumOffset returns the file offset of the optional header's
// CheckSum field.
func checksumOffset(img []byte) (int, error) {
	if len(img) < 0x40 || img[0] != 'M' || img[1] != 'Z' {
		return 0, errors.New("no MZ header")
	}
	lfanew := int(binary.LittleEndian.Uint32(img[0x3c:]))
	off := lfanew + 4 + 20 + 64 // PE signature, COFF header, then CheckSum at 64
	if lfanew < 0x40 || off+4 > len(img) || string(img[lfanew:lfanew+4]) != "PE\x00\x00" {
		return 0, errors.New("no PE header")
	}
	return off, nil
}

// fixChecksum recomputes the PE checksum of img in place.
func fixChecksum(img []byte) error {
	off, err := checksumOffset(img)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(img[off:], peChecksum(img, off))
	return nil
}

// peChecksum is the PE image checksum (imagehlp's CheckSumMappedFile): the
// sum of the file's 16-bit little-endian words with carries folded back,
// the CheckSum field itself read as zero, plus the file length.
func peChecksum(b []byte, off int) uint32 {
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		var w uint32
		switch {
		case i >= off && i < off+4:
		case i+1 < len(b):
			w = uint32(b[i]) | uint32(b[i+1])<<8
		default:
			w = uint32(b[i])
		}
		sum += w
		sum = sum&0xffff + sum>>16
	}
	sum = sum&0xffff + sum>>16
	return sum + uint32(len(b))
}
