package imagetest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// CorruptEntry flips every bit of one byte in the middle of the entry
// named entry (slotimg.EntryKernel, say) of the slot container in the
// partition named partition of the disk image img: slot-<name>, or recovery
// for the recovery seed (the same container format). The manifest and its
// signatures stay as they are, so the entry no longer matches its signed
// digest.
func CorruptEntry(img, partition, entry string) (err error) {
	f, p, err := open(img, partition)
	if err != nil {
		return err
	}
	defer closeFile(f, &err)
	h, err := container(f, p)
	if err != nil {
		return err
	}
	e, err := h.Find(entry)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, partition, err)
	}
	if e.Size == 0 {
		return fmt.Errorf("imagetest: %s partition %s: entry %s is empty: no byte to flip", img, partition, entry)
	}
	return flip(f, p, e.Offset+e.Size/2)
}

// CorruptRoot flips every bit of the first byte of the first occurrence of
// pattern in the partition root-<slot> of the disk image img: a byte of the
// root file system, under the dm-verity tree the image builder appended, so
// that reading that block through dm-verity fails. Pick a pattern that
// occurs in the file system only (the content of a file, say). It is an
// error if the pattern does not occur.
func CorruptRoot(img, slot string, pattern []byte) (err error) {
	f, p, err := open(img, layout.RootPartition(slot))
	if err != nil {
		return err
	}
	defer closeFile(f, &err)
	off, err := index(p.Section(f), pattern)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, p.Name, err)
	}
	if off < 0 {
		return fmt.Errorf("imagetest: %s partition %s: %q does not occur", img, p.Name, pattern)
	}
	return flip(f, p, off)
}

// CorruptSeedRoot is CorruptRoot for the recovery seed: it flips the first
// byte of the first occurrence of pattern in the root entry (the root file
// system with its dm-verity tree) of the seed in the partition recovery.
func CorruptSeedRoot(img string, pattern []byte) (err error) {
	f, p, err := open(img, layout.Recovery)
	if err != nil {
		return err
	}
	defer closeFile(f, &err)
	h, err := container(f, p)
	if err != nil {
		return err
	}
	e, err := h.Find(slotimg.EntryRoot)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, p.Name, err)
	}
	off, err := index(io.NewSectionReader(p.Section(f), e.Offset, e.Size), pattern)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, p.Name, err)
	}
	if off < 0 {
		return fmt.Errorf("imagetest: %s partition %s: %q does not occur in the seed's root", img, p.Name, pattern)
	}
	return flip(f, p, e.Offset+off)
}

// Resign replaces the manifest.sig entry (manifest.SigEntry) of the slot
// container in the partition named partition of the disk image img by a
// signature envelope of the manifest entry by exactly keys (at least one):
// the signatures that were there are gone, and a container without one
// gets one. The manifest and the other entries keep their bytes. When the
// new envelope moves the entries after it (it takes more or fewer 4 KiB
// blocks than the old one), the whole container is rewritten; it must
// still fit the partition. In the recovery seed only the seed's own
// manifest is re-signed; its slot-manifest keeps its signatures (a seed
// with either manifest signed by an unknown key is refused).
func Resign(img, partition string, keys ...manifest.PrivateKey) (err error) {
	if len(keys) == 0 {
		return fmt.Errorf("imagetest: resign %s partition %s: no key given", img, partition)
	}
	f, p, err := open(img, partition)
	if err != nil {
		return err
	}
	defer closeFile(f, &err)
	h, err := container(f, p)
	if err != nil {
		return err
	}
	r := p.Section(f)
	read := func(e slotimg.Entry) ([]byte, error) {
		b := make([]byte, e.Size)
		if _, err := r.ReadAt(b, e.Offset); err != nil {
			return nil, fmt.Errorf("imagetest: %s partition %s: reading entry %s: %w", img, partition, e.Name, err)
		}
		return b, nil
	}
	mb, _, err := h.ReadManifest(r, slotimg.EntryManifest)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, partition, err)
	}
	sig, err := manifest.Sign(mb, nil, keys...)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, partition, err)
	}

	// The new entries: the same, in the same order, with manifest.sig of
	// the new size (appended when there was none).
	ents := make([]slotimg.Entry, 0, len(h.Entries)+1)
	found := false
	var oldEnd int64
	for _, e := range h.Entries {
		oldEnd = max(oldEnd, alignUp(e.Offset+e.Size))
		if e.Name == manifest.SigEntry {
			e.Size, found = int64(len(sig)), true
		}
		ents = append(ents, e)
	}
	if !found {
		ents = append(ents, slotimg.Entry{Name: manifest.SigEntry, Size: int64(len(sig))})
	}
	hdr, placed, err := slotimg.Layout(ents)
	if err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", img, partition, err)
	}
	var newEnd int64
	moved := false
	for i, e := range placed {
		newEnd = max(newEnd, alignUp(e.Offset+e.Size))
		if e.Name != manifest.SigEntry && e.Offset != ents[i].Offset {
			moved = true
		}
	}
	if newEnd > p.Size() {
		return fmt.Errorf("imagetest: %s partition %s: the re-signed container needs %d bytes, the partition has %d", img, partition, newEnd, p.Size())
	}
	w := p.SectionWriter(f)
	if moved {
		// Read every entry before writing: old and new places overlap.
		parts := make([]slotimg.Part, len(h.Entries), len(placed))
		for i, e := range h.Entries {
			parts[i].Name = e.Name
			if e.Name == manifest.SigEntry {
				parts[i].Data = sig
			} else if parts[i].Data, err = read(e); err != nil {
				return err
			}
		}
		if !found {
			parts = append(parts, slotimg.Part{Name: manifest.SigEntry, Data: sig})
		}
		var buf bytes.Buffer
		if _, err := slotimg.Write(&buf, parts); err != nil {
			return fmt.Errorf("imagetest: %s partition %s: %w", img, partition, err)
		}
		if _, err := w.WriteAt(buf.Bytes(), 0); err != nil {
			return fmt.Errorf("imagetest: %s: %w", img, err)
		}
	} else {
		// Only the header and manifest.sig change.
		for _, e := range placed {
			if e.Name != manifest.SigEntry {
				continue
			}
			padded := make([]byte, alignUp(e.Size))
			copy(padded, sig)
			if _, err := w.WriteAt(padded, e.Offset); err != nil {
				return fmt.Errorf("imagetest: %s: %w", img, err)
			}
		}
		if _, err := w.WriteAt(hdr, 0); err != nil {
			return fmt.Errorf("imagetest: %s: %w", img, err)
		}
	}
	// A smaller container leaves no stale bytes behind it.
	if oldEnd > newEnd {
		if _, err := w.WriteAt(make([]byte, oldEnd-newEnd), newEnd); err != nil {
			return fmt.Errorf("imagetest: %s: %w", img, err)
		}
	}
	return nil
}

// UnknownKey returns an ed25519 key derived from seed, so that a test image
// stays reproducible, and that no trusted-keys file holds: a manifest
// re-signed with it (Resign) is refused with manifest.ErrUnknownKey. Its
// comment is "unknown key (test)".
func UnknownKey(seed string) manifest.PrivateKey {
	s := sha256.Sum256([]byte("keel image unknown key\x00" + seed))
	return manifest.PrivateKey{Key: ed25519.NewKeyFromSeed(s[:]), Comment: "unknown key (test)"}
}

// open opens the disk image img for reading and writing and finds the
// partition named name in its GPT.
func open(img, name string) (*os.File, gpt.Partition, error) {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return nil, gpt.Partition{}, fmt.Errorf("imagetest: %w", err)
	}
	tab, err := gpt.ReadFile(f)
	if err != nil {
		f.Close()
		return nil, gpt.Partition{}, fmt.Errorf("imagetest: %w", err)
	}
	p, err := tab.Find(name)
	if err != nil {
		f.Close()
		return nil, gpt.Partition{}, fmt.Errorf("imagetest: %s: %w", img, err)
	}
	return f, p, nil
}

// closeFile closes f and reports its error in *err unless there is one.
func closeFile(f *os.File, err *error) {
	if cerr := f.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("imagetest: %w", cerr)
	}
}

// container reads the header of the slot container in partition p.
func container(f *os.File, p gpt.Partition) (*slotimg.Header, error) {
	h, err := slotimg.ReadHeader(p.Section(f), p.Size())
	if err != nil {
		return nil, fmt.Errorf("imagetest: %s partition %s: %w", f.Name(), p.Name, err)
	}
	return h, nil
}

// flip inverts the byte at offset off of partition p.
func flip(f *os.File, p gpt.Partition, off int64) error {
	var b [1]byte
	if _, err := p.Section(f).ReadAt(b[:], off); err != nil {
		return fmt.Errorf("imagetest: %s partition %s: %w", f.Name(), p.Name, err)
	}
	b[0] ^= 0xff
	if _, err := p.SectionWriter(f).WriteAt(b[:], off); err != nil {
		return fmt.Errorf("imagetest: %s: %w", f.Name(), err)
	}
	return nil
}

// chunk is how much of a partition index reads at a time.
const chunk = 1 << 20

// index returns the offset of the first occurrence of pattern in r, or -1.
// It reads chunk bytes at a time (plus the pattern's length less one, so
// that an occurrence across two chunks is found).
func index(r *io.SectionReader, pattern []byte) (int64, error) {
	if len(pattern) == 0 {
		return -1, errors.New("empty pattern")
	}
	buf := make([]byte, chunk+len(pattern)-1)
	for off := int64(0); off < r.Size(); off += chunk {
		n, err := r.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return -1, err
		}
		if i := bytes.Index(buf[:n], pattern); i >= 0 {
			return off + int64(i), nil
		}
	}
	return -1, nil
}

func alignUp(n int64) int64 { return (n + slotimg.Align - 1) / slotimg.Align * slotimg.Align }
