package slotimg

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/keelboot/keel/manifest"
)

func sample(t testing.TB) []byte {
	var b bytes.Buffer
	parts := []Part{{"kernel", bytes.Repeat([]byte{1}, 5000)}, {"initrd", []byte("cpio")}, {"manifest", []byte("{}")}}
	n, err := Write(&b, parts)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) || n != Size(parts) || n%Align != 0 {
		t.Fatalf("wrote %d, buffer %d, Size %d", n, b.Len(), Size(parts))
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	img := sample(t)
	h, err := ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"initrd": "cpio", "manifest": "{}"} {
		s, err := h.Section(bytes.NewReader(img), name)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(s)
		if string(got) != want {
			t.Errorf("%s = %q", name, got)
		}
	}
	k, _ := h.Find("kernel")
	if k.Offset != HeaderSize || k.Size != 5000 {
		t.Errorf("kernel entry %+v", k)
	}
	if _, err := h.Find("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing entry: %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	img := sample(t)
	for name, tc := range map[string]struct {
		mutate func([]byte) []byte
		want   error
		msg    string
	}{
		"zeros":     {func(b []byte) []byte { return make([]byte, len(b)) }, ErrNotSlot, "magic"},
		"short":     {func(b []byte) []byte { return b[:100] }, ErrNotSlot, "smaller"},
		"crc":       {func(b []byte) []byte { b[20] ^= 1; return b }, ErrCorrupt, "CRC"},
		"truncated": {func(b []byte) []byte { return b[:HeaderSize+100] }, ErrCorrupt, "outside"},
		"version":   {func(b []byte) []byte { b[8] = 9; return b }, ErrCorrupt, "version"},
	} {
		t.Run(name, func(t *testing.T) {
			b := tc.mutate(bytes.Clone(img))
			_, err := ReadHeader(bytes.NewReader(append(b, make([]byte, 8)...)), int64(len(b)))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	for _, parts := range [][]Part{nil, {{"Kernel", nil}}, {{"a", nil}, {"a", nil}}, {{strings.Repeat("x", 24), nil}}} {
		if _, err := Write(io.Discard, parts); err == nil {
			t.Errorf("Write(%v) succeeded", parts)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(sample(f)[:HeaderSize], int64(3*HeaderSize))
	f.Fuzz(func(t *testing.T, hdr []byte, size int64) {
		if len(hdr) < HeaderSize {
			hdr = append(hdr, make([]byte, HeaderSize-len(hdr))...)
		}
		h, err := ParseHeader(hdr, size)
		if err != nil {
			return
		}
		for _, e := range h.Entries {
			if e.Offset < HeaderSize || e.Offset+e.Size > size {
				t.Fatalf("accepted entry %+v outside %d", e, size)
			}
		}
	})
}

// TestLayout: Layout gives the header Write writes and the offsets it
// uses, without the data.
func TestLayout(t *testing.T) {
	img := sample(t)
	hdr, ents, err := Layout([]Entry{{Name: "kernel", Size: 5000}, {Name: "initrd", Size: 4}, {Name: "manifest", Size: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hdr, img[:HeaderSize]) {
		t.Error("Layout's header differs from Write's")
	}
	h, _ := ReadHeader(bytes.NewReader(img), int64(len(img)))
	for i, e := range ents {
		if e != h.Entries[i] {
			t.Errorf("entry %d: Layout %+v, Write %+v", i, e, h.Entries[i])
		}
	}
	if _, _, err := Layout([]Entry{{Name: "x", Size: -1}}); err == nil {
		t.Error("Layout accepted a negative size")
	}
}

// TestReadManifest: the one reader of a container's signed manifest reads
// the manifest and its signature envelope (name + SigSuffix, nil when
// missing), bounds both before reading, and says which entry is wrong.
func TestReadManifest(t *testing.T) {
	img := func(parts ...Part) (*Header, []byte) {
		t.Helper()
		var b bytes.Buffer
		if _, err := Write(&b, parts); err != nil {
			t.Fatal(err)
		}
		h, err := ReadHeader(bytes.NewReader(b.Bytes()), int64(b.Len()))
		if err != nil {
			t.Fatal(err)
		}
		return h, b.Bytes()
	}
	if EntryManifest+SigSuffix != manifest.SigEntry {
		t.Errorf("the manifest's signature entry is %q, manifest.SigEntry %q", EntryManifest+SigSuffix, manifest.SigEntry)
	}
	h, b := img(Part{"kernel", []byte("k")}, Part{"manifest", []byte(`{"m":1}`)}, Part{"manifest.sig", []byte("sig")},
		Part{"slot-manifest", []byte(`{"m":2}`)}, Part{"slot-manifest.sig", []byte("sig2")})
	for name, want := range map[string][2]string{"manifest": {`{"m":1}`, "sig"}, "slot-manifest": {`{"m":2}`, "sig2"}} {
		mb, sig, err := h.ReadManifest(bytes.NewReader(b), name)
		if err != nil || string(mb) != want[0] || string(sig) != want[1] {
			t.Errorf("%s: %q, %q, %v; want %q, %q", name, mb, sig, err, want[0], want[1])
		}
	}
	h, b = img(Part{"manifest", []byte("{}")})
	if mb, sig, err := h.ReadManifest(bytes.NewReader(b), EntryManifest); err != nil || string(mb) != "{}" || sig != nil {
		t.Errorf("unsigned: %q, %q, %v; want the manifest and no signature", mb, sig, err)
	}
	if _, _, err := h.ReadManifest(bytes.NewReader(b), "slot-manifest"); !errors.Is(err, ErrNoEntry) {
		t.Errorf("no such manifest: %v, want ErrNoEntry", err)
	}
	if _, _, err := h.ReadManifest(bytes.NewReader(b[:HeaderSize+1]), EntryManifest); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a truncated image: %v, want io.ErrUnexpectedEOF", err)
	}
	// Sizes come from the unauthenticated header: bounded before reading.
	for name, size := range map[string]int64{"manifest": MaxManifest + 1, "manifest.sig": manifest.MaxSigSize + 1} {
		hdr, _, err := Layout([]Entry{{Name: "manifest", Size: 2}, {Name: "manifest.sig", Size: 3}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHeader(hdr, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		for i := range h.Entries {
			if h.Entries[i].Name == name {
				h.Entries[i].Size = size
			}
		}
		if _, _, err := h.ReadManifest(bytes.NewReader(make([]byte, 4*HeaderSize)), EntryManifest); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "entry "+name+" is") {
			t.Errorf("%s of %d bytes: %v, want ErrCorrupt naming it", name, size, err)
		}
	}
}
