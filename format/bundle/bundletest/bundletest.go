// Package bundletest makes update bundles for tests: a slot's software
// (random kernel, initrd and root blocks, with zero and repeated blocks
// like a real file system), its dm-verity tree, a signed manifest, and the
// bundle of it; and new versions that share most blocks with an old one.
package bundletest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Board is the board the test bundles are for.
const Board = "test-board"

// Slot is one slot's software.
type Slot struct {
	Version         string
	SecurityVersion uint64
	Kernel, Initrd  []byte
	// Data is the root file system (whole 4 KiB blocks); Root is Data
	// with its dm-verity tree appended (a root partition's bytes).
	Data, Root []byte
	Verity     manifest.Verity
	// Manifest and Sig: the signed slot manifest.
	Manifest, Sig []byte
}

// Keys makes a signing key and the trusted list with its public key.
func Keys(t testing.TB, comment string) (manifest.PrivateKey, []manifest.PublicKey) {
	t.Helper()
	priv, pub, err := manifest.GenerateKey(rand.New(rand.NewSource(int64(len(comment))+7)), comment)
	if err != nil {
		t.Fatal(err)
	}
	return priv, []manifest.PublicKey{pub}
}

// Salt is the verity salt the test slots share (as releases of one product
// do: the image builder derives it from the product, not the version).
var salt = sha256.Sum256([]byte("bundletest salt"))

// NewSlot makes a slot of the given number of root blocks from rng: about
// a tenth zero blocks, a tenth repeating an earlier block.
func NewSlot(t testing.TB, rng *rand.Rand, blocks int, version string, secver uint64, key manifest.PrivateKey) *Slot {
	t.Helper()
	data := make([]byte, blocks*bundle.Align)
	for i := 0; i < blocks; i++ {
		b := data[i*bundle.Align : (i+1)*bundle.Align]
		switch r := rng.Intn(10); {
		case r == 0:
			// zero
		case r == 1 && i > 0:
			copy(b, data[rng.Intn(i)*bundle.Align:])
		default:
			rng.Read(b)
		}
	}
	kernel := make([]byte, 20000+rng.Intn(9000))
	rng.Read(kernel)
	initrd := make([]byte, 10000+rng.Intn(9000))
	rng.Read(initrd)
	return Seal(t, &Slot{Version: version, SecurityVersion: secver, Kernel: kernel, Initrd: initrd, Data: data}, key)
}

// Seal computes the slot's tree, manifest and signature from its Version,
// SecurityVersion, Kernel, Initrd and Data.
func Seal(t testing.TB, s *Slot, key manifest.PrivateKey) *Slot {
	t.Helper()
	n := uint64(len(s.Data) / bundle.Align)
	p := verity.Params{Salt: salt[:], DataBlocks: n, HashOffset: n * bundle.Align}
	root := &growBuf{b: append([]byte(nil), s.Data...)}
	rh, _, err := verity.Build(bytes.NewReader(s.Data), int64(len(s.Data)), root, p)
	if err != nil {
		t.Fatal(err)
	}
	s.Root = root.b
	s.Verity = manifest.Verity{RootHash: hex.EncodeToString(rh), Salt: hex.EncodeToString(salt[:]), DataBlocks: n, HashOffset: n * bundle.Align}
	kd, _ := manifest.DigestOf(bytes.NewReader(s.Kernel))
	id, _ := manifest.DigestOf(bytes.NewReader(s.Initrd))
	v := s.Verity
	m := manifest.Manifest{Compatible: Board, Role: manifest.RoleSlot, Version: s.Version, SecurityVersion: s.SecurityVersion,
		Cmdline: "console=ttyS0", Kernel: kd, Initrd: id, Root: manifest.Root{FSType: "erofs", Verity: &v}}
	if s.Manifest, err = m.Marshal(); err != nil {
		t.Fatal(err)
	}
	if s.Sig, err = manifest.Sign(s.Manifest, nil, key); err != nil {
		t.Fatal(err)
	}
	return s
}

// Tree is the dm-verity tree of s's root, checked against its root hash
// (what Bundle.ReadTree gives for s's bundle).
func (s *Slot) Tree(t testing.TB) *verity.Tree {
	t.Helper()
	salt, err := hex.DecodeString(s.Verity.Salt)
	if err != nil {
		t.Fatal(err)
	}
	rh, err := hex.DecodeString(s.Verity.RootHash)
	if err != nil {
		t.Fatal(err)
	}
	p := verity.Params{Salt: salt, DataBlocks: s.Verity.DataBlocks, HashOffset: s.Verity.HashOffset}
	tr, err := verity.ParseTree(s.Root[s.Verity.HashOffset:], p, rh)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// Next makes a new version of s: changed blocks random blocks replaced,
// the kernel changed if newKernel.
func Next(t testing.TB, rng *rand.Rand, s *Slot, changed int, newKernel bool, version string, key manifest.PrivateKey) *Slot {
	t.Helper()
	n := &Slot{Version: version, SecurityVersion: s.SecurityVersion, Kernel: s.Kernel, Initrd: s.Initrd, Data: append([]byte(nil), s.Data...)}
	for k := 0; k < changed; k++ {
		i := rng.Intn(len(n.Data) / bundle.Align)
		rng.Read(n.Data[i*bundle.Align : (i+1)*bundle.Align])
	}
	if newKernel {
		n.Kernel = append([]byte(nil), s.Kernel...)
		rng.Read(n.Kernel[:64])
	}
	return Seal(t, n, key)
}

// Bundle writes the full bundle of s (format 2, the default chunk size).
func Bundle(t testing.TB, s *Slot, keys ...manifest.PrivateKey) []byte {
	t.Helper()
	return write(t, s, false, 0, keys)
}

// ChunkedBundle writes the full bundle of s in format 2 with chunks of
// size bytes.
func ChunkedBundle(t testing.TB, s *Slot, size int64, keys ...manifest.PrivateKey) []byte {
	t.Helper()
	return write(t, s, false, size, keys)
}

// PlainBundle writes the full bundle of s in format 1 (uncompressed).
func PlainBundle(t testing.TB, s *Slot, keys ...manifest.PrivateKey) []byte {
	t.Helper()
	return write(t, s, true, 0, keys)
}

func write(t testing.TB, s *Slot, plain bool, size int64, keys []manifest.PrivateKey) []byte {
	t.Helper()
	var b bytes.Buffer
	in := bundle.Input{Manifest: s.Manifest, Sig: s.Sig, Kernel: s.Kernel, Initrd: s.Initrd, Root: bytes.NewReader(s.Root), Plain: plain, ChunkSize: size}
	if _, err := bundle.Write(&b, in, keys...); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type growBuf struct{ b []byte }

func (g *growBuf) WriteAt(p []byte, off int64) (int, error) {
	if need := int(off) + len(p); need > len(g.b) {
		g.b = append(g.b, make([]byte, need-len(g.b))...)
	}
	return copy(g.b[off:], p), nil
}
