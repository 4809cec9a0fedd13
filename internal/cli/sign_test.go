package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/manifest"
)

// signTestManifest writes a valid manifest to dir/manifest.json.
func signTestManifest(t *testing.T, dir string) string {
	t.Helper()
	d := manifest.Digest{SHA256: strings.Repeat("0", 64), Size: 1}
	m := manifest.Manifest{Compatible: "qemu-x86_64-uefi", Role: manifest.RoleSlot, Version: "2.0", SecurityVersion: 3, Cmdline: "console=ttyS0", Kernel: d, Initrd: d, Root: manifest.Root{FSType: "erofs"}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	oldName, newName, otherName := filepath.Join(dir, "old"), filepath.Join(dir, "new"), filepath.Join(dir, "other")
	r := keel(t, "keygen", "--out", oldName).ok(t)
	if !strings.Contains(r.stdout, "wrote "+oldName+".key") || !strings.Contains(r.stdout, "key ID ") {
		t.Errorf("keygen said %q", r.stdout)
	}
	keel(t, "keygen", "--out", newName, "--comment", "release 2027").ok(t)
	keel(t, "keygen", "--out", otherName).ok(t)
	st, err := os.Stat(oldName + ".key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key file: %v, mode %v; want 0600", err, st.Mode())
	}
	priv, err := manifest.ReadPrivateKey(newName + ".key")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := manifest.ReadPublicKeys(newName + ".pub")
	if err != nil || len(pubs) != 1 || pubs[0].ID() != priv.ID() || pubs[0].Comment != "release 2027" {
		t.Fatalf("new.pub: %v, %v", pubs, err)
	}
	oldPub, _ := os.ReadFile(oldName + ".pub")
	newPub, _ := os.ReadFile(newName + ".pub")
	trusted := filepath.Join(dir, "trusted-keys")
	os.WriteFile(trusted, []byte("# keel trusted keys\n"+string(oldPub)+"\n# from 2027\n"+string(newPub)), 0o644)

	// Signed by the second trusted key only: accepted (rotation).
	mpath := signTestManifest(t, dir)
	r = keel(t, "sign", "--key", newName+".key", mpath).ok(t)
	if !strings.Contains(r.stdout, "wrote "+mpath+".sig: 1 signature(s), by "+priv.ID()) {
		t.Errorf("sign said %q", r.stdout)
	}
	r = keel(t, "verify", "--keys", trusted, mpath).ok(t)
	if !strings.Contains(r.stdout, "good signature by "+priv.ID()+" (release 2027): a slot's manifest for board qemu-x86_64-uefi, version \"2.0\", security version 3") {
		t.Errorf("verify said %q", r.stdout)
	}
	// --board and --role check what the manifest is for (issue 9 item 14).
	keel(t, "verify", "--keys", trusted, "--board", "qemu-x86_64-uefi", "--role", "slot", mpath).ok(t)
	keel(t, "verify", "--keys", trusted, "--board", "qemu-arm64-uboot", mpath).fails(t, ExitStorage, "manifest is for board qemu-x86_64-uefi, this is qemu-arm64-uboot")
	keel(t, "verify", "--keys", trusted, "--role", "seed", mpath).fails(t, ExitStorage, "manifest is a slot's, not a seed's")
	keel(t, "verify", "--keys", trusted, "--role", "bundle", mpath).fails(t, ExitUsage, "want slot or seed")
	// The old key adds its signature (flags after the argument, --out given).
	keel(t, "sign", mpath, "--key", oldName+".key", "--out", mpath+".sig").ok(t)
	env, err := manifest.ParseEnvelope(signTestRead(os.ReadFile(mpath + ".sig")))
	if err != nil || len(env.Signatures) != 2 {
		t.Fatalf("after the second sign: %v, %v", env, err)
	}
	keel(t, "verify", "--keys", oldName+".pub", mpath, mpath+".sig").ok(t)
	keel(t, "verify", "--keys", newName+".pub", mpath).ok(t)

	// An unknown key: refused with both sides' key IDs, exit 2.
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, signTestRead(os.ReadFile(mpath)), 0o644)
	keel(t, "sign", "--key", otherName+".key", other).ok(t)
	otherPriv, _ := manifest.ReadPrivateKey(otherName + ".key")
	r = keel(t, "verify", "--keys", trusted, other)
	r.fails(t, ExitStorage, "signed by "+otherPriv.ID()+", which is not among the trusted keys")
	r.fails(t, ExitStorage, priv.ID())

	// A tampered manifest: refused.
	b := signTestRead(os.ReadFile(mpath))
	os.WriteFile(mpath, []byte(strings.Replace(string(b), `"2.0"`, `"2.1"`, 1)), 0o644)
	keel(t, "verify", "--keys", trusted, mpath).fails(t, ExitStorage, "does not match the manifest")
}

// signTestRead is os.ReadFile's result that must not fail.
func signTestRead(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestSignCommandErrors(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "k")
	keel(t, "keygen", "--out", name).ok(t)
	mpath := signTestManifest(t, dir)
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("keel-ed25519-private zz\n"), 0o600)
	invalid := filepath.Join(dir, "invalid.json")
	os.WriteFile(invalid, []byte(`{"version": "1"}`), 0o644)
	garbageSig := filepath.Join(dir, "garbage.sig")
	os.WriteFile(garbageSig, []byte("not json"), 0o644)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keygen"}, ExitUsage, "--out NAME required"},
		{[]string{"keygen", "--out", name}, ExitStorage, name + ".key exists: refusing to overwrite"},
		{[]string{"keygen", "--out", name, "extra"}, ExitUsage, "takes no arguments"},
		{[]string{"sign", mpath}, ExitUsage, "--key NAME.key required"},
		{[]string{"sign", "--key", name + ".key"}, ExitUsage, "sign takes one MANIFEST"},
		{[]string{"sign", "--key", name + ".pub", mpath}, ExitStorage, name + ".pub:1: this is a public key"},
		{[]string{"sign", "--key", bad, mpath}, ExitStorage, bad + ":1: keel-ed25519-private key is not valid base64"},
		{[]string{"sign", "--key", name + ".key", filepath.Join(dir, "none.json")}, ExitStorage, "none.json: no such file"},
		{[]string{"sign", "--key", name + ".key", invalid}, ExitStorage, "refusing to sign an invalid manifest"},
		{[]string{"sign", "--key", name + ".key", mpath, "--out", garbageSig}, ExitStorage, "malformed manifest signature"},
		{[]string{"verify", mpath}, ExitUsage, "--keys TRUSTED required"},
		{[]string{"verify", "--keys", name + ".pub"}, ExitUsage, "verify takes MANIFEST"},
		{[]string{"verify", "--keys", name + ".key", mpath}, ExitStorage, name + ".key:1: this is a private key"},
		{[]string{"verify", "--keys", filepath.Join(dir, "none.pub"), mpath}, ExitStorage, "none.pub: no such file"},
		{[]string{"verify", "--keys", name + ".pub", mpath}, ExitStorage, "manifest is unsigned: " + mpath + ".sig does not exist"},
		{[]string{"verify", "--keys", name + ".pub", mpath, garbageSig}, ExitStorage, "malformed manifest signature"},
	} {
		r := keel(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("keel %v: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	// The refused keygen left the existing key alone.
	if _, err := manifest.ReadPrivateKey(name + ".key"); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(mpath + ".sig"); err == nil {
		t.Error("a failed sign wrote a signature file")
	}
	if b, _ := os.ReadFile(garbageSig); string(b) != "not json" {
		t.Error("a failed sign changed the existing signature file")
	}
}

// TestPCRPredictRefusesSeedManifest: the recovery seed's own manifest
// never boots, so predicting PCRs from it would predict nothing keel-init
// measures (issue 9 item 14).
func TestPCRPredictRefusesSeedManifest(t *testing.T) {
	dir := t.TempDir()
	d := manifest.Digest{SHA256: strings.Repeat("0", 64), Size: 1}
	m := manifest.Manifest{Compatible: "qemu-x86_64-uefi", Role: manifest.RoleSeed, Version: "2.0", Kernel: d, Initrd: d, Root: manifest.Root{FSType: "erofs"}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	keel(t, "pcr", "predict", p).fails(t, ExitStorage, "a seed's manifest, which keel-init never boots")
	keel(t, "pcr", "predict", signTestManifest(t, dir)).ok(t)
}
