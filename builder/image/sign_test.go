package image

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/image/imagetest"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// slotEntries reads slot name's container back with slotimg and returns
// its manifest and manifest.sig entries (sig nil when there is none).
func slotEntries(t *testing.T, disk io.ReaderAt, tab *gpt.Table, name string) (mb, sig []byte, h *slotimg.Header) {
	t.Helper()
	p := find(t, tab, layout.SlotPartition(name))
	r := p.Section(disk)
	h, err := slotimg.ReadHeader(r, p.Size())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := h.Section(r, slotimg.EntryManifest)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ = io.ReadAll(ms)
	ss, err := h.Section(r, manifest.SigEntry)
	if errors.Is(err, fs.ErrNotExist) {
		return mb, nil, h
	}
	if err != nil {
		t.Fatal(err)
	}
	sig, _ = io.ReadAll(ss)
	return mb, sig, h
}

// TestBuildSigning: signing_keys with two keys (a rotation) sign every
// slot with both. Re-signed with imagetest: slot b by a key nobody trusts,
// then by the new key only. Then an unsigned development image: no
// manifest.sig, until imagetest signs slot b with the new key.
func TestBuildSigning(t *testing.T) {
	fx := newFixture(t)
	keys := filepath.Join(t.TempDir(), "keys")
	oldKey, oldPub := keyPair(t, keys, "old")
	newKey, newPub := keyPair(t, keys, "new")
	newPriv, err := manifest.ReadPrivateKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	fx.spec.SigningKeys = []string{oldKey, newKey}
	disk, tab := fx.build(t)
	img := fx.spec.Out
	slotB := layout.SlotPartition("b")

	mb, sig, _ := slotEntries(t, disk, tab, "a")
	for _, trusted := range [][]manifest.PublicKey{{oldPub}, {newPub}, {oldPub, newPub}} {
		m, err := manifest.Verify(mb, sig, trusted)
		if err != nil {
			t.Errorf("slot a, trusting %d keys: %v", len(trusted), err)
		} else if m.Version != fx.spec.Slots["a"].Version {
			t.Errorf("slot a manifest version %q", m.Version)
		}
	}
	env, err := manifest.ParseEnvelope(sig)
	if err != nil {
		t.Fatal(err)
	}
	if ids := env.KeyIDs(); len(ids) != 2 || ids[0] != oldPub.ID() || ids[1] != newPub.ID() {
		t.Errorf("slot a signed by %v, want [%s %s]", ids, oldPub.ID(), newPub.ID())
	}
	if _, err := manifest.Verify(mb, sig, fx.trusted); !errors.Is(err, manifest.ErrUnknownKey) {
		t.Errorf("slot a against a key that did not sign it: %v", err)
	}

	// Slot b, built like slot a, re-signed by a key nobody trusts.
	mbBefore, sig, _ := slotEntries(t, disk, tab, "b")
	if _, err := manifest.Verify(mbBefore, sig, []manifest.PublicKey{oldPub}); err != nil {
		t.Errorf("slot b as built, trusting the old key: %v", err)
	}
	unknown := imagetest.UnknownKey(fx.spec.Seed + "/b")
	if err := imagetest.Resign(img, slotB, unknown); err != nil {
		t.Fatal(err)
	}
	mb, sig, _ = slotEntries(t, disk, tab, "b")
	if !bytes.Equal(mb, mbBefore) {
		t.Error("re-signing changed slot b's manifest")
	}
	_, err = manifest.Verify(mb, sig, []manifest.PublicKey{oldPub, newPub})
	if !errors.Is(err, manifest.ErrUnknownKey) || !strings.Contains(err.Error(), oldPub.ID()) || !strings.Contains(err.Error(), newPub.ID()) {
		t.Errorf("slot b (unknown key) = %v, want ErrUnknownKey naming the trusted keys", err)
	}
	if env, err := manifest.ParseEnvelope(sig); err != nil || len(env.Signatures) != 1 || env.Signatures[0].KeyID != unknown.ID() {
		t.Errorf("slot b envelope %v, %v: want one signature (the unknown key only)", env, err)
	}

	// The end of the rotation: slot b signed by the new key only.
	if err := imagetest.Resign(img, slotB, newPriv); err != nil {
		t.Fatal(err)
	}
	mb, sig, _ = slotEntries(t, disk, tab, "b")
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{newPub}); err != nil {
		t.Errorf("slot b (new key only), trusting the new key: %v", err)
	}
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{oldPub}); !errors.Is(err, manifest.ErrUnknownKey) {
		t.Errorf("slot b (new key only) against the old key only: %v", err)
	}
	// Slot a keeps both signatures.
	mb, sig, _ = slotEntries(t, disk, tab, "a")
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{oldPub}); err != nil {
		t.Errorf("slot a after re-signing slot b: %v", err)
	}

	// Unsigned development image: no slot has a manifest.sig; slot b then
	// signed by the new key only.
	fx.spec.Out += ".unsigned"
	fx.spec.SigningKeys, fx.spec.Unsigned = nil, true
	disk, tab = fx.build(t)
	for _, name := range []string{"a", "b"} {
		if _, sig, h := slotEntries(t, disk, tab, name); sig != nil || len(h.Entries) != 3 {
			t.Errorf("unsigned slot %s has entries %+v", name, h.Entries)
		}
	}
	if err := imagetest.Resign(fx.spec.Out, slotB, newPriv); err != nil {
		t.Fatal(err)
	}
	mb, sig, _ = slotEntries(t, disk, tab, "b")
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{newPub}); err != nil {
		t.Errorf("slot b (signed with the new key): %v", err)
	}
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{oldPub}); !errors.Is(err, manifest.ErrUnknownKey) {
		t.Errorf("slot b against the old key only: %v", err)
	}
	if _, sig, _ := slotEntries(t, disk, tab, "a"); sig != nil {
		t.Error("re-signing slot b signed slot a")
	}
}

// TestSpecSigningErrors: a spec without a signing key, or with a broken
// one, fails Validate (and so Build) with the field, file and line.
func TestSpecSigningErrors(t *testing.T) {
	fx := newFixture(t)
	dir := t.TempDir()
	pubOnly := filepath.Join(dir, "release.pub")
	keyPair(t, dir, "release")
	garbage := filepath.Join(dir, "garbage.key")
	writeFile(t, garbage, []byte("# my key\nkeel-ed25519-private AAAA\n"))
	goodKey := fx.spec.SigningKeys[0]

	for _, tc := range []struct {
		name  string
		edit  func(s *Spec)
		wants []string
	}{
		{"no key", func(s *Spec) { s.SigningKeys = nil }, []string{
			"signing_keys: no signing key given for slot a, b: production images are always signed",
			"keel keygen --out NAME", `"unsigned": true`}},
		{"no key, slot a empty", func(s *Spec) {
			s.SigningKeys = nil
			s.Slots["a"] = Slot{Empty: true}
		}, []string{"no signing key given for slot b:"}},
		{"no key, with a recovery seed", func(s *Spec) {
			s.SigningKeys = nil
			s.Slots["a"] = Slot{Empty: true}
			r := s.Slots["b"]
			s.Recovery = &r
		}, []string{"no signing key given for slot b and the recovery seed:"}},
		{"unsigned and keys", func(s *Spec) { s.Unsigned = true }, []string{"unsigned and signing_keys: give one of them"}},
		{"public key", func(s *Spec) { s.SigningKeys = []string{pubOnly} }, []string{
			"signing_keys[0]: manifest: " + pubOnly + ":1: this is a public key"}},
		{"garbage", func(s *Spec) { s.SigningKeys = []string{goodKey, garbage} }, []string{
			"signing_keys[1]: manifest: " + garbage + ":2: keel-ed25519-private key is 3 bytes, want 32"}},
		{"missing key", func(s *Spec) {
			s.SigningKeys = []string{goodKey, filepath.Join(dir, "none.key")}
		}, []string{"signing_keys[1]: manifest: signing key: open " + filepath.Join(dir, "none.key") + ": no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fx.spec
			s.Slots = map[string]Slot{}
			for k, v := range fx.spec.Slots {
				s.Slots[k] = v
			}
			tc.edit(&s)
			err := Build(t.Context(), s)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
			if _, err := os.Stat(s.Out); err == nil {
				t.Error("a refused spec wrote an image")
			}
		})
	}

	// Unsigned with every slot empty, or all slots empty without keys: no
	// key needed (nothing to sign).
	s := fx.spec
	s.SigningKeys = nil
	s.Slots = map[string]Slot{"a": {Empty: true}, "b": {Empty: true}}
	if err := s.Validate(); err != nil {
		t.Errorf("all slots empty, no key: %v", err)
	}
}
