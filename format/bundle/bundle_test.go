package bundle_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

func mem(b []byte) source.Source {
	return source.NewReaderAt(bytes.NewReader(b), int64(len(b)), "test bundle")
}

func TestRoundTrip(t *testing.T) {
	key, trusted := bundletest.Keys(t, "release")
	s := bundletest.NewSlot(t, rand.New(rand.NewSource(1)), 150, "1.0", 3, key)
	for _, format := range []int{bundle.FormatPlain, bundle.FormatChunked} {
		t.Run(fmt.Sprint("format ", format), func(t *testing.T) {
			b := bundletest.Bundle(t, s, key)
			if format == bundle.FormatPlain {
				b = bundletest.PlainBundle(t, s, key)
			}
			roundTrip(t, s, b, key, trusted, format)
		})
	}
}

func roundTrip(t *testing.T, s *bundletest.Slot, b []byte, key manifest.PrivateKey, trusted []manifest.PublicKey, format int) {
	for name, src := range map[string]source.Source{"file": mem(b), "pipe": source.Stream(bytes.NewReader(b), "pipe")} {
		bb, err := bundle.Verify(context.Background(), src, trusted, bundletest.Board)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h := bb.Header
		if h.Format != format || (h.Chunks != nil) != (format == bundle.FormatChunked) {
			t.Errorf("%s: format %d, chunks %+v", name, h.Format, h.Chunks)
		}
		if h.Version != "1.0" || h.SecurityVersion != 3 || h.Compatible != bundletest.Board || h.DataBlocks != 150 || h.Delta != nil {
			t.Errorf("%s: header %+v", name, h)
		}
		if bb.KeyID != key.ID() || !bytes.Equal(bb.ManifestBytes, s.Manifest) || h.Size() != int64(len(b)) {
			t.Errorf("%s: key %s, manifest or size differ", name, bb.KeyID)
		}
		// Parts in order, aligned, header first.
		for i, p := range h.Parts {
			if p.Offset%bundle.Align != 0 || i > 0 && p.Offset < h.Parts[i-1].End() {
				t.Errorf("%s: part %s at %d", name, p.Name, p.Offset)
			}
		}
	}
	// The root reads back as a partition holds it.
	bb, err := bundle.Open(context.Background(), mem(b), trusted, manifest.AnyBoard)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := bb.RootReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(s.Root))
	if _, err := rr.ReadAt(got, 0); err != nil || !bytes.Equal(got, s.Root) {
		t.Errorf("root reader: %v, equal %v", err, bytes.Equal(got, s.Root))
	}
	// The same input gives the same bytes.
	b2 := bundletest.Bundle(t, s, key)
	if format == bundle.FormatPlain {
		b2 = bundletest.PlainBundle(t, s, key)
	}
	if !bytes.Equal(b, b2) {
		t.Error("two bundles of the same slot differ")
	}
}

func TestTampering(t *testing.T) {
	key, trusted := bundletest.Keys(t, "release")
	other, _ := bundletest.Keys(t, "another key")
	s := bundletest.NewSlot(t, rand.New(rand.NewSource(2)), 100, "1.0", 1, key)
	// Format 1: a changed byte reaches the part's digest (or the block's
	// leaf); TestChunkRefused has format 2's chunks.
	good := bundletest.PlainBundle(t, s, key)
	bb, err := bundle.Open(context.Background(), mem(good), trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	part := func(n string) bundle.Part { p, _ := bb.Header.Part(n); return p }
	flip := func(off int64) []byte {
		b := append([]byte(nil), good...)
		b[off] ^= 1
		return b
	}
	// A manifest signed by an unknown key, in a bundle whose header a
	// trusted key signed.
	s2 := *s
	s2.Sig, _ = manifest.Sign(s.Manifest, nil, other)
	foreignManifest := bundletest.Bundle(t, &s2, key)

	for _, c := range []struct {
		name string
		b    []byte
		is   error
		want string
	}{
		{"magic", flip(0), bundle.ErrNotBundle, "magic"},
		{"preamble crc", flip(12), bundle.ErrCorrupt, "CRC"},
		{"header", flip(bundle.PreambleSize + 20), manifest.ErrBadSignature, "bundle header"},
		{"signature", flip(int64(bytes.LastIndex(good[:4096], []byte(`"sig"`))) + 9), nil, ""},
		{"header by another key", bundletest.Bundle(t, s, other), manifest.ErrUnknownKey, "not among the trusted keys"},
		{"manifest by another key", foreignManifest, manifest.ErrUnknownKey, "slot's manifest"},
		{"manifest", flip(part(bundle.PartManifest).Offset), bundle.ErrTampered, "manifest part"},
		{"kernel", flip(part(bundle.PartKernel).Offset + 7), bundle.ErrTampered, "kernel part"},
		{"initrd", flip(part(bundle.PartInitrd).End() - 1), bundle.ErrTampered, "initrd part"},
		{"tree", flip(part(bundle.PartTree).Offset + 33), bundle.ErrTampered, "tree part"},
		{"data block 42", flip(part(bundle.PartData).Offset + 42*4096 + 5), bundle.ErrTampered, "data block 42"},
		{"truncated", good[:len(good)-1], bundle.ErrCorrupt, "truncated"},
		{"truncated header", good[:100], nil, ""},
		{"padded", append(append([]byte(nil), good...), 0), bundle.ErrCorrupt, "padded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for name, src := range map[string]source.Source{"file": mem(c.b), "pipe": source.Stream(bytes.NewReader(c.b), "pipe")} {
				_, err := bundle.Verify(context.Background(), src, trusted, bundletest.Board)
				if err == nil {
					if name == "pipe" && c.name == "padded" {
						continue // a pipe's length is unknown: the trailing byte is never read
					}
					t.Fatalf("%s: verifies", name)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("%s: %v, want %v", name, err, c.is)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: %v, want %q in it", name, err, c.want)
				}
			}
		})
	}
	if _, err := bundle.Open(context.Background(), mem(good), trusted, "other-board"); !errors.Is(err, bundle.ErrWrongBoard) {
		t.Errorf("other board: %v", err)
	}
}

func TestDecodeHeaderStrict(t *testing.T) {
	for _, h := range []string{
		`{"format":1,"format":1}`,
		`{"Format":1}`,
		`{"format":1,"extra":2}`,
		`{"format":1} {}`,
		`{"format":1}x`,
	} {
		if _, err := bundle.DecodeHeader([]byte(h)); !errors.Is(err, bundle.ErrCorrupt) {
			t.Errorf("%s: %v", h, err)
		}
	}
}

func TestStaticDelta(t *testing.T) {
	key, trusted := bundletest.Keys(t, "release")
	rng := rand.New(rand.NewSource(3))
	v1 := bundletest.NewSlot(t, rng, 200, "1.0", 1, key)
	v2 := bundletest.Next(t, rng, v1, 5, false, "2.0", key)
	full := bundletest.Bundle(t, v2, key)
	ctx := context.Background()
	bb, err := bundle.Open(ctx, mem(full), trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	tr, _, err := bb.ReadTree(ctx, mem(full))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.DeltaMap(tr, bytes.NewReader(v1.Data), v1.Tree(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Count(200); n == 0 || n > 5 {
		t.Errorf("the delta carries %d blocks for 5 changed", n)
	}
	var out bytes.Buffer
	h, err := bundle.Write(&out, bundle.Input{Manifest: v2.Manifest, Sig: v2.Sig, Kernel: v2.Kernel, Initrd: v2.Initrd,
		Root: bytes.NewReader(v2.Root), Delta: &bundle.Delta{From: "1.0", FromRootHash: v1.Verity.RootHash}, Map: m}, key)
	if err != nil {
		t.Fatal(err)
	}
	if h.Delta == nil || h.Delta.Blocks != m.Count(200) {
		t.Errorf("delta header %+v", h.Delta)
	}
	if _, err := bundle.Verify(ctx, mem(out.Bytes()), trusted, bundletest.Board); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Verify(ctx, source.Stream(bytes.NewReader(out.Bytes()), "pipe"), trusted, bundletest.Board); err != nil {
		t.Fatal(err)
	}
	t.Logf("delta %d bytes, full %d", out.Len(), len(full))
}

// TestDeltaMapChecksOld: a block of the old root that does not match the
// old tree fails the map, naming the block (and nothing else does: the
// zero block, a short root).
func TestDeltaMapChecksOld(t *testing.T) {
	key, _ := bundletest.Keys(t, "release")
	rng := rand.New(rand.NewSource(5))
	v1 := bundletest.NewSlot(t, rng, 64, "1.0", 1, key)
	v2 := bundletest.Next(t, rng, v1, 3, false, "2.0", key)
	bad := append([]byte(nil), v1.Data...)
	bad[17*bundle.Align+9] ^= 1
	_, err := bundle.DeltaMap(v2.Tree(t), bytes.NewReader(bad), v1.Tree(t))
	if !errors.Is(err, bundle.ErrTampered) || !strings.Contains(err.Error(), "data block 17 does not match its dm-verity leaf (in the old root)") {
		t.Errorf("DeltaMap from a damaged old root = %v, want ErrTampered naming block 17", err)
	}
	if _, err := bundle.DeltaMap(v2.Tree(t), bytes.NewReader(v1.Data[:40*bundle.Align]), v1.Tree(t)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("DeltaMap from a short old root = %v", err)
	}
	m, err := bundle.DeltaMap(v2.Tree(t), bytes.NewReader(v1.Data), v1.Tree(t))
	if err != nil || m.Count(64) == 0 || m.Count(64) > 3 {
		t.Errorf("DeltaMap = %d blocks, %v; want 1..3", m.Count(64), err)
	}
}

// FuzzOpen: whatever the bytes, Open and Verify return (never panic, never
// allocate from an unchecked size) and accept only the signed bundle.
func FuzzOpen(f *testing.F) {
	key, trusted := bundletest.Keys(f, "release")
	s := bundletest.NewSlot(f, rand.New(rand.NewSource(4)), 3, "1.0", 1, key)
	good := bundletest.Bundle(f, s, key)
	f.Add(good)
	plain := bundletest.PlainBundle(f, s, key)
	f.Add(plain)
	f.Add(good[:4096])
	f.Add([]byte(bundle.Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := bundle.Verify(context.Background(), mem(b), trusted, bundletest.Board)
		if err == nil && !bytes.Equal(b, good) && !bytes.Equal(b, plain) {
			t.Fatalf("a changed bundle verifies")
		}
		if len(b) >= bundle.PreambleSize {
			bundle.ParsePreamble(b)
		}
		if h, err := bundle.DecodeHeader(b); err == nil {
			h.Validate(bundle.Align)
		}
	})
}
