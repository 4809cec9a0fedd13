package secureboot

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/manifest"
)

// The key names, the names of the variables that hold them (package
// format/uefi): GenerateKeys writes NAME.key and NAME.crt for each.
const (
	PK  = uefi.PK  // platform key
	KEK = uefi.KEK // key exchange key
	DB  = uefi.DB  // image database key: signs keel's UKI
)

// KeyNames lists the keys GenerateKeys makes, in the order of the chain.
var KeyNames = []string{PK, KEK, DB}

// DefaultCommonNamePrefix starts the certificates' common names when
// GenerateKeys is given none: "keel PK", "keel KEK", "keel db".
const DefaultCommonNamePrefix = "keel"

// RSABits is the size of the keys GenerateKeys makes: RSA 2048, the key
// every UEFI firmware verifies (larger keys are optional in the
// specification and not supported everywhere).
const RSABits = 2048

// Validity is how long GenerateKeys' certificates are valid. Firmware does
// not check it (it has no trusted clock), but tools like sbverify do.
const Validity = 10 * 365 * 24 * time.Hour

// ErrKeyExists is wrapped when GenerateKeys finds a key or certificate
// file in its way.
var ErrKeyExists = errors.New("secure boot key file exists")

// KeyPath and CertPath return where GenerateKeys writes key name's private
// key and certificate.
func KeyPath(dir, name string) string  { return filepath.Join(dir, name+".key") }
func CertPath(dir, name string) string { return filepath.Join(dir, name+".crt") }

// GenerateKeys makes the PK, KEK and db key pairs in dir (created, mode
// 0700, if missing): NAME.key, the RSA 2048 private key (PKCS#8 PEM, mode
// 0600), and NAME.crt, a self-signed X.509 certificate (PEM, mode 0644)
// with the common name "<commonNamePrefix> NAME" ("" means
// DefaultCommonNamePrefix), valid for Validity. The files are created
// with O_EXCL: if any of the six exists, nothing is written and the error
// wraps ErrKeyExists and names it. On any other failure the files written
// so far are removed.
func GenerateKeys(dir, commonNamePrefix string) (err error) {
	prefix := strings.Join(strings.Fields(commonNamePrefix), " ")
	if prefix == "" {
		prefix = DefaultCommonNamePrefix
	}
	for _, name := range KeyNames {
		for _, p := range []string{KeyPath(dir, name), CertPath(dir, name)} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("secureboot: %s: %w: refusing to overwrite a Secure Boot key (remove the old keys, or pick another directory)", p, ErrKeyExists)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secureboot: %w", err)
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	now := time.Now().UTC().Truncate(time.Second)
	for _, name := range KeyNames {
		keyPEM, certPEM, err := newKeyPair(prefix+" "+name, now)
		if err != nil {
			return fmt.Errorf("secureboot: %s key: %w", name, err)
		}
		for _, f := range []struct {
			path string
			data []byte
			perm os.FileMode
		}{{KeyPath(dir, name), keyPEM, 0o600}, {CertPath(dir, name), certPEM, 0o644}} {
			if err := manifest.WriteNewFile(f.path, f.data, f.perm); err != nil {
				if errors.Is(err, os.ErrExist) {
					err = fmt.Errorf("%w: refusing to overwrite a Secure Boot key: %w", ErrKeyExists, err)
				}
				return fmt.Errorf("secureboot: %w", err)
			}
			written = append(written, f.path)
		}
	}
	return nil
}

// newKeyPair makes an RSA key and its self-signed certificate, both PEM.
func newKeyPair(cn string, now time.Time) (keyPEM, certPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, nil, err
	}
	// A positive serial number of at most 127 bits: 16 DER bytes.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	serial.Add(serial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            pkix.Name{CommonName: cn},
		NotBefore:          now.Add(-time.Hour), // some slack for clocks behind
		NotAfter:           now.Add(Validity),
		SignatureAlgorithm: x509.SHA256WithRSA,
		// What openssl req -x509 makes (the recipe of efitools and the
		// Arch wiki), which firmware and sbverify are known to take:
		// a self-signed CA certificate.
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// LoadKey reads key name (PK, KEK or db) from dir: its certificate
// dir/NAME.crt and its private key dir/NAME.key. The private key file must
// not be readable by group or others (manifest.ReadSecretFile: the error
// wraps manifest.ErrKeyExposed and says how to fix it), must be an RSA key
// (PKCS#8 or PKCS#1 PEM) of at least 2048 bits, and must match the
// certificate.
func LoadKey(dir, name string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := ReadCertificate(CertPath(dir, name))
	if err != nil {
		return nil, nil, err
	}
	kp := KeyPath(dir, name)
	b, err := manifest.ReadSecretFile(kp)
	if err != nil {
		return nil, nil, fmt.Errorf("secureboot: %s key: %w", name, err)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("secureboot: %s: %w", kp, err)
	}
	if err := checkPair(cert, key); err != nil {
		return nil, nil, fmt.Errorf("secureboot: %s and %s: %w", kp, CertPath(dir, name), err)
	}
	return cert, key, nil
}

// ReadCertificate reads a PEM (or DER) X.509 certificate file.
func ReadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secureboot: certificate: %w", err)
	}
	der := b
	if block, _ := pem.Decode(b); block != nil {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("secureboot: %s holds a PEM %q, want a CERTIFICATE", path, block.Type)
		}
		der = block.Bytes
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("secureboot: %s: not an X.509 certificate: %w", path, err)
	}
	return cert, nil
}

// parseKey parses an RSA private key in PEM: PKCS#8 ("PRIVATE KEY", what
// GenerateKeys writes) or PKCS#1 ("RSA PRIVATE KEY", older openssl).
func parseKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM %q: want a PRIVATE KEY (PKCS#8) or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T: Secure Boot keys are RSA (what every firmware verifies)", k)
	}
	return rk, nil
}

// checkPair checks that key is an RSA key of at least 2048 bits and the
// private half of cert's public key. Authenticode and the authenticated
// variables are RSA PKCS#1 v1.5 signatures (go-uefi's pkcs7 writes that
// algorithm), so other keys are refused here rather than written into a
// signature the firmware rejects.
func checkPair(cert *x509.Certificate, key crypto.Signer) error {
	rk, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("a %T key: Secure Boot keys are RSA", key.Public())
	}
	if rk.N.BitLen() < RSABits {
		return fmt.Errorf("an RSA key of %d bits: want at least %d", rk.N.BitLen(), RSABits)
	}
	if !rk.Equal(cert.PublicKey) {
		return fmt.Errorf("the private key does not belong to the certificate (%s)", cert.Subject)
	}
	return nil
}
