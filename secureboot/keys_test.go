package secureboot

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/manifest"
)

// These tests check keel's output with the peer tools (openssl, Debian's
// sbsigntool and efitools) and fail, not skip, when one is missing:
// scripts/install-deps.sh installs them.

// tool returns the path of an external tool or fails the test.
func tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (scripts/install-deps.sh does): %v", name, pkg, err)
	}
	return p
}

// run runs a tool (in UTC, C locale) and returns its combined output and
// whether it exited 0.
func run(t testing.TB, pkg, name string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(tool(t, name, pkg), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), err == nil
}

// keys makes a key directory for a test.
func keys(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sb")
	if err := GenerateKeys(dir, "keel test"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGenerateKeys: six files with the modes asked; each certificate is a
// self-signed RSA 2048 X.509 certificate with the common name
// "<prefix> NAME", valid for ten years, that openssl parses and verifies;
// LoadKey gives back the matching pair.
func TestGenerateKeys(t *testing.T) {
	before := time.Now()
	dir := keys(t)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("key directory: %v, mode %v; want 0700", err, st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 6 {
		t.Errorf("%d files in the key directory, want 6", len(ents))
	}
	for _, name := range KeyNames {
		for p, mode := range map[string]os.FileMode{KeyPath(dir, name): 0o600, CertPath(dir, name): 0o644} {
			st, err := os.Stat(p)
			if err != nil || st.Mode().Perm() != mode {
				t.Errorf("%s: %v, mode %v; want %v", p, err, st.Mode().Perm(), mode)
			}
		}
		cert, key, err := LoadKey(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		if cn := cert.Subject.CommonName; cn != "keel test "+name {
			t.Errorf("%s: common name %q", name, cn)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Errorf("%s: not self-signed: %v", name, err)
		}
		pub, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() != 2048 || !pub.Equal(key.Public()) {
			t.Errorf("%s: public key %T of %d bits, matches the private key: %v", name, cert.PublicKey, pub.N.BitLen(), pub.Equal(key.Public()))
		}
		if d := cert.NotAfter.Sub(before); d < Validity-2*time.Hour || d > Validity+time.Hour || cert.NotBefore.After(before) {
			t.Errorf("%s: valid %v to %v", name, cert.NotBefore, cert.NotAfter)
		}
		if cert.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("%s: signature algorithm %v", name, cert.SignatureAlgorithm)
		}
		out, ok := run(t, "openssl", "openssl", "verify", "-CAfile", CertPath(dir, name), CertPath(dir, name))
		if !ok {
			t.Errorf("openssl verify %s:\n%s", name, out)
		}
		out, ok = run(t, "openssl", "openssl", "rsa", "-check", "-noout", "-in", KeyPath(dir, name))
		if !ok || !strings.Contains(out, "RSA key ok") {
			t.Errorf("openssl rsa -check %s:\n%s", name, out)
		}
	}
	// The default prefix.
	d2 := filepath.Join(t.TempDir(), "sb")
	if err := GenerateKeys(d2, "  "); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := LoadKey(d2, KEK); c == nil || c.Subject.CommonName != "keel KEK" {
		t.Errorf("default common name: %v", c)
	}
}

// TestGenerateKeysNeverOverwrites: with the keys there, or any one file of
// them, GenerateKeys fails, names the file, and writes nothing.
func TestGenerateKeysNeverOverwrites(t *testing.T) {
	dir := keys(t)
	old, _ := os.ReadFile(KeyPath(dir, PK))
	err := GenerateKeys(dir, "other")
	if !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), "refusing to overwrite") ||
		!strings.Contains(err.Error(), KeyPath(dir, PK)) {
		t.Errorf("second GenerateKeys: %v", err)
	}
	if now, _ := os.ReadFile(KeyPath(dir, PK)); !bytes.Equal(now, old) {
		t.Error("PK.key changed")
	}
	// Only db.crt in the way: nothing else is written.
	for _, name := range KeyNames {
		os.Remove(KeyPath(dir, name))
		if name != DB {
			os.Remove(CertPath(dir, name))
		}
	}
	err = GenerateKeys(dir, "other")
	if !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), CertPath(dir, DB)) {
		t.Errorf("GenerateKeys over db.crt: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("GenerateKeys over db.crt left %d files, want db.crt only", len(ents))
	}
	// A symlink in the way counts too (O_EXCL would not follow it).
	os.Remove(CertPath(dir, DB))
	if err := os.Symlink("/nonexistent", KeyPath(dir, KEK)); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeys(dir, ""); !errors.Is(err, ErrKeyExists) {
		t.Errorf("GenerateKeys over a dangling symlink: %v", err)
	}
}

// TestLoadKeyRefuses: a private key others may read, a key that is not
// the certificate's, a non-RSA key, a missing file; an RSA key in PKCS#1
// form is taken.
func TestLoadKeyRefuses(t *testing.T) {
	dir := keys(t)
	if err := os.Chmod(KeyPath(dir, DB), 0o640); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadKey(dir, DB)
	if !errors.Is(err, manifest.ErrKeyExposed) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v", err)
	}
	os.Chmod(KeyPath(dir, DB), 0o600)

	kek, _ := os.ReadFile(KeyPath(dir, KEK))
	replace := func(b []byte) {
		t.Helper()
		os.Remove(KeyPath(dir, DB))
		if err := os.WriteFile(KeyPath(dir, DB), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	replace(kek)
	if _, _, err := LoadKey(dir, DB); err == nil || !strings.Contains(err.Error(), "does not belong to the certificate") {
		t.Errorf("KEK's key as db's: %v", err)
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	replace(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	if _, _, err := LoadKey(dir, DB); err == nil || !strings.Contains(err.Error(), "RSA") {
		t.Errorf("an ECDSA key: %v", err)
	}

	// KEK's key in PKCS#1 form loads as KEK.
	rk, err := parseKey(kek)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(KeyPath(dir, KEK))
	os.WriteFile(KeyPath(dir, KEK), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600)
	if _, _, err := LoadKey(dir, KEK); err != nil {
		t.Errorf("PKCS#1 key: %v", err)
	}

	if _, _, err := LoadKey(dir, "nonexistent"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
	os.Remove(CertPath(dir, PK))
	if _, _, err := LoadKey(dir, PK); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing certificate: %v", err)
	}
}
