package imagetest

import (
	"bytes"
	"errors"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// The tests build a small disk by hand: a GPT with slot-a (1 MiB), root-a
// (3 MiB) and recovery (2 MiB), slot-a and recovery holding slot
// containers as the image builder writes them, root-a random bytes with a
// pattern in it.

// pattern marks the bytes CorruptRoot looks for.
var pattern = []byte("KEEL-IMAGETEST-PATTERN")

type testDisk struct {
	path string
	// parts are the containers' entries by partition.
	parts map[string][]slotimg.Part
	// key signed both containers.
	key manifest.PrivateKey
}

// noise returns n deterministic bytes that do not hold pattern.
func noise(seed uint64, n int) []byte {
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func genKey(t *testing.T, name string) manifest.PrivateKey {
	t.Helper()
	k, _, err := manifest.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedParts returns the entries of a signed slot container: kernel,
// initrd, manifest (with their digests), manifest.sig, then extra.
func signedParts(t *testing.T, seed uint64, key manifest.PrivateKey, extra ...slotimg.Part) []slotimg.Part {
	t.Helper()
	kernel := noise(seed, 10000+int(seed))
	initrd := noise(seed+100, 5000)
	m := manifest.Manifest{Compatible: "qemu-x86_64-uefi", Role: manifest.RoleSlot, Version: "1.0", Root: manifest.Root{FSType: "erofs"}}
	m.Kernel, _ = manifest.DigestOf(bytes.NewReader(kernel))
	m.Initrd, _ = manifest.DigestOf(bytes.NewReader(initrd))
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := manifest.Sign(mb, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	return append([]slotimg.Part{
		{Name: slotimg.EntryKernel, Data: kernel},
		{Name: slotimg.EntryInitrd, Data: initrd},
		{Name: slotimg.EntryManifest, Data: mb},
		{Name: manifest.SigEntry, Data: sig},
	}, extra...)
}

func newDisk(t *testing.T) *testDisk {
	t.Helper()
	d := &testDisk{path: filepath.Join(t.TempDir(), "disk.img"), parts: map[string][]slotimg.Part{}, key: genKey(t, "release")}
	f, err := os.Create(d.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	typ := gpt.TypeLinuxGeneric()
	if _, err := gpt.Create(f, size, []gpt.Spec{
		{Name: layout.SlotPartition("a"), Type: typ, Size: 1 << 20},
		{Name: layout.RootPartition("a"), Type: typ, Size: 3 << 20},
		{Name: layout.Recovery, Type: typ, Size: 2 << 20},
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d.write(t, layout.SlotPartition("a"), signedParts(t, 1, d.key))
	seedRoot := noise(3, 64<<10)
	copy(seedRoot[40000:], pattern)
	d.write(t, layout.Recovery, signedParts(t, 2, d.key,
		slotimg.Part{Name: slotimg.EntryRoot, Data: seedRoot},
		slotimg.Part{Name: slotimg.EntryData, Data: noise(4, 3000)}))
	return d
}

// partition finds a partition of the disk.
func (d *testDisk) partition(t *testing.T, name string) gpt.Partition {
	t.Helper()
	f, err := os.Open(d.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tab.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// write writes a slot container into a partition.
func (d *testDisk) write(t *testing.T, name string, parts []slotimg.Part) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := slotimg.Write(&buf, parts); err != nil {
		t.Fatal(err)
	}
	d.writeAt(t, name, 0, buf.Bytes())
	d.parts[name] = parts
}

// writeAt writes b into partition name at off.
func (d *testDisk) writeAt(t *testing.T, name string, off int64, b []byte) {
	t.Helper()
	p := d.partition(t, name)
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := p.SectionWriter(f).WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func (d *testDisk) bytes(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(d.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// entries reads a partition's container back: its header and the bytes
// of each entry.
func (d *testDisk) entries(t *testing.T, name string) (*slotimg.Header, map[string][]byte) {
	t.Helper()
	p := d.partition(t, name)
	all := d.bytes(t)[p.Offset() : p.Offset()+p.Size()]
	h, err := slotimg.ParseHeader(all, p.Size())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m := map[string][]byte{}
	for _, e := range h.Entries {
		m[e.Name] = all[e.Offset : e.Offset+e.Size]
	}
	return h, m
}

// diffs returns the offsets at which a and b differ.
func diffs(a, b []byte) []int64 {
	var d []int64
	for i := range a {
		if a[i] != b[i] {
			d = append(d, int64(i))
		}
	}
	return d
}

// oneFlip checks that after differs from before in exactly one byte, at
// off, all of whose bits are flipped.
func oneFlip(t *testing.T, before, after []byte, off int64) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("the image changed size: %d to %d bytes", len(before), len(after))
	}
	d := diffs(before, after)
	if len(d) != 1 || d[0] != off {
		t.Fatalf("the image differs at %v, want at %d only", d, off)
	}
	if after[off] != before[off]^0xff {
		t.Errorf("byte %d: %#x became %#x, want %#x", off, before[off], after[off], before[off]^0xff)
	}
}

func TestCorruptEntry(t *testing.T) {
	d := newDisk(t)
	for _, part := range []string{layout.SlotPartition("a"), layout.Recovery} {
		t.Run(part, func(t *testing.T) {
			p := d.partition(t, part)
			h, ents := d.entries(t, part)
			e, _ := h.Find(slotimg.EntryKernel)
			before := d.bytes(t)
			if err := CorruptEntry(d.path, part, slotimg.EntryKernel); err != nil {
				t.Fatal(err)
			}
			oneFlip(t, before, d.bytes(t), p.Offset()+e.Offset+e.Size/2)
			m, err := manifest.Parse(ents[slotimg.EntryManifest])
			if err != nil {
				t.Fatal(err)
			}
			_, ents = d.entries(t, part)
			err = manifest.Check("kernel", bytes.NewReader(ents[slotimg.EntryKernel]), m.Kernel)
			if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
				t.Errorf("the corrupted kernel against its digest: %v, want a digest mismatch", err)
			}
			if err := manifest.Check("initrd", bytes.NewReader(ents[slotimg.EntryInitrd]), m.Initrd); err != nil {
				t.Error(err)
			}
			if _, err := manifest.Verify(ents[slotimg.EntryManifest], ents[manifest.SigEntry], []manifest.PublicKey{d.key.Public()}); err != nil {
				t.Errorf("the manifest no longer verifies: %v", err)
			}
		})
	}

	before := d.bytes(t)
	for _, tc := range []struct {
		img, part, entry string
		is               error
		want             string
	}{
		{d.path, layout.SlotPartition("a"), "nope", fs.ErrNotExist, `"nope"`},
		{d.path, layout.SlotPartition("z"), slotimg.EntryKernel, gpt.ErrPartitionNotFound, "slot-z"},
		{d.path, layout.RootPartition("a"), slotimg.EntryKernel, slotimg.ErrNotSlot, "root-a"},
		{d.path + ".none", layout.SlotPartition("a"), slotimg.EntryKernel, fs.ErrNotExist, ".none"},
	} {
		err := CorruptEntry(tc.img, tc.part, tc.entry)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CorruptEntry(%s, %s, %s) = %v, want %v naming %s", filepath.Base(tc.img), tc.part, tc.entry, err, tc.is, tc.want)
		}
	}
	if !bytes.Equal(before, d.bytes(t)) {
		t.Error("a failed CorruptEntry changed the image")
	}
}

func TestCorruptRoot(t *testing.T) {
	d := newDisk(t)
	p := d.partition(t, layout.RootPartition("a"))
	// The first occurrence straddles a chunk boundary; the second follows.
	first, second := int64(chunk-5), int64(2*chunk+100)
	root := noise(5, int(p.Size()))
	copy(root[first:], pattern)
	copy(root[second:], pattern)
	d.writeAt(t, p.Name, 0, root)

	before := d.bytes(t)
	if err := CorruptRoot(d.path, "a", pattern); err != nil {
		t.Fatal(err)
	}
	after := d.bytes(t)
	oneFlip(t, before, after, p.Offset()+first)
	// The first occurrence is gone: the next call flips the second.
	if err := CorruptRoot(d.path, "a", pattern); err != nil {
		t.Fatal(err)
	}
	oneFlip(t, after, d.bytes(t), p.Offset()+second)

	before = d.bytes(t)
	for _, tc := range []struct {
		slot    string
		pattern []byte
		want    string
	}{
		{"a", pattern, "does not occur"}, // both occurrences are broken now
		{"a", []byte("no such bytes here"), `"no such bytes here" does not occur`},
		{"a", nil, "empty pattern"},
		{"z", pattern, "root-z"},
	} {
		if err := CorruptRoot(d.path, tc.slot, tc.pattern); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CorruptRoot(%s, %q) = %v, want %q", tc.slot, tc.pattern, err, tc.want)
		}
	}
	if !bytes.Equal(before, d.bytes(t)) {
		t.Error("a failed CorruptRoot changed the image")
	}
}

func TestCorruptSeedRoot(t *testing.T) {
	d := newDisk(t)
	p := d.partition(t, layout.Recovery)
	h, _ := d.entries(t, layout.Recovery)
	root, _ := h.Find(slotimg.EntryRoot)
	// The pattern also occurs in the kernel, before the root entry: only
	// the root's occurrence counts.
	k, _ := h.Find(slotimg.EntryKernel)
	d.writeAt(t, p.Name, k.Offset+10, pattern)
	before := d.bytes(t)
	if err := CorruptSeedRoot(d.path, pattern); err != nil {
		t.Fatal(err)
	}
	oneFlip(t, before, d.bytes(t), p.Offset()+root.Offset+40000)
	if err := CorruptSeedRoot(d.path, []byte("nowhere")); err == nil || !strings.Contains(err.Error(), "does not occur in the seed's root") {
		t.Errorf("CorruptSeedRoot of a missing pattern = %v", err)
	}
}

// checkResigned checks that partition part's container is signed by
// exactly keys, that its manifest is the one it had, and that every other
// entry kept its bytes.
func checkResigned(t *testing.T, d *testDisk, part string, keys ...manifest.PrivateKey) {
	t.Helper()
	h, ents := d.entries(t, part)
	var names []string
	for _, e := range h.Entries {
		names = append(names, e.Name)
	}
	var want []string
	for _, p := range d.parts[part] {
		want = append(want, p.Name)
		if p.Name != manifest.SigEntry && !bytes.Equal(ents[p.Name], p.Data) {
			t.Errorf("%s: entry %s changed", part, p.Name)
		}
	}
	if !strings.Contains(strings.Join(want, " "), manifest.SigEntry) {
		want = append(want, manifest.SigEntry)
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("%s: entries %v, want %v", part, names, want)
	}
	mb, sig := ents[slotimg.EntryManifest], ents[manifest.SigEntry]
	env, err := manifest.ParseEnvelope(sig)
	if err != nil {
		t.Fatalf("%s: %v", part, err)
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID())
		if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{k.Public()}); err != nil {
			t.Errorf("%s against key %s: %v", part, k.ID(), err)
		}
	}
	if got := strings.Join(env.KeyIDs(), " "); got != strings.Join(ids, " ") {
		t.Errorf("%s signed by %s, want %s", part, got, strings.Join(ids, " "))
	}
}

func TestResign(t *testing.T) {
	d := newDisk(t)
	newKey, other := genKey(t, "new"), genKey(t, "other")
	slotA := layout.SlotPartition("a")

	// A key rotation: the new key only.
	if err := Resign(d.path, slotA, newKey); err != nil {
		t.Fatal(err)
	}
	checkResigned(t, d, slotA, newKey)
	_, ents := d.entries(t, slotA)
	if _, err := manifest.Verify(ents[slotimg.EntryManifest], ents[manifest.SigEntry], []manifest.PublicKey{d.key.Public()}); !errors.Is(err, manifest.ErrUnknownKey) {
		t.Errorf("slot a against the old key: %v, want ErrUnknownKey", err)
	}
	// Two keys; then the recovery seed, whose root and data follow
	// manifest.sig.
	if err := Resign(d.path, slotA, d.key, newKey); err != nil {
		t.Fatal(err)
	}
	checkResigned(t, d, slotA, d.key, newKey)
	if err := Resign(d.path, layout.Recovery, other); err != nil {
		t.Fatal(err)
	}
	checkResigned(t, d, layout.Recovery, other)

	t.Run("unsigned", func(t *testing.T) {
		d := newDisk(t)
		d.write(t, slotA, signedParts(t, 1, d.key)[:3])
		if err := Resign(d.path, slotA, newKey); err != nil {
			t.Fatal(err)
		}
		checkResigned(t, d, slotA, newKey)
	})

	t.Run("moves entries", func(t *testing.T) {
		// An old manifest.sig of two blocks before a root entry: the new
		// one takes one block, the root moves up.
		d := newDisk(t)
		parts := signedParts(t, 1, d.key, slotimg.Part{Name: slotimg.EntryRoot, Data: noise(7, 9000)})
		parts[3].Data = append(bytes.Repeat([]byte(" "), 6000), parts[3].Data...)
		d.write(t, slotA, parts)
		h, _ := d.entries(t, slotA)
		oldRoot, _ := h.Find(slotimg.EntryRoot)
		if err := Resign(d.path, slotA, newKey); err != nil {
			t.Fatal(err)
		}
		checkResigned(t, d, slotA, newKey)
		h, _ = d.entries(t, slotA)
		root, _ := h.Find(slotimg.EntryRoot)
		if root.Offset != oldRoot.Offset-slotimg.Align {
			t.Errorf("root entry at %d, was at %d: want one block earlier", root.Offset, oldRoot.Offset)
		}
		p := d.partition(t, slotA)
		all := d.bytes(t)[p.Offset() : p.Offset()+p.Size()]
		if end := root.Offset + alignUp(root.Size); !bytes.Equal(all[end:end+slotimg.Align], make([]byte, slotimg.Align)) {
			t.Error("the block the container no longer uses was not cleared")
		}
	})

	t.Run("errors", func(t *testing.T) {
		d := newDisk(t)
		// A container that fills its partition has no room for a
		// manifest.sig.
		p := d.partition(t, slotA)
		parts := signedParts(t, 1, d.key)[:3]
		parts[0].Data = noise(8, int(p.Size())-4*slotimg.Align) // + header, initrd (2 blocks), manifest
		d.write(t, slotA, parts)
		before := d.bytes(t)
		for _, tc := range []struct {
			part string
			keys []manifest.PrivateKey
			want string
		}{
			{slotA, []manifest.PrivateKey{newKey}, "the re-signed container needs 1052672 bytes, the partition has 1048576"},
			{slotA, nil, "no key given"},
			{layout.RootPartition("a"), []manifest.PrivateKey{newKey}, "not a keel slot image"},
			{"nope", []manifest.PrivateKey{newKey}, "nope"},
		} {
			if err := Resign(d.path, tc.part, tc.keys...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Resign(%s, %d keys) = %v, want %q", tc.part, len(tc.keys), err, tc.want)
			}
		}
		if !bytes.Equal(before, d.bytes(t)) {
			t.Error("a failed Resign changed the image")
		}
	})
}

func TestUnknownKey(t *testing.T) {
	a, a2, b := UnknownKey("seed/a"), UnknownKey("seed/a"), UnknownKey("seed/b")
	if a.ID() != a2.ID() || !bytes.Equal(a.Key, a2.Key) {
		t.Error("UnknownKey is not deterministic")
	}
	if a.ID() == b.ID() {
		t.Error("two seeds give the same key")
	}
	if a.Comment != "unknown key (test)" {
		t.Errorf("comment %q", a.Comment)
	}
	// It signs (a manifest nobody trusts).
	d := newDisk(t)
	if err := Resign(d.path, layout.SlotPartition("a"), a); err != nil {
		t.Fatal(err)
	}
	checkResigned(t, d, layout.SlotPartition("a"), a)
	_, ents := d.entries(t, layout.SlotPartition("a"))
	_, err := manifest.Verify(ents[slotimg.EntryManifest], ents[manifest.SigEntry], []manifest.PublicKey{d.key.Public()})
	if !errors.Is(err, manifest.ErrUnknownKey) || !strings.Contains(err.Error(), a.ID()) {
		t.Errorf("Verify = %v, want ErrUnknownKey naming %s", err, a.ID())
	}
}
