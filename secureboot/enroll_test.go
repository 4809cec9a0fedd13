package secureboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/uefi"
)

// fakeEfivars is a directory standing for efivarfs, with SetupMode and
// SecureBoot as a firmware shows them (attributes NV|BS|RT... here BS|RT,
// then one byte).
func fakeEfivars(t *testing.T, setupMode bool) string {
	t.Helper()
	dir := t.TempDir()
	for name, on := range map[string]bool{uefi.SetupMode: setupMode, uefi.SecureBoot: false} {
		b := binary.LittleEndian.AppendUint32(nil, 6)
		if on {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+uefi.GlobalVariableGUID().String()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// enrolmentDir makes the enrolment files of a fresh key set.
func enrolmentDir(t *testing.T) (keyDir, out string) {
	t.Helper()
	keyDir = keys(t)
	out = filepath.Join(t.TempDir(), "enrol")
	if _, err := MakeEnrolment(keyDir, out); err != nil {
		t.Fatal(err)
	}
	return keyDir, out
}

// TestEnroll: the files MakeEnrolment writes are read back and checked,
// in the order db, KEK, PK with their signers, and Enroll writes each as
// its efivarfs file: the attributes, then the file's bytes.
func TestEnroll(t *testing.T) {
	_, dir := enrolmentDir(t)
	vars, err := ReadEnrolment(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, signer, guid string }{
		{DB, KEK, uefi.ImageSecurityDatabaseGUID().String()}, {KEK, PK, uefi.GlobalVariableGUID().String()}, {PK, PK, uefi.GlobalVariableGUID().String()},
	}
	if len(vars) != len(want) {
		t.Fatalf("%d variables, want %d", len(vars), len(want))
	}
	efi := fakeEfivars(t, true)
	if _, err := Enroll(efi, vars); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		v := vars[i]
		if v.Name != w.name || v.Signer != w.signer || v.GUID.String() != w.guid || v.Attributes != 0x27 {
			t.Errorf("variable %d: %s signed by %s in %s, attributes %#x; want %s by %s in %s, 0x27", i, v.Name, v.Signer, v.GUID, v.Attributes, w.name, w.signer, w.guid)
		}
		file, _ := os.ReadFile(filepath.Join(dir, AuthFile(w.name)))
		got, err := os.ReadFile(filepath.Join(efi, w.name+"-"+w.guid))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append([]byte{0x27, 0, 0, 0}, file...)) {
			t.Errorf("%s: efivarfs got %d bytes, want the attributes and the %d of %s", w.name, len(got), len(file), AuthFile(w.name))
		}
	}
}

// TestEnrollRefusesOutsideSetupMode: a firmware with a PK gets nothing
// written, and the error says how to enter setup mode.
func TestEnrollRefusesOutsideSetupMode(t *testing.T) {
	_, dir := enrolmentDir(t)
	vars, err := ReadEnrolment(dir)
	if err != nil {
		t.Fatal(err)
	}
	efi := fakeEfivars(t, false)
	_, err = Enroll(efi, vars)
	if !errors.Is(err, ErrNotSetupMode) || !strings.Contains(err.Error(), "setup mode") || !strings.Contains(err.Error(), "Delete Pk") {
		t.Fatalf("Enroll outside setup mode: %v", err)
	}
	ents, _ := os.ReadDir(efi)
	if len(ents) != 2 {
		t.Errorf("efivarfs holds %d variables after a refused enrolment, want the 2 state variables", len(ents))
	}
}

// TestReadEnrolmentRefuses: every damage to the files is found before
// anything is written, naming the file.
func TestReadEnrolmentRefuses(t *testing.T) {
	_, good := enrolmentDir(t)
	_, other := enrolmentDir(t)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"missing PK", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "PK.auth")) }, "PK.auth is missing"},
		{"changed certificate in db", func(t *testing.T, dir string) { flip(t, filepath.Join(dir, "db.auth"), -40) }, "db.auth"},
		{"changed signature in KEK", func(t *testing.T, dir string) {
			// The RSA signature ends the SignedData, which ends the
			// WIN_CERTIFICATE (after the 16-byte EFI_TIME).
			b, _ := os.ReadFile(filepath.Join(dir, "KEK.auth"))
			flip(t, filepath.Join(dir, "KEK.auth"), 16+int(binary.LittleEndian.Uint32(b[16:20]))-10)
		}, "does not verify"},
		{"truncated PK", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "PK.auth"), 30) }, "PK.auth"},
		{"truncated db list", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "db.auth"), -10) }, "db.auth"},
		{"KEK of another key set", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(other, "KEK.auth"), filepath.Join(dir, "KEK.auth"))
		}, "different key sets"},
		{"db of another key set", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(other, "db.auth"), filepath.Join(dir, "db.auth"))
		}, "different key sets"},
		{"not an auth file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "db.auth"), bytes.Repeat([]byte{0xff}, 64), 0o644)
		}, "not an authenticated variable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"db.auth", "KEK.auth", "PK.auth"} {
				copyFile(t, filepath.Join(good, f), filepath.Join(dir, f))
			}
			c.damage(t, dir)
			_, err := ReadEnrolment(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadEnrolment: %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// TestWriteEnrolmentNeverOverwrites: existing files stay as they were.
func TestWriteEnrolmentNeverOverwrites(t *testing.T) {
	keyDir, dir := enrolmentDir(t)
	before, _ := os.ReadFile(filepath.Join(dir, "db.auth"))
	if _, err := MakeEnrolment(keyDir, dir); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("MakeEnrolment over existing files: %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "db.auth")); !bytes.Equal(before, after) {
		t.Error("db.auth changed")
	}
}

// TestEnrolmentFilesMatchEfitools: efitools' sign-efi-sig-list output for
// the same keys is accepted by ReadEnrolment (a factory may make them
// either way).
func TestEnrolmentFilesMatchEfitools(t *testing.T) {
	keyDir := keys(t)
	dir := t.TempDir()
	for _, w := range []struct{ name, signer string }{{DB, KEK}, {KEK, PK}, {PK, PK}} {
		esl := filepath.Join(dir, w.name+".esl")
		cert, err := ReadCertificate(CertPath(keyDir, w.name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(esl, SignatureList(cert), 0o644)
		if msg, ok := run(t, "efitools", "sign-efi-sig-list", "-c", CertPath(keyDir, w.signer), "-k", KeyPath(keyDir, w.signer), w.name, esl, filepath.Join(dir, AuthFile(w.name))); !ok {
			t.Fatalf("sign-efi-sig-list:\n%s", msg)
		}
	}
	vars, err := ReadEnrolment(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 3 || vars[0].Signer != KEK || vars[2].Name != PK {
		t.Errorf("ReadEnrolment of efitools' files: %+v", vars)
	}
}

func flip(t *testing.T, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += len(b)
	}
	b[at] ^= 0x01
	os.WriteFile(path, b, 0o644)
}

func truncate(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n < 0 {
		n += len(b)
	}
	os.WriteFile(path, b[:n], 0o644)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadLockdown: the bracketed mode of securityfs' lockdown file.
func TestReadLockdown(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality\n": "none",
		"none integrity confidentiality\n":   "",
	} {
		p := filepath.Join(dir, "lockdown")
		os.WriteFile(p, []byte(content), 0o644)
		got, err := ReadLockdown(p)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("ReadLockdown(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
	if _, err := ReadLockdown(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadLockdown(missing) = %v", err)
	}
}
