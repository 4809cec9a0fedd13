package seedimg

import (
	"bytes"
	"testing"

	"github.com/keelboot/keel/format/slotimg"
)

// fs is a 64-block file system image with non-zero blocks 0, 1, 7, 20, 40
// and 63.
func fs() []byte {
	img := make([]byte, 64*BlockSize)
	for i, blk := range []int{0, 1, 7, 20, 40, 63} {
		img[blk*BlockSize+i*100] = byte(i + 1)
	}
	return img
}

// TestEntryNames: the slot manifest's signature entry is named as
// slotimg.ReadManifest looks for it.
func TestEntryNames(t *testing.T) {
	if EntrySlotSig != EntrySlotManifest+slotimg.SigSuffix {
		t.Errorf("%q is not %q + %q", EntrySlotSig, EntrySlotManifest, slotimg.SigSuffix)
	}
}

func TestEncodeData(t *testing.T) {
	img := fs()
	var b bytes.Buffer
	if err := EncodeData(&b, img); err != nil {
		t.Fatal(err)
	}
	enc := b.Bytes()
	if len(enc) != BlockSize+6*BlockSize {
		t.Errorf("entry of %d bytes, want a header block and 6 blocks", len(enc))
	}
	d, err := DecodeData(enc)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size != int64(len(img)) || len(d.Index) != 6 {
		t.Errorf("decoded size %d, %d blocks", d.Size, len(d.Index))
	}
	got := make([]byte, d.Size)
	for i, blk := range d.Index {
		copy(got[blk*BlockSize:], d.Block(i))
	}
	if !bytes.Equal(got, img) {
		t.Error("decoded blocks do not give the image back")
	}
	for name, b := range map[string][]byte{
		"magic":      append([]byte("KEELDATX"), enc[8:]...),
		"block size": func() []byte { b := bytes.Clone(enc); b[9] = 0x20; return b }(),
		"truncated":  enc[:len(enc)-1],
		"longer":     append(bytes.Clone(enc), 0),
		"order":      func() []byte { b := bytes.Clone(enc); b[32+8] = 0; return b }(),
		"range":      func() []byte { b := bytes.Clone(enc); b[32+8*5] = 64; return b }(),
		"count":      func() []byte { b := bytes.Clone(enc); b[24] = 65; return b }(),
		"short":      enc[:31],
	} {
		if _, err := DecodeData(b); err == nil {
			t.Errorf("%s: DecodeData accepted it", name)
		}
	}
	for _, n := range []int{0, 100, BlockSize + 1} {
		if err := EncodeData(&bytes.Buffer{}, make([]byte, n)); err == nil {
			t.Errorf("EncodeData of %d bytes succeeded", n)
		}
	}
}

func FuzzDecodeData(f *testing.F) {
	var b bytes.Buffer
	if err := EncodeData(&b, fs()); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte("KEELDATA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeData(b)
		if err != nil || d.Size > 64<<20 {
			return
		}
		// What decodes encodes to the same fields and blocks when its
		// stored blocks are not zero (the encoder keeps only non-zero
		// blocks). Bytes 12-15 and the padding are not read.
		img, zero := make([]byte, d.Size), make([]byte, BlockSize)
		for i, blk := range d.Index {
			if bytes.Equal(d.Block(i), zero) {
				return
			}
			copy(img[blk*BlockSize:], d.Block(i))
		}
		var out bytes.Buffer
		if err := EncodeData(&out, img); err != nil {
			t.Fatal(err)
		}
		o, end := out.Bytes(), 32+8*len(d.Index)
		if !bytes.Equal(o[:12], b[:12]) || !bytes.Equal(o[16:end], b[16:end]) || !bytes.Equal(o[len(o)-len(d.Blocks):], d.Blocks) {
			t.Fatalf("re-encoded %x..., decoded from %x...", o[:end], b[:end])
		}
	})
}
