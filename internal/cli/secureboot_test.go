package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/secureboot"
)

// efiStub is a real unsigned PE/COFF image (Debian's systemd-boot-efi, what
// keel's UKI is made of).
const efiStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// sbverifyCLI runs Debian's sbverify --cert cert path; a missing sbverify
// fails the test (scripts/install-deps.sh installs sbsigntool).
func sbverifyCLI(t *testing.T, cert, path string) (string, bool) {
	t.Helper()
	p, err := exec.LookPath("sbverify")
	if err != nil {
		t.Fatalf("sbverify not found: install the Debian package sbsigntool (scripts/install-deps.sh does): %v", err)
	}
	out, err := exec.Command(p, "--cert", cert, path).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// TestSecureBootKeygenSign: keygen writes the six files (private keys
// 0600) and refuses to run again; sign writes an image sbverify accepts
// with db.crt and refuses with PK.crt, and keeps the input as it was.
func TestSecureBootKeygenSign(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sb")
	r := keel(t, "secureboot", "keygen", "--dir", dir, "--name", "Acme Devices").ok(t)
	if !strings.Contains(r.stdout, secureboot.KeyPath(dir, secureboot.PK)) || !strings.Contains(r.stdout, "secret") {
		t.Errorf("keygen says %q", r.stdout)
	}
	for _, n := range secureboot.KeyNames {
		st, err := os.Stat(secureboot.KeyPath(dir, n))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s.key: %v, mode %v", n, err, st.Mode())
		}
		cert, _, err := secureboot.LoadKey(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != "Acme Devices "+n {
			t.Errorf("%s: common name %q", n, cert.Subject.CommonName)
		}
	}
	pk, _ := os.ReadFile(secureboot.KeyPath(dir, secureboot.PK))
	keel(t, "secureboot", "keygen", "--dir", dir).fails(t, ExitStorage, "refusing to overwrite")
	if again, _ := os.ReadFile(secureboot.KeyPath(dir, secureboot.PK)); !bytes.Equal(again, pk) {
		t.Error("a refused keygen changed PK.key")
	}

	in, err := os.ReadFile(efiStub)
	if err != nil {
		t.Fatalf("%v (install systemd-boot-efi: scripts/install-deps.sh does)", err)
	}
	src := filepath.Join(t.TempDir(), "in.efi")
	if err := os.WriteFile(src, in, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.efi")
	r = keel(t, "secureboot", "sign", "--dir", dir, src, "-o", out).ok(t)
	if !strings.Contains(r.stdout, `"Acme Devices db"`) || !strings.Contains(r.stdout, out) {
		t.Errorf("sign says %q", r.stdout)
	}
	if msg, ok := sbverifyCLI(t, secureboot.CertPath(dir, secureboot.DB), out); !ok || !strings.Contains(msg, "Signature verification OK") {
		t.Errorf("sbverify --cert db.crt:\n%s", msg)
	}
	if msg, ok := sbverifyCLI(t, secureboot.CertPath(dir, secureboot.PK), out); ok {
		t.Errorf("sbverify --cert PK.crt accepts the db-signed image:\n%s", msg)
	}
	if now, _ := os.ReadFile(src); !bytes.Equal(now, in) {
		t.Error("sign changed its input")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("output: %v, mode %v", err, st.Mode())
	}

	// Signed in place (-o IN) and with --out: the same checks pass.
	keel(t, "secureboot", "sign", src, "--out", src, "--dir", dir).ok(t)
	if msg, ok := sbverifyCLI(t, secureboot.CertPath(dir, secureboot.DB), src); !ok {
		t.Errorf("sbverify on the image signed in place:\n%s", msg)
	}
}

// TestSecureBootErrors: usage mistakes exit 1 and say what is missing;
// a group-readable db key, a file that is not a PE image and a missing
// input exit 2 and write nothing.
func TestSecureBootErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sb")
	out := filepath.Join(t.TempDir(), "out.efi")
	keel(t, "secureboot").fails(t, ExitUsage, "no subcommand")
	keel(t, "secureboot", "enrol").fails(t, ExitUsage, `unknown subcommand "enrol"`)
	keel(t, "secureboot", "keygen").fails(t, ExitUsage, "--dir DIR required")
	keel(t, "secureboot", "keygen", "--dir", dir, "extra").fails(t, ExitUsage, "takes no arguments")
	keel(t, "secureboot", "sign", "--dir", dir, "-o", out).fails(t, ExitUsage, "takes one IN.efi")
	keel(t, "secureboot", "sign", "--dir", dir, efiStub).fails(t, ExitUsage, "-o OUT.efi required")
	keel(t, "secureboot", "sign", efiStub, "-o", out).fails(t, ExitUsage, "--dir DIR required")
	if r := keel(t, "secureboot", "help").ok(t); !strings.Contains(r.stdout, "keel secureboot sign --dir DIR IN.efi -o OUT.efi") {
		t.Errorf("secureboot help: %q", r.stdout)
	}
	if r := keel(t, "help").ok(t); !strings.Contains(r.stdout, "secureboot keygen|sign") {
		t.Errorf("keel help does not list secureboot:\n%s", r.stdout)
	}

	keel(t, "secureboot", "sign", "--dir", dir, efiStub, "-o", out).fails(t, ExitStorage, "no such file")
	keel(t, "secureboot", "keygen", "--dir", dir).ok(t)
	text := filepath.Join(t.TempDir(), "text.efi")
	os.WriteFile(text, []byte("this is not a PE image, but long enough to be read as one"), 0o644)
	keel(t, "secureboot", "sign", "--dir", dir, text, "-o", out).fails(t, ExitStorage, "not a PE image")
	keel(t, "secureboot", "sign", "--dir", dir, filepath.Join(t.TempDir(), "none.efi"), "-o", out).fails(t, ExitStorage, "no such file")
	os.Chmod(secureboot.KeyPath(dir, secureboot.DB), 0o640)
	keel(t, "secureboot", "sign", "--dir", dir, efiStub, "-o", out).fails(t, ExitStorage, "chmod 600")
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed sign wrote its output")
	}
}

// TestSecureBootEnrol: enrolment writes the three files from the keys;
// enroll checks them and writes them into a firmware in setup mode (a
// directory standing for efivarfs), refuses outside setup mode, and says
// the firmware did not leave setup mode when it did not (this directory's
// SetupMode does not change); status reads the state.
func TestSecureBootEnrol(t *testing.T) {
	tmp := t.TempDir()
	keys := filepath.Join(tmp, "sb")
	keel(t, "secureboot", "keygen", "--dir", keys).ok(t)
	out := filepath.Join(tmp, "enrol")
	r := keel(t, "secureboot", "enrolment", "--dir", keys, "--out", out).ok(t)
	if !strings.Contains(r.stdout, "db.auth: db, signed by KEK") || !strings.Contains(r.stdout, "keel secureboot enroll "+out) {
		t.Errorf("enrolment says %q", r.stdout)
	}
	keel(t, "secureboot", "enrolment", "--dir", keys, "--out", out).fails(t, ExitStorage, "never overwritten")

	efi := func(setup byte) string {
		d := t.TempDir()
		for name, v := range map[string]byte{"SetupMode": setup, "SecureBoot": 0} {
			os.WriteFile(filepath.Join(d, name+"-8be4df61-93ca-11d2-aa0d-00e098032b8c"), []byte{6, 0, 0, 0, v}, 0o644)
		}
		return d
	}
	off := efi(0)
	keel(t, "secureboot", "enroll", "--efivars", off, out).fails(t, ExitStorage, "not in setup mode")
	if _, err := os.Stat(filepath.Join(off, "PK-8be4df61-93ca-11d2-aa0d-00e098032b8c")); err == nil {
		t.Error("a refused enroll wrote PK")
	}
	setup := efi(1)
	r = keel(t, "secureboot", "enroll", "--efivars", setup, out)
	r.fails(t, ExitStorage, "still in setup mode")
	if !strings.Contains(r.stdout, "enrolled PK (signed by PK)") {
		t.Errorf("enroll says %q", r.stdout)
	}
	pk, _ := os.ReadFile(filepath.Join(out, "PK.auth"))
	if got, _ := os.ReadFile(filepath.Join(setup, "PK-8be4df61-93ca-11d2-aa0d-00e098032b8c")); !bytes.Equal(got, append([]byte{0x27, 0, 0, 0}, pk...)) {
		t.Errorf("efivarfs PK: %d bytes, want the attributes and PK.auth", len(got))
	}
	r = keel(t, "secureboot", "status", "--efivars", setup, "--json").ok(t)
	if strings.TrimSpace(r.stdout) != `{"setup_mode":true,"secure_boot":false}` {
		t.Errorf("status --json: %q", r.stdout)
	}
	os.WriteFile(filepath.Join(out, "db.auth"), []byte("junk"), 0o644)
	keel(t, "secureboot", "enroll", "--efivars", efi(1), out).fails(t, ExitStorage, "db.auth")
}

// TestSecureBootOVMFVars: ovmf-vars writes Debian's OVMF variable store
// template with the enrolment's PK, KEK and db (the same bytes for the
// same files), refuses to enrol it again unless --replace, takes a key
// directory instead of enrolment files, and refuses usage mistakes and a
// file that is not a variable store, writing nothing.
func TestSecureBootOVMFVars(t *testing.T) {
	const tmpl = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	tmp := t.TempDir()
	keys := filepath.Join(tmp, "sb")
	keel(t, "secureboot", "keygen", "--dir", keys).ok(t)
	enrol := filepath.Join(tmp, "enrol")
	keel(t, "secureboot", "enrolment", "--dir", keys, "--out", enrol).ok(t)

	out := filepath.Join(tmp, "vars.fd")
	r := keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--in", tmpl, "-o", out).ok(t)
	if !strings.Contains(r.stdout, "wrote "+out) || !strings.Contains(r.stdout, "first boot") {
		t.Errorf("ovmf-vars says %q", r.stdout)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := secureboot.OVMFVars(tmpl, enrol, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the written store differs from secureboot.OVMFVars's")
	}
	s, err := secureboot.ParseVarStore(got)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := os.ReadFile(filepath.Join(enrol, "PK.auth"))
	if v, ok := s.Lookup("PK", uefi.GlobalVariableGUID()); !ok || !bytes.HasSuffix(pk, v.Data) {
		t.Errorf("PK in the store: %v", ok)
	}

	keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--in", out, "-o", out).fails(t, ExitStorage, "already holds a platform key")
	if again, _ := os.ReadFile(out); !bytes.Equal(again, got) {
		t.Error("a refused ovmf-vars changed its output")
	}
	keel(t, "secureboot", "ovmf-vars", "--dir", keys, "--in", out, "--out", out, "--replace").ok(t)
	s, err = secureboot.ParseVarStore(readVarsFile(t, out))
	if err != nil || len(s.Variables) != 12 {
		t.Errorf("after --replace: %v, %d variables, want 12", err, len(s.Variables))
	}

	none := filepath.Join(tmp, "none.fd")
	keel(t, "secureboot", "ovmf-vars", "--in", tmpl, "-o", none).fails(t, ExitUsage, "one of --enrolment DIR")
	keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--dir", keys, "--in", tmpl, "-o", none).fails(t, ExitUsage, "one of --enrolment DIR")
	keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "-o", none).fails(t, ExitUsage, "--in VARS.fd")
	keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--in", tmpl).fails(t, ExitUsage, "-o OUT.fd")
	keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--in", tmpl, "-o", none, "x").fails(t, ExitUsage, "takes no arguments")
	keel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--in", efiStub, "-o", none).fails(t, ExitStorage, "not an edk2 variable store")
	keel(t, "secureboot", "ovmf-vars", "--enrolment", tmp, "--in", tmpl, "-o", none).fails(t, ExitStorage, "db.auth is missing")
	if _, err := os.Stat(none); err == nil {
		t.Error("a refused ovmf-vars wrote its output")
	}
	if r := keel(t, "secureboot", "help").ok(t); !strings.Contains(r.stdout, "keel secureboot ovmf-vars (--enrolment OUT | --dir DIR) --in VARS.fd -o OUT.fd") {
		t.Errorf("secureboot help: %q", r.stdout)
	}
}

func readVarsFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
