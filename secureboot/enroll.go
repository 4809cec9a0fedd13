package secureboot

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unicode/utf16"

	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/pkcs7"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/manifest"
)

// Enrolment files: what `keel secureboot enrolment` writes on the host
// (with the private keys) and `keel secureboot enroll` writes into a
// firmware (without them). Each is the Data of a Variable: an
// EFI_VARIABLE_AUTHENTICATION_2 descriptor and the signature list, the same
// bytes as efitools' sign-efi-sig-list writes (efi-updatevar -f takes
// them too).
var enrolmentFiles = []struct {
	name, file string
	guid       uefi.GUID
	signers    []string // the variables whose certificate may sign it
}{
	{DB, "db.auth", uefi.ImageSecurityDatabaseGUID(), []string{KEK, PK}},
	{KEK, "KEK.auth", uefi.GlobalVariableGUID(), []string{PK}},
	{PK, "PK.auth", uefi.GlobalVariableGUID(), []string{PK}},
}

// AuthFile is the name of the enrolment file of variable name (db, KEK or
// PK) in an enrolment directory.
func AuthFile(name string) string { return name + ".auth" }

// WriteEnrolment writes the Data of vars (Enrolment's result) into dir as
// db.auth, KEK.auth and PK.auth, never over existing files. They hold no
// secret: the factory image that enrols a device carries them, not the
// keys.
func WriteEnrolment(dir string, vars []Variable) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("secureboot: %w", err)
	}
	for _, v := range vars {
		p := filepath.Join(dir, AuthFile(v.Name))
		if err := manifest.WriteNewFile(p, v.Data, 0o644); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("secureboot: %s exists: enrolment files are never overwritten (remove it, or write into a new directory): %w", p, err)
			}
			return fmt.Errorf("secureboot: %w", err)
		}
	}
	return nil
}

// ReadEnrolment reads db.auth, KEK.auth and PK.auth from dir and checks
// them as the firmware will before anything is written: each is a
// well-formed EFI_VARIABLE_AUTHENTICATION_2 (UEFI 2.10 section 8.2.2) over
// an EFI_SIGNATURE_LIST of X.509 certificates (section 32.4.1), PK holds
// one certificate and signs itself and KEK, and db is signed by KEK (or
// PK). It returns the writes in enrolment order: db, KEK, PK.
func ReadEnrolment(dir string) ([]Variable, error) {
	certs := map[string][]*x509.Certificate{}
	type parsed struct {
		v    Variable
		sig  []byte // the PKCS#7 SignedData
		body []byte // what it signs
	}
	var ps []parsed
	for _, f := range enrolmentFiles {
		p := filepath.Join(dir, f.file)
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("secureboot: %s is missing: an enrolment directory holds db.auth, KEK.auth and PK.auth (keel secureboot enrolment --dir KEYS --out DIR): %w", p, err)
			}
			return nil, fmt.Errorf("secureboot: %w", err)
		}
		sig, body, data, err := parseAuth2(f.name, f.guid, b)
		if err != nil {
			return nil, fmt.Errorf("secureboot: %s: %w", p, err)
		}
		cs, err := listCertificates(data, false)
		if err != nil {
			return nil, fmt.Errorf("secureboot: %s: the signature list: %w", p, err)
		}
		if f.name == PK && len(cs) != 1 {
			return nil, fmt.Errorf("secureboot: %s holds %d certificates: PK is one certificate", p, len(cs))
		}
		certs[f.name] = cs
		ps = append(ps, parsed{Variable{Name: f.name, GUID: f.guid, Attributes: VariableAttributes, Data: b}, sig, body})
	}
	var vars []Variable
	for i, f := range enrolmentFiles {
		p := ps[i]
		signer, err := checkSignedBy(p.sig, p.body, f.signers, certs)
		if err != nil {
			return nil, fmt.Errorf("secureboot: %s: %w", filepath.Join(dir, f.file), err)
		}
		p.v.Signer = signer
		vars = append(vars, p.v)
	}
	return vars, nil
}

// parseAuth2 splits an authenticated write of variable name: the
// descriptor's SignedData, the bytes it signs (name || guid || attributes
// || timestamp || data) and the data.
func parseAuth2(name string, guid uefi.GUID, b []byte) (sig, body, data []byte, err error) {
	const timeSize, hdrSize = 16, 24 // EFI_TIME; WIN_CERTIFICATE_UEFI_GUID up to CertData
	if len(b) < timeSize+hdrSize {
		return nil, nil, nil, fmt.Errorf("%d bytes: too short for an EFI_VARIABLE_AUTHENTICATION_2 descriptor (truncated?)", len(b))
	}
	ts := b[:timeSize]
	w := b[timeSize:]
	length := binary.LittleEndian.Uint32(w[0:4])
	rev := binary.LittleEndian.Uint16(w[4:6])
	typ := binary.LittleEndian.Uint16(w[6:8])
	if rev != signature.WIN_CERTIFICATE_REVISION || signature.WINCertType(typ) != signature.WIN_CERT_TYPE_EFI_GUID {
		return nil, nil, nil, fmt.Errorf("WIN_CERTIFICATE revision %#x type %#x, want %#x %#x (WIN_CERT_TYPE_EFI_GUID): not an authenticated variable write", rev, typ, signature.WIN_CERTIFICATE_REVISION, signature.WIN_CERT_TYPE_EFI_GUID)
	}
	var pkcs7GUID uefi.GUID
	copy(pkcs7GUID[:], w[8:24])
	if pkcs7GUID != fromEFIGUID(signature.EFI_CERT_TYPE_PKCS7_GUID) {
		return nil, nil, nil, fmt.Errorf("certificate type %s, want EFI_CERT_TYPE_PKCS7_GUID", pkcs7GUID)
	}
	if length < hdrSize || int64(length) > int64(len(w)) {
		return nil, nil, nil, fmt.Errorf("WIN_CERTIFICATE length %d, outside %d..%d (truncated?)", length, hdrSize, len(w))
	}
	sig = w[hdrSize:length]
	data = w[length:]
	var sb bytes.Buffer
	for _, u := range utf16.Encode([]rune(name)) {
		binary.Write(&sb, binary.LittleEndian, u)
	}
	sb.Write(guid[:])
	binary.Write(&sb, binary.LittleEndian, VariableAttributes)
	sb.Write(ts)
	sb.Write(data)
	return sig, sb.Bytes(), data, nil
}

// listCertificates returns the X.509 certificates of a signature
// database: EFI_SIGNATURE_LISTs of EFI_CERT_X509_GUID entries; with
// others (hashes), other lists are skipped instead of refused.
func listCertificates(b []byte, others bool) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(b) > 0 {
		if len(b) < 28 {
			return nil, fmt.Errorf("%d trailing bytes: too short for an EFI_SIGNATURE_LIST header", len(b))
		}
		var typ uefi.GUID
		copy(typ[:], b[:16])
		listSize := binary.LittleEndian.Uint32(b[16:20])
		headerSize := binary.LittleEndian.Uint32(b[20:24])
		sigSize := binary.LittleEndian.Uint32(b[24:28])
		if int64(listSize) > int64(len(b)) || listSize < 28 || int64(headerSize) > int64(listSize)-28 || sigSize <= 16 {
			return nil, fmt.Errorf("EFI_SIGNATURE_LIST sizes list %d, header %d, entry %d do not fit its %d bytes", listSize, headerSize, sigSize, len(b))
		}
		entries := b[28+headerSize : listSize]
		if typ != fromEFIGUID(signature.CERT_X509_GUID) {
			if !others {
				return nil, fmt.Errorf("signature type %s, want EFI_CERT_X509_GUID (keel enrols certificates)", typ)
			}
			b = b[listSize:]
			continue
		}
		if len(entries)%int(sigSize) != 0 || len(entries) == 0 {
			return nil, fmt.Errorf("EFI_SIGNATURE_LIST of %d entry bytes, not a multiple of its entry size %d", len(entries), sigSize)
		}
		for ; len(entries) > 0; entries = entries[sigSize:] {
			c, err := x509.ParseCertificate(entries[16:sigSize])
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		b = b[listSize:]
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

// checkSignedBy checks that the SignedData sig (no authenticated
// attributes, as section 8.2.2 asks) is a signature over body by one of the
// certificates of the variables named, and returns that variable's name.
func checkSignedBy(sig, body []byte, signers []string, certs map[string][]*x509.Certificate) (string, error) {
	p, err := pkcs7.ParsePKCS7(sig)
	if err != nil {
		return "", fmt.Errorf("the PKCS#7 signature: %w", err)
	}
	for _, name := range signers {
		for _, c := range certs[name] {
			for _, si := range p.SignerInfo {
				if !bytes.Equal(si.IssuerAndSerialnumber.RawIssuer, c.RawIssuer) || si.IssuerAndSerialnumber.SerialNumber.Cmp(c.SerialNumber) != 0 {
					continue
				}
				if si.AuthenticatedAttributes != nil {
					return "", errors.New("signed with authenticated attributes: UEFI 2.10 section 8.2.2 forbids them (make the files with keel secureboot enrolment or sign-efi-sig-list)")
				}
				if err := c.CheckSignature(x509.SHA256WithRSA, body, si.EncryptedDigest); err != nil {
					return "", fmt.Errorf("the signature by %s (%q) does not verify: the file was changed after signing: %w", name, c.Subject.CommonName, err)
				}
				return name, nil
			}
		}
	}
	return "", fmt.Errorf("not signed by the certificate of %v in this directory: the files come from different key sets", signers)
}

// ErrNotSetupMode says the firmware holds a platform key: it accepts new
// keys only signed by the enrolled ones.
var ErrNotSetupMode = errors.New("the firmware is not in setup mode")

// State is the firmware's Secure Boot state, as efivarfs shows it.
type State struct {
	SetupMode  bool // no PK enrolled: keys may be written unsigned by an enrolled key
	SecureBoot bool // this boot was verified (the firmware enforces db)
}

// ReadState reads SetupMode and SecureBoot from the efivarfs mount (or
// variable directory) dir. A variable that does not exist reads false
// (a firmware without Secure Boot support has neither).
func ReadState(dir string) (State, error) {
	var s State
	for _, v := range []struct {
		name string
		dst  *bool
	}{{uefi.SetupMode, &s.SetupMode}, {uefi.SecureBoot, &s.SecureBoot}} {
		b, err := os.ReadFile(filepath.Join(dir, uefi.VarFile(v.name, uefi.GlobalVariableGUID())))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, fmt.Errorf("secureboot: reading %s: %w", v.name, err)
		}
		if len(b) != 5 {
			return s, fmt.Errorf("secureboot: %s is %d bytes, want the 4-byte attributes and one byte", v.name, len(b))
		}
		*v.dst = b[4] == 1
	}
	return s, nil
}

// Enroll writes vars (ReadEnrolment's, in its order: db, KEK, then PK,
// whose write ends setup mode) into the firmware through the efivarfs
// mount dir. It refuses, writing nothing, unless the firmware is in
// setup mode. It returns the state after the writes: a firmware that took
// PK has left setup mode, and enforces Secure Boot from the next boot.
func Enroll(dir string, vars []Variable) (State, error) {
	st, err := ReadState(dir)
	if err != nil {
		return st, err
	}
	if !st.SetupMode {
		return st, fmt.Errorf("secureboot: %w: it holds a platform key (PK) and takes new keys only signed by it; "+
			"enter setup mode in the firmware's setup menu (on OVMF: Device Manager > Secure Boot Configuration > "+
			"Secure Boot Mode: Custom Mode > PK Options > Delete Pk; on other firmware \"Clear Secure Boot keys\" or "+
			"\"Reset to Setup Mode\"), then run enroll again", ErrNotSetupMode)
	}
	for i, v := range vars {
		if err := writeVar(dir, v); err != nil {
			done := "nothing was enrolled: the firmware is still in setup mode, run enroll again"
			if i > 0 {
				done = fmt.Sprintf("%s was written, PK was not: the firmware is still in setup mode and boots unverified; run enroll again with files made later (keel secureboot enrolment) to replace them", vars[i-1].Name)
			}
			return st, fmt.Errorf("secureboot: writing %s: %w (%s)", v.Name, err, done)
		}
	}
	return ReadState(dir)
}

// writeVar writes one authenticated variable through efivarfs: the
// attributes and the descriptor with the data in one write(2), as efivarfs
// requires (fs/efivarfs/file.c); an existing variable's immutable flag is
// cleared first.
func writeVar(dir string, v Variable) error {
	p := filepath.Join(dir, v.EfivarfsName())
	if err := uefi.ClearImmutable(p); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(v.EfivarfsData())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The firmware refused it (efivarfs reports its status as
		// EINVAL, EACCES or EPERM): efivarfs leaves an empty file
		// for a new variable that was never set.
		return fmt.Errorf("the firmware refused the write (a signature it does not accept, or a time stamp not later than the variable's): %w", err)
	}
	return nil
}

// enrolmentTime is the time stamp of new enrolment files: now, to the
// second (a re-enrolment must carry a later one than the last).
func enrolmentTime() time.Time { return time.Now().UTC().Truncate(time.Second) }

// MakeEnrolment makes the enrolment files of the keys in keyDir
// (GenerateKeys) in outDir, time-stamped now.
func MakeEnrolment(keyDir, outDir string) ([]Variable, error) {
	vars, err := Enrolment(keyDir, enrolmentTime())
	if err != nil {
		return nil, err
	}
	if err := WriteEnrolment(outDir, vars); err != nil {
		return nil, err
	}
	return vars, nil
}

// LockdownPath is where the kernel says its lockdown mode (securityfs).
const LockdownPath = "/sys/kernel/security/lockdown"

// ReadLockdown returns the kernel's lockdown mode from the securityfs file
// path ("none [integrity] confidentiality": the bracketed one): Debian's
// kernel enters integrity when the firmware booted it with Secure Boot on.
func ReadLockdown(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secureboot: kernel lockdown: %w", err)
	}
	for _, f := range bytes.Fields(b) {
		if len(f) > 2 && f[0] == '[' && f[len(f)-1] == ']' {
			return string(f[1 : len(f)-1]), nil
		}
	}
	return "", fmt.Errorf("secureboot: kernel lockdown: %s says %q, with no [mode]", path, bytes.TrimSpace(b))
}
