package update

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/testkit/faultdev"
	"github.com/keelboot/keel/update/source"
)

// TestInstall: Install opens the bundle with the trusted keys for the
// board and applies the caller's policy before anything is written (a
// bundle for another board, one the policy refuses, one signed by another
// key: the target untouched, Begin never called), and otherwise writes it
// (the slot writer's own tests are package slotwrite's), counting the
// header and manifest in Fetched.
func TestInstall(t *testing.T) {
	key, trusted := bundletest.Keys(t, "release")
	other, _ := bundletest.Keys(t, "someone else")
	s := bundletest.NewSlot(t, rand.New(rand.NewSource(1)), 64, "2.0", 2, key)
	full := bundletest.Bundle(t, s, key)
	const slotSize, rootSize = 256 << 10, 1 << 20
	for _, c := range []struct {
		name   string
		bundle []byte
		edit   func(*Options)
		want   string
	}{
		{"another board", full, func(o *Options) { o.Board = "other-board" }, "for another board"},
		{"policy", full, func(o *Options) {
			o.Check = func(b *bundle.Bundle) error {
				return errors.New("version " + b.Header.Version + " is below the running one")
			}
		}, "version 2.0 is below the running one"},
		{"unknown key", bundletest.Bundle(t, s, other), nil, "not among the trusted keys"},
		{"good", full, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			slot := faultdev.NewMem(faultdev.File, make([]byte, slotSize), 0)
			root := faultdev.NewMem(faultdev.File, make([]byte, rootSize), 0)
			begun := false
			o := Options{Trusted: trusted, Board: bundletest.Board,
				Target: slotwrite.Target{Slot: slot, SlotSize: slotSize, Root: root, RootSize: rootSize},
				Begin:  func(*bundle.Bundle) error { begun = true; return nil }}
			if c.edit != nil {
				c.edit(&o)
			}
			res, err := Install(context.Background(), source.NewReaderAt(bytes.NewReader(c.bundle), int64(len(c.bundle)), "test"), o)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Install = %v, want an error saying %q", err, c.want)
				}
				if begun || !bytes.Equal(slot.Bytes(), make([]byte, slotSize)) || !bytes.Equal(root.Bytes(), make([]byte, rootSize)) {
					t.Errorf("a refused bundle began (%v) or wrote", begun)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h, err := slotimg.ReadHeader(slot, slotSize)
			if err != nil {
				t.Fatal(err)
			}
			mb, sig, err := h.ReadManifest(slot, slotimg.EntryManifest)
			if err != nil || !bytes.Equal(mb, s.Manifest) || !bytes.Equal(sig, s.Sig) {
				t.Errorf("the slot's manifest and signature differ from the bundle's (%v)", err)
			}
			if !bytes.Equal(root.Bytes()[:len(s.Root)], s.Root) {
				t.Error("the root differs from the bundle's")
			}
			// Fetched counts what the writer fetched and, before it, the
			// header region Open read (everything before the manifest).
			h2 := res.Bundle.Header
			mp, _ := h2.Part(bundle.PartManifest)
			want := mp.Offset + int64(res.Blocks.Fetched)*bundle.Align
			for _, name := range []string{bundle.PartManifest, bundle.PartSig, bundle.PartKernel, bundle.PartInitrd, bundle.PartTree} {
				p, _ := h2.Part(name)
				want += p.Size
			}
			if h2.Version != "2.0" || res.Fetched < want || res.Fetched > int64(len(full)) {
				t.Errorf("result: version %s, fetched %d bytes, want at least %d (the header region included), at most the bundle's %d", h2.Version, res.Fetched, want, len(full))
			}
		})
	}
}
