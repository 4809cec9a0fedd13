package secureboot

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stubPath is a real, unsigned PE/COFF image: the UKI stub of Debian's
// systemd-boot-efi (what keel's UKI is made of).
const stubPath = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

func stub(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(stubPath)
	if err != nil {
		t.Fatalf("%v (install the Debian package systemd-boot-efi: scripts/install-deps.sh does)", err)
	}
	return b
}

// sbverify runs Debian's sbverify --cert cert img and returns whether it
// accepts the image.
func sbverify(t testing.TB, cert string, img []byte) (bool, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.efi")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, ok := run(t, "sbsigntool", "sbverify", "--cert", cert, p)
	return ok, out
}

func securityDir(t testing.TB, img []byte) pe.DataDirectory {
	t.Helper()
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	return f.OptionalHeader.(*pe.OptionalHeader64).DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
}

// TestSignPE signs the stub with the db key: sbverify accepts it with
// db.crt and refuses it with PK.crt, as does VerifyPE; the image is the
// input up to its end, 8-byte padded, with one certificate table after it
// and a correct PE checksum; the PE headers still parse, with the same
// sections. A changed byte fails both verifiers.
func TestSignPE(t *testing.T) {
	dir := keys(t)
	in := stub(t)
	cert, key, err := LoadKey(dir, DB)
	if err != nil {
		t.Fatal(err)
	}
	pkCert, _, _ := LoadKey(dir, PK)
	out, err := SignPE(in, cert, key)
	if err != nil {
		t.Fatal(err)
	}

	if ok, msg := sbverify(t, CertPath(dir, DB), out); !ok || !strings.Contains(msg, "Signature verification OK") {
		t.Errorf("sbverify --cert db.crt refuses the signed stub:\n%s", msg)
	}
	if ok, msg := sbverify(t, CertPath(dir, PK), out); ok {
		t.Errorf("sbverify --cert PK.crt accepts the db-signed stub:\n%s", msg)
	}
	if err := VerifyPE(out, cert); err != nil {
		t.Errorf("VerifyPE(db): %v", err)
	}
	if err := VerifyPE(out, pkCert); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "keel test db") {
		t.Errorf("VerifyPE(PK) = %v, want ErrBadSignature naming the db certificate", err)
	}
	if err := VerifyPE(in, cert); !errors.Is(err, ErrUnsigned) {
		t.Errorf("VerifyPE(unsigned stub) = %v, want ErrUnsigned", err)
	}

	// Layout: the input, zero padding to 8 bytes, the certificate table.
	dd := securityDir(t, out)
	pad := (8 - len(in)%8) % 8
	if int(dd.VirtualAddress) != len(in)+pad || int(dd.VirtualAddress+dd.Size) != len(out) || dd.Size%8 != 0 {
		t.Errorf("certificate table at %d, %d bytes, in a %d-byte image from %d bytes", dd.VirtualAddress, dd.Size, len(out), len(in))
	}
	if wc := binary.LittleEndian.Uint32(out[dd.VirtualAddress:]); wc > dd.Size || wc+7 < dd.Size ||
		binary.LittleEndian.Uint16(out[dd.VirtualAddress+4:]) != 0x0200 || binary.LittleEndian.Uint16(out[dd.VirtualAddress+6:]) != 0x0002 {
		t.Errorf("WIN_CERTIFICATE header % x", out[dd.VirtualAddress:dd.VirtualAddress+8])
	}
	off, err := checksumOffset(out)
	if err != nil {
		t.Fatal(err)
	}
	ddOff := securityEntryOffset(off)
	for i := range in {
		if (i >= off && i < off+4) || (i >= ddOff && i < ddOff+8) {
			continue
		}
		if in[i] != out[i] {
			t.Fatalf("byte %d changed outside the checksum and the certificate table entry", i)
		}
	}
	if !allZeroBytes(out[len(in) : len(in)+pad]) {
		t.Error("the padding before the certificate table is not zero")
	}
	if got, want := binary.LittleEndian.Uint32(out[off:]), peChecksum(out, off); got != want {
		t.Errorf("PE checksum %#x, want %#x", got, want)
	}
	fi, _ := pe.NewFile(bytes.NewReader(in))
	fo, err := pe.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(fi.Sections) != len(fo.Sections) {
		t.Errorf("%d sections, want %d", len(fo.Sections), len(fi.Sections))
	}

	// A byte of .text changed after signing.
	bad := bytes.Clone(out)
	bad[fo.Section(".text").Offset+100] ^= 1
	if err := VerifyPE(bad, cert); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "changed after signing") {
		t.Errorf("VerifyPE(changed image) = %v", err)
	}
	if ok, msg := sbverify(t, CertPath(dir, DB), bad); ok {
		t.Errorf("sbverify accepts a changed image:\n%s", msg)
	}
}

// TestSignPETwice: a second signature (by KEK) is added to the first; each
// verifies with its certificate, in VerifyPE and in sbverify.
func TestSignPETwice(t *testing.T) {
	dir := keys(t)
	db, dbKey, _ := LoadKey(dir, DB)
	kek, kekKey, _ := LoadKey(dir, KEK)
	pk, _, _ := LoadKey(dir, PK)
	one, err := SignPE(stub(t), db, dbKey)
	if err != nil {
		t.Fatal(err)
	}
	two, err := SignPE(one, kek, kekKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPE(two, db); err != nil {
		t.Errorf("VerifyPE(db): %v", err)
	}
	if err := VerifyPE(two, kek); err != nil {
		t.Errorf("VerifyPE(KEK): %v", err)
	}
	if err := VerifyPE(two, pk); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "2 signature(s)") {
		t.Errorf("VerifyPE(PK): %v", err)
	}
	for _, n := range []string{DB, KEK} {
		if ok, msg := sbverify(t, CertPath(dir, n), two); !ok {
			t.Errorf("sbverify --cert %s.crt:\n%s", n, msg)
		}
	}
}

// TestVerifySbsign: VerifyPE accepts what Debian's sbsign writes with the
// db key, and refuses it for PK; sbsign's checksum is what peChecksum
// computes.
func TestVerifySbsign(t *testing.T) {
	dir := keys(t)
	out := filepath.Join(t.TempDir(), "signed.efi")
	if msg, ok := run(t, "sbsigntool", "sbsign", "--key", KeyPath(dir, DB), "--cert", CertPath(dir, DB), "--output", out, stubPath); !ok {
		t.Fatalf("sbsign:\n%s", msg)
	}
	img, _ := os.ReadFile(out)
	db, _, _ := LoadKey(dir, DB)
	pk, _, _ := LoadKey(dir, PK)
	if err := VerifyPE(img, db); err != nil {
		t.Errorf("VerifyPE(sbsign's image, db): %v", err)
	}
	if err := VerifyPE(img, pk); !errors.Is(err, ErrBadSignature) {
		t.Errorf("VerifyPE(sbsign's image, PK): %v", err)
	}
	off, _ := checksumOffset(img)
	if got, want := peChecksum(img, off), binary.LittleEndian.Uint32(img[off:]); got != want {
		t.Errorf("peChecksum = %#x, sbsign wrote %#x", got, want)
	}
	in := stub(t)
	off, _ = checksumOffset(in)
	if got, want := peChecksum(in, off), binary.LittleEndian.Uint32(in[off:]); want == 0 || got != want {
		t.Errorf("peChecksum(stub) = %#x, the linker wrote %#x", got, want)
	}
}

// TestSignPEBadInput: what is not a PE image, or has a broken certificate
// table, is an error (not a panic in the parser); so is a key that is not
// the certificate's.
func TestSignPEBadInput(t *testing.T) {
	dir := keys(t)
	db, dbKey, _ := LoadKey(dir, DB)
	_, kekKey, _ := LoadKey(dir, KEK)
	if _, err := SignPE([]byte("not a PE image at all, just some text long enough"), db, dbKey); err == nil || !strings.Contains(err.Error(), "not a PE image") {
		t.Errorf("text: %v", err)
	}
	if _, err := SignPE(stub(t), db, kekKey); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("KEK's key with db's certificate: %v", err)
	}
	signed, err := SignPE(stub(t), db, dbKey)
	if err != nil {
		t.Fatal(err)
	}
	dd := securityDir(t, signed)
	for name, mangle := range map[string]func(b []byte){
		"table past the end": func(b []byte) {
			off, _ := checksumOffset(b)
			binary.LittleEndian.PutUint32(b[securityEntryOffset(off)+4:], dd.Size+8)
		},
		"WIN_CERTIFICATE too long":  func(b []byte) { binary.LittleEndian.PutUint32(b[dd.VirtualAddress:], dd.Size+100) },
		"WIN_CERTIFICATE too short": func(b []byte) { binary.LittleEndian.PutUint32(b[dd.VirtualAddress:], 3) },
	} {
		b := bytes.Clone(signed)
		mangle(b)
		if _, err := SignPE(b, db, dbKey); err == nil {
			t.Errorf("%s: SignPE succeeds", name)
		}
		if err := VerifyPE(b, db); err == nil || !strings.Contains(err.Error(), "certificate table") && !strings.Contains(err.Error(), "WIN_CERTIFICATE") {
			t.Errorf("%s: VerifyPE = %v", name, err)
		}
	}
}

// securityEntryOffset returns the file offset of the certificate table
// entry (DataDirectory[4]) of a PE32+ image whose CheckSum is at off: the
// optional header starts 64 bytes before, its data directories at 112.
func securityEntryOffset(off int) int { return off - 64 + 112 + 4*8 }

func allZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
