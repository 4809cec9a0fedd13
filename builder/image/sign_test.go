package image

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// TestBuildSigning: signing_keys with two keys (a rotation) sign slot a
// with both; unknown_key signs slot b with a key nobody trusts. Then an
// unsigned development image: no manifest.sig, except for a slot with its
// own sign_with.
func TestBuildSigning(t *testing.T) {
	fx := newFixture(t)
	keys := filepath.Join(t.TempDir(), "keys")
	oldKey, oldPub := keyPair(t, keys, "old")
	newKey, newPub := keyPair(t, keys, "new")
	fx.spec.SigningKeys = []string{oldKey, newKey}
	sb := fx.spec.Slots["b"]
	sb.UnknownKey = true
	fx.spec.Slots["b"] = sb
	disk, tab := fx.build(t)

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

	mb, sig, _ = slotEntries(t, disk, tab, "b")
	_, err = manifest.Verify(mb, sig, []manifest.PublicKey{oldPub, newPub})
	if !errors.Is(err, manifest.ErrUnknownKey) || !strings.Contains(err.Error(), oldPub.ID()) || !strings.Contains(err.Error(), newPub.ID()) {
		t.Errorf("slot b (unknown_key) = %v, want ErrUnknownKey naming the trusted keys", err)
	}
	if env, err := manifest.ParseEnvelope(sig); err != nil || len(env.Signatures) != 1 {
		t.Errorf("slot b envelope %v, %v: want one signature (the unknown key only)", env, err)
	}

	// Unsigned development image: slot a has no manifest.sig; slot b is
	// signed by its own sign_with key only.
	fx.spec.Out += ".unsigned"
	fx.spec.SigningKeys, fx.spec.Unsigned = nil, true
	sb.UnknownKey, sb.SignWith = false, []string{newKey}
	fx.spec.Slots["b"] = sb
	disk, tab = fx.build(t)
	if _, sig, h := slotEntries(t, disk, tab, "a"); sig != nil || len(h.Entries) != 3 {
		t.Errorf("unsigned slot a has entries %+v", h.Entries)
	}
	mb, sig, _ = slotEntries(t, disk, tab, "b")
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{newPub}); err != nil {
		t.Errorf("slot b (sign_with new): %v", err)
	}
	if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{oldPub}); !errors.Is(err, manifest.ErrUnknownKey) {
		t.Errorf("slot b against the old key only: %v", err)
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
		{"no key, one slot with sign_with", func(s *Spec) {
			s.SigningKeys = nil
			sl := s.Slots["a"]
			sl.SignWith = []string{goodKey}
			s.Slots["a"] = sl
		}, []string{"no signing key given for slot b:"}},
		{"unsigned and keys", func(s *Spec) { s.Unsigned = true }, []string{"unsigned and signing_keys: give one of them"}},
		{"public key", func(s *Spec) { s.SigningKeys = []string{pubOnly} }, []string{
			"signing_keys[0]: manifest: " + pubOnly + ":1: this is a public key"}},
		{"garbage", func(s *Spec) { s.SigningKeys = []string{goodKey, garbage} }, []string{
			"signing_keys[1]: manifest: " + garbage + ":2: keel-ed25519-private key is 3 bytes, want 32"}},
		{"missing sign_with", func(s *Spec) {
			sl := s.Slots["b"]
			sl.SignWith = []string{filepath.Join(dir, "none.key")}
			s.Slots["b"] = sl
		}, []string{"slots.b.sign_with[0]: manifest: signing key: open " + filepath.Join(dir, "none.key") + ": no such file"}},
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
