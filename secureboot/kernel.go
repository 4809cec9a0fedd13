package secureboot

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/foxboron/go-uefi/efi/signature"
)

// Slot kernels under Secure Boot.
//
// With Secure Boot on, Debian's kernel runs in lockdown (integrity), and
// kexec_file_load accepts only a kernel whose signature verifies with a
// key of the kernel's keyrings (KEXEC_SIG; kernel/kexec_file.c,
// arch/x86/kernel/kexec-bzimage64.c): first .builtin_trusted_keys and
// .secondary_trusted_keys, then .platform, which the kernel fills at boot
// from the firmware's db (security/integrity/platform_certs/load_uefi.c).
// Debian signs its kernels with "Debian Secure Boot Signer", issued by the
// Debian Secure Boot CA, which is in none of them: on a device whose db
// holds only keel's key, a kernel as Debian ships it is refused (ENOKEY,
// seen in the VM tests). The image builder therefore signs slot kernels
// with the db key (SignKernel); keel-init checks that signature before it
// kexecs (VerifyKexec), so that a slot the kernel would refuse falls back
// with the reason named.
//
// The kernel verifies only the first signature of the attribute
// certificate table (crypto/asymmetric_keys/verify_pefile.c reads one
// WIN_CERTIFICATE): SignKernel replaces the signatures, it does not add
// one.

// SignKernel returns the slot kernel img signed for kexec under Secure
// Boot with key (certificate cert, the db key): unchanged when its first
// signature already verifies with cert (so that building twice gives the
// same bytes), else with its signatures replaced by one by key.
func SignKernel(img []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	if VerifyKexec(img, []*x509.Certificate{cert}) == nil {
		return img, nil
	}
	bare, err := StripSignatures(img)
	if err != nil {
		return nil, err
	}
	return SignPE(bare, cert, key)
}

// StripSignatures returns img without its attribute certificate table
// (what sbattach --remove does): the table cut off the end of the file,
// data directory entry 4 zeroed, the checksum recomputed. An unsigned
// image comes back as it was.
func StripSignatures(img []byte) ([]byte, error) {
	if err := checkCertTable(img); err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	dd, err := securityDirOffset(img)
	if err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	off := binary.LittleEndian.Uint32(img[dd:])
	if off == 0 {
		return img, nil
	}
	out := bytes.Clone(img[:off]) // checkCertTable: the table ends the file
	binary.LittleEndian.PutUint64(out[dd:], 0)
	if err := fixChecksum(out); err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	return out, nil
}

// securityDirOffset is the file offset of data directory entry 4
// (IMAGE_DIRECTORY_ENTRY_SECURITY: file offset and size of the attribute
// certificate table; PE/COFF specification, "Optional Header Data
// Directories").
func securityDirOffset(img []byte) (int, error) {
	sum, err := checksumOffset(img) // CheckSum is at 64 in both optional headers
	if err != nil {
		return 0, err
	}
	opt := sum - 64
	var dirs int // the data directories' offset in the optional header
	switch magic := binary.LittleEndian.Uint16(img[opt:]); magic {
	case 0x20b: // PE32+
		dirs = 112
	case 0x10b: // PE32
		dirs = 96
	default:
		return 0, fmt.Errorf("optional header magic %#x, not PE32 or PE32+", magic)
	}
	off := opt + dirs + 4*8
	if off+8 > len(img) {
		return 0, errors.New("truncated optional header")
	}
	return off, nil
}

// ErrKexecUnsigned says a kernel carries no signature the running kernel
// would accept for kexec under Secure Boot.
var ErrKexecUnsigned = errors.New("the kernel is not signed by a key the firmware's db holds")

// VerifyKexec checks img as the kernel's kexec signature check will under
// Secure Boot, with certs as the keys it trusts (the firmware's db): the
// first signature must be by one of certs (the signer itself; no chain is
// built) and verify over the image. The error wraps ErrKexecUnsigned and
// names the signer found.
func VerifyKexec(img []byte, certs []*x509.Certificate) (err error) {
	if err := checkCertTable(img); err != nil {
		return fmt.Errorf("secureboot: %w: %w", ErrKexecUnsigned, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("secureboot: %w: malformed PE image (%v)", ErrKexecUnsigned, r)
		}
	}()
	bin, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("secureboot: %w: %w", ErrKexecUnsigned, err)
	}
	sigs, err := bin.Signatures()
	if err != nil {
		return fmt.Errorf("secureboot: %w: %w", ErrKexecUnsigned, err)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("secureboot: %w: it has no signature", ErrKexecUnsigned)
	}
	s := sigs[0] // the only one the kernel reads
	if s.CertType != signature.WIN_CERT_TYPE_PKCS_SIGNED_DATA {
		return fmt.Errorf("secureboot: %w: its first certificate is of type %#x, not PKCS#7 SignedData", ErrKexecUnsigned, s.CertType)
	}
	a, err := authenticode.ParseAuthenticode(s.Certificate)
	if err != nil {
		return fmt.Errorf("secureboot: %w: its first signature: %w", ErrKexecUnsigned, err)
	}
	digest := bin.Hash(crypto.SHA256)
	for _, c := range certs {
		if !a.Pkcs.HasCertificate(c) {
			continue
		}
		if err := checkAuthenticode(a, digest, c); err != nil {
			return fmt.Errorf("secureboot: %w: its signature by %q does not verify: %w", ErrKexecUnsigned, c.Subject.CommonName, err)
		}
		return nil
	}
	var by []string
	for _, c := range a.Pkcs.Certs {
		by = append(by, fmt.Sprintf("%q", c.Subject.CommonName))
	}
	return fmt.Errorf("secureboot: %w: its first signature is by %s", ErrKexecUnsigned, strings.Join(by, ", "))
}

// Certificates returns the X.509 certificates of a signature database (the
// data of db, KEK or PK as efivarfs shows it after its 4 attribute bytes):
// the keys .platform gets from db.
func Certificates(db []byte) ([]*x509.Certificate, error) {
	cs, err := listCertificates(db, true)
	if err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	return cs, nil
}
