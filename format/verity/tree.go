package verity

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
)

// ErrTreeMismatch is wrapped by ParseTree's errors about a tree that does
// not belong to the root hash (a changed tree, or one of other data).
var ErrTreeMismatch = errors.New("dm-verity hash tree does not match the root hash")

// Tree is a dm-verity hash tree checked against its root hash: the digest
// of every data block, in order. It is the block index of an update: each
// data block that arrives (or that is found on the device) is checked
// against its leaf before it is used, and the root hash that vouches for
// the leaves is in a signed manifest.
type Tree struct {
	p      Params
	g      geometry
	newH   func() hash.Hash
	leaves []byte // level 0 (or the root hash for a single data block)
}

// ParseTree checks tree, the TreeSize bytes Build writes at p.HashOffset
// (superblock included when p.Superblock), against rootHash: every level
// is rehashed from the one below, up to the root, and must be exactly what
// Build would have written (unused digest slots zero). It costs one hash
// per hash block (1/128 of hashing the data). p.DataBlocks must be set.
func ParseTree(tree []byte, p Params, rootHash []byte) (*Tree, error) {
	p, err := p.defaults()
	if err != nil {
		return nil, err
	}
	if p.DataBlocks == 0 {
		return nil, errors.New("verity: tree of no data blocks")
	}
	size, err := p.TreeSize()
	if err != nil {
		return nil, err
	}
	if int64(len(tree)) != size {
		return nil, fmt.Errorf("verity: the hash tree is %d bytes, %d data blocks need %d", len(tree), p.DataBlocks, size)
	}
	g := p.geometry()
	t := &Tree{p: p, g: g, newH: newHash(p.HashAlgorithm)}
	if len(rootHash) != g.digestSize {
		return nil, fmt.Errorf("verity: root hash of %d bytes, %s gives %d", len(rootHash), p.HashAlgorithm, g.digestSize)
	}
	if len(g.levelSize) == 0 {
		// A single data block: its digest is the root hash.
		t.leaves = append([]byte(nil), rootHash...)
		return t, nil
	}
	hbs := uint64(p.HashBlockSize)
	// The tree's levels as slices of tree (which starts at HashOffset).
	base := g.treeStart*hbs - p.HashOffset
	level := func(i int) []byte {
		off := base + (g.levelStart[i]-g.treeStart)*hbs
		return tree[off : off+g.levelSize[i]*hbs]
	}
	// Digests beyond the last data block's are zero.
	l0 := level(0)
	if tail := l0[p.DataBlocks*uint64(g.slot):]; !allZero(tail) {
		return nil, fmt.Errorf("%w: level 0 has data after the digest of the last of %d data blocks", ErrTreeMismatch, p.DataBlocks)
	}
	for i := 1; i < len(g.levelSize); i++ {
		want := make([]byte, g.levelSize[i]*hbs)
		hashBlocks(t.newH, p.Salt, level(i-1), int(hbs), want, g.slot)
		if got := level(i); !bytes.Equal(got, want) {
			j := 0
			for got[j] == want[j] {
				j++
			}
			return nil, fmt.Errorf("%w: level %d differs from the hashes of level %d, first at byte %d of the level", ErrTreeMismatch, i, i-1, j)
		}
	}
	h := t.newH()
	h.Write(p.Salt)
	h.Write(level(len(g.levelSize) - 1))
	if got := h.Sum(nil); subtle.ConstantTimeCompare(got, rootHash) != 1 {
		return nil, fmt.Errorf("%w: the tree's top level hashes to %x, the root hash is %x", ErrTreeMismatch, got, rootHash)
	}
	t.leaves = l0
	return t, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Blocks is the number of data blocks.
func (t *Tree) Blocks() uint64 { return t.p.DataBlocks }

// BlockSize is the data block size in bytes.
func (t *Tree) BlockSize() int { return int(t.p.DataBlockSize) }

// Leaf returns the digest of data block i (do not modify it).
func (t *Tree) Leaf(i uint64) []byte {
	if i >= t.p.DataBlocks {
		panic(fmt.Sprintf("verity: leaf %d of %d", i, t.p.DataBlocks))
	}
	if len(t.g.levelSize) == 0 {
		return t.leaves
	}
	return t.leaves[i*uint64(t.g.slot) : i*uint64(t.g.slot)+uint64(t.g.digestSize)]
}

// Hasher hashes data blocks as the tree's leaves are made:
// H(salt || block). Not safe for concurrent use; make one per goroutine.
type Hasher struct {
	h    hash.Hash
	salt []byte
	sum  []byte
}

// Hasher returns a new Hasher for the tree's parameters.
func (t *Tree) Hasher() *Hasher {
	h := t.newH()
	return &Hasher{h: h, salt: t.p.Salt, sum: make([]byte, 0, h.Size())}
}

// Sum returns the digest of block; the result is valid until the next call.
func (x *Hasher) Sum(block []byte) []byte {
	x.h.Reset()
	x.h.Write(x.salt)
	x.h.Write(block)
	x.sum = x.h.Sum(x.sum[:0])
	return x.sum
}

// Check reports whether block is data block i.
func (t *Tree) Check(x *Hasher, i uint64, block []byte) bool {
	return len(block) == int(t.p.DataBlockSize) && bytes.Equal(x.Sum(block), t.Leaf(i))
}
