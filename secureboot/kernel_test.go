package secureboot

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/foxboron/go-uefi/efi/signature"
)

// sbsign signs img with the key pair name of dir using Debian's sbsign
// (which adds a signature to those already there).
func sbsign(t *testing.T, dir, name string, img []byte) []byte {
	t.Helper()
	tmp := t.TempDir()
	in, out := filepath.Join(tmp, "in.efi"), filepath.Join(tmp, "out.efi")
	os.WriteFile(in, img, 0o644)
	if msg, ok := run(t, "sbsigntool", "sbsign", "--key", KeyPath(dir, name), "--cert", CertPath(dir, name), "--output", out, in); !ok {
		t.Fatalf("sbsign:\n%s", msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSignKernel: a kernel signed by another key (as Debian ships its
// kernels) fails VerifyKexec, naming the signer; SignKernel replaces that
// signature by one with the db key, which VerifyKexec and sbverify accept,
// and leaves a kernel already signed so as it is.
func TestSignKernel(t *testing.T) {
	dir := keys(t)
	db, dbKey, _ := LoadKey(dir, DB)
	kek, _, _ := LoadKey(dir, KEK)
	trusted := []*x509.Certificate{db}
	vendor := sbsign(t, dir, KEK, stub(t)) // "signed by the distribution"
	err := VerifyKexec(vendor, trusted)
	if !errors.Is(err, ErrKexecUnsigned) || !strings.Contains(err.Error(), `"keel test KEK"`) {
		t.Fatalf("VerifyKexec(signed by KEK): %v", err)
	}
	signed, err := SignKernel(vendor, db, dbKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyKexec(signed, trusted); err != nil {
		t.Errorf("VerifyKexec(SignKernel's): %v", err)
	}
	if err := VerifyPE(signed, kek); !errors.Is(err, ErrBadSignature) {
		t.Errorf("the KEK signature is still there: %v", err)
	}
	if ok, msg := sbverify(t, CertPath(dir, DB), signed); !ok {
		t.Errorf("sbverify --cert db.crt:\n%s", msg)
	}
	again, err := SignKernel(signed, db, dbKey)
	if err != nil || !bytes.Equal(again, signed) {
		t.Errorf("SignKernel of a kernel the db key signed changed it (%v)", err)
	}
	// Unsigned: signed directly.
	if err := VerifyKexec(stub(t), trusted); !errors.Is(err, ErrKexecUnsigned) || !strings.Contains(err.Error(), "no signature") {
		t.Errorf("VerifyKexec(unsigned): %v", err)
	}
	if s, err := SignKernel(stub(t), db, dbKey); err != nil || VerifyKexec(s, trusted) != nil {
		t.Errorf("SignKernel(unsigned): %v", err)
	}
	// Only the first signature counts: db's after KEK's is refused.
	both := sbsign(t, dir, DB, vendor)
	if err := VerifyPE(both, db); err != nil {
		t.Fatalf("VerifyPE(KEK then db): %v", err)
	}
	if err := VerifyKexec(both, trusted); !errors.Is(err, ErrKexecUnsigned) {
		t.Errorf("VerifyKexec(KEK then db): %v, want refused: the kernel reads the first signature only", err)
	}
	// A changed byte.
	bad := bytes.Clone(signed)
	bad[4096] ^= 1
	if err := VerifyKexec(bad, trusted); !errors.Is(err, ErrKexecUnsigned) || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("VerifyKexec(changed): %v", err)
	}
}

// TestStripSignatures: the same bytes as sbattach --remove (which removes
// one signature a run) for one signature and for two; an unsigned image
// comes back as it was.
func TestStripSignatures(t *testing.T) {
	dir := keys(t)
	one := sbsign(t, dir, KEK, stub(t))
	two := sbsign(t, dir, DB, one)
	for n, img := range map[int][]byte{1: one, 2: two} {
		got, err := StripSignatures(img)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "img.efi")
		os.WriteFile(p, img, 0o644)
		for i := 0; i < n; i++ {
			if msg, ok := run(t, "sbsigntool", "sbattach", "--remove", p); !ok {
				t.Fatalf("sbattach --remove:\n%s", msg)
			}
		}
		want, _ := os.ReadFile(p)
		if !bytes.Equal(got, want) {
			t.Errorf("%d signature(s): StripSignatures gives %d bytes, sbattach --remove %d, not the same", n, len(got), len(want))
		}
		if d := securityDir(t, got); d.VirtualAddress != 0 || d.Size != 0 {
			t.Errorf("%d signature(s): security directory %+v after stripping", n, d)
		}
	}
	in := stub(t)
	if got, err := StripSignatures(in); err != nil || !bytes.Equal(got, in) {
		t.Errorf("StripSignatures(unsigned) changed it (%v)", err)
	}
}

// TestCertificates: the X.509 entries of a database that also holds a
// SHA-256 hash list (as firmware db often do); junk is an error.
func TestCertificates(t *testing.T) {
	dir := keys(t)
	db, _, _ := LoadKey(dir, DB)
	h := signature.NewSignatureList(signature.CERT_SHA256_GUID)
	h.AppendBytes(toEFIGUID(OwnerGUID), bytes.Repeat([]byte{7}, 32))
	data := append(h.Bytes(), SignatureList(db)...)
	cs, err := Certificates(data)
	if err != nil || len(cs) != 1 || !cs[0].Equal(db) {
		t.Fatalf("Certificates: %v, %v", cs, err)
	}
	if _, err := Certificates(data[:len(data)-3]); err == nil {
		t.Error("Certificates of a truncated database: no error")
	}
}
