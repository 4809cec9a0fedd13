package recovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"testing"

	"github.com/keelboot/keel/format/seedimg"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
)

// seedOpts shapes a synthetic seed.
type seedOpts struct {
	kernel, initrd int   // bytes
	rootBlocks     int64 // 4 KiB data blocks of the root
	data           bool  // with a data entry
	version        string
	signer         *manifest.PrivateKey // nil: the fixture's key
	unsigned       bool
	// edit, if set, changes the seed's manifest m and the slot manifest sm
	// before they are encoded and signed.
	edit func(m, sm *manifest.Manifest)
	// noSlotManifest leaves out the slot manifest and its signatures.
	noSlotManifest bool
}

// testBoard is the board the fixtures' manifests are for.
const testBoard = "qemu-x86_64-uefi"

// seedFix is a seed made in memory: random kernel, initrd and root blocks
// (verity does not care what file system they hold), a signed manifest.
type seedFix struct {
	kernel, initrd, root  []byte // root: data + verity tree, the entry
	dataImg               []byte // the decoded data file system
	data                  []byte // the data entry
	manifest, sig         []byte // the seed's (role seed)
	slotManifest, slotSig []byte // the slot's it installs (role slot)
	m, sm                 *manifest.Manifest
	img                   []byte // the seed partition
	trusted               []manifest.PublicKey
	key                   manifest.PrivateKey
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

var testKey, testPub = func() (manifest.PrivateKey, manifest.PublicKey) {
	k, p, err := manifest.GenerateKey(rand.Reader, "test")
	if err != nil {
		panic(err)
	}
	return k, p
}()

func makeSeed(t testing.TB, o seedOpts) *seedFix {
	t.Helper()
	if o.version == "" {
		o.version = "1.0"
	}
	fx := &seedFix{key: testKey, trusted: []manifest.PublicKey{testPub}}
	fx.kernel = random(t, o.kernel)
	fx.initrd = random(t, o.initrd)
	data := random(t, int(o.rootBlocks)*4096)
	p := verity.Params{Salt: random(t, 32), DataBlocks: uint64(o.rootBlocks), HashOffset: uint64(len(data))}
	treeSize, err := p.TreeSize()
	if err != nil {
		t.Fatal(err)
	}
	fx.root = append(data, make([]byte, treeSize)...)
	w := &memWriter{b: fx.root}
	rootHash, _, err := verity.Build(bytes.NewReader(data), int64(len(data)), w, p)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := manifest.DigestOf(bytes.NewReader(fx.kernel))
	id, _ := manifest.DigestOf(bytes.NewReader(fx.initrd))
	fx.m = &manifest.Manifest{
		Compatible: testBoard, Role: manifest.RoleSeed,
		Version: o.version, SecurityVersion: 3, Cmdline: "console=ttyS0",
		Kernel: kd, Initrd: id,
		Root: manifest.Root{FSType: "erofs", Verity: &manifest.Verity{
			RootHash: hex.EncodeToString(rootHash), Salt: hex.EncodeToString(p.Salt),
			DataBlocks: p.DataBlocks, HashOffset: p.HashOffset,
		}},
	}
	if o.data {
		fx.dataImg = make([]byte, 64*4096)
		for _, blk := range []int{0, 5, 6, 40, 63} {
			copy(fx.dataImg[blk*4096:], random(t, 4096))
		}
		copy(fx.dataImg[9*4096+100:], "a little")
		var b bytes.Buffer
		if err := seedimg.EncodeData(&b, fx.dataImg); err != nil {
			t.Fatal(err)
		}
		fx.data = b.Bytes()
		d, _ := manifest.DigestOf(bytes.NewReader(fx.data))
		fx.m.Data = &d
	}
	sm := *fx.m
	sm.Role, sm.Data = manifest.RoleSlot, nil
	fx.sm = &sm
	if o.edit != nil {
		o.edit(fx.m, fx.sm)
	}
	if fx.manifest, err = fx.m.Marshal(); err != nil {
		t.Fatal(err)
	}
	if fx.slotManifest, err = fx.sm.Marshal(); err != nil {
		t.Fatal(err)
	}
	signer := fx.key
	if o.signer != nil {
		signer = *o.signer
	}
	parts := []slotimg.Part{
		{Name: slotimg.EntryKernel, Data: fx.kernel},
		{Name: slotimg.EntryInitrd, Data: fx.initrd},
		{Name: slotimg.EntryManifest, Data: fx.manifest},
	}
	if !o.unsigned {
		if fx.sig, err = manifest.Sign(fx.manifest, nil, signer); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, slotimg.Part{Name: manifest.SigEntry, Data: fx.sig})
	}
	if !o.noSlotManifest {
		parts = append(parts, slotimg.Part{Name: seedimg.EntrySlotManifest, Data: fx.slotManifest})
		if !o.unsigned {
			if fx.slotSig, err = manifest.Sign(fx.slotManifest, nil, signer); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, slotimg.Part{Name: seedimg.EntrySlotSig, Data: fx.slotSig})
		}
	}
	parts = append(parts, slotimg.Part{Name: slotimg.EntryRoot, Data: fx.root})
	if o.data {
		parts = append(parts, slotimg.Part{Name: slotimg.EntryData, Data: fx.data})
	}
	var b bytes.Buffer
	if _, err := slotimg.Write(&b, parts); err != nil {
		t.Fatal(err)
	}
	fx.img = append(b.Bytes(), make([]byte, 64<<10)...) // the partition is larger
	return fx
}

// entry returns the offset of a seed entry.
func (fx *seedFix) entry(t testing.TB, name string) slotimg.Entry {
	t.Helper()
	h, err := slotimg.ReadHeader(bytes.NewReader(fx.img), int64(len(fx.img)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// checkSlot verifies an installed slot as keel-init and stage 2 would:
// the header, the manifest's signature (a slot's, for testBoard), kernel
// and initrd digests, and the root through dm-verity (root hash and stored
// tree). It returns the manifest bytes.
func checkSlot(slot io.ReaderAt, slotSize int64, root io.ReaderAt, trusted []manifest.PublicKey) ([]byte, error) {
	h, err := slotimg.ReadHeader(slot, slotSize)
	if err != nil {
		return nil, err
	}
	mb, sig, err := h.ReadManifest(slot, slotimg.EntryManifest)
	if err != nil {
		return nil, err
	}
	m, err := manifest.VerifyFor(mb, sig, trusted, manifest.Expect{Compatible: testBoard, Role: manifest.RoleSlot})
	if err != nil {
		return nil, err
	}
	for name, want := range map[string]manifest.Digest{slotimg.EntryKernel: m.Kernel, slotimg.EntryInitrd: m.Initrd} {
		s, err := h.Section(slot, name)
		if err != nil {
			return nil, err
		}
		if err := manifest.Check(name, s, want); err != nil {
			return nil, err
		}
	}
	s := &Seed{Manifest: m, Root: slotimg.Entry{Size: int64(m.Root.Verity.HashOffset)}}
	if err := s.setVerity(); err != nil {
		// setVerity wants the whole entry size: compute it.
		n, _ := s.params.TreeSize()
		s.Root.Size += n
		if err := s.setVerity(); err != nil {
			return nil, err
		}
	}
	if err := s.checkRoot(root, "the slot's root"); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	return mb, nil
}

// reinstall is Reinstall without progress.
func reinstall(ctx context.Context, seed *Seed, src io.ReaderAt, dst slotwrite.Target) error {
	_, err := Reinstall(ctx, seed, src, dst, nil)
	return err
}
