package verity

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
)

// memDev is an in-memory hash device for Build.
type memDev struct{ b []byte }

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	if need := int(off) + len(p); need > len(m.b) {
		m.b = append(m.b, make([]byte, need-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func TestParseTree(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, blocks := range []uint64{1, 2, 127, 128, 129, 128*128 + 1} {
		for _, sb := range []bool{false, true} {
			data := make([]byte, blocks*4096)
			rng.Read(data)
			if blocks > 1 {
				copy(data[4096:8192], make([]byte, 4096)) // a zero block
			}
			p := Params{Salt: []byte("salt"), DataBlocks: blocks, HashOffset: blocks * 4096, Superblock: sb}
			dev := &memDev{}
			root, size, err := Build(bytes.NewReader(data), int64(len(data)), dev, p)
			if err != nil {
				t.Fatal(err)
			}
			tree := make([]byte, size)
			if size > 0 {
				copy(tree, dev.b[p.HashOffset:])
			}
			tr, err := ParseTree(tree, p, root)
			if err != nil {
				t.Fatalf("%d blocks, superblock %v: %v", blocks, sb, err)
			}
			x := tr.Hasher()
			for _, i := range []uint64{0, blocks / 2, blocks - 1} {
				if !tr.Check(x, i, data[i*4096:(i+1)*4096]) {
					t.Errorf("%d blocks: block %d does not check against its leaf", blocks, i)
				}
				if blocks > 1 && tr.Check(x, i, data[((i+1)%blocks)*4096:((i+1)%blocks+1)*4096]) {
					t.Errorf("%d blocks: block %d checks as block %d", blocks, (i+1)%blocks, i)
				}
			}
			bad := append([]byte(nil), root...)
			bad[0] ^= 1
			if _, err := ParseTree(tree, p, bad); blocks > 1 && !errors.Is(err, ErrTreeMismatch) {
				t.Errorf("%d blocks: another root hash: %v, want ErrTreeMismatch", blocks, err)
			}
			// Every byte of the tree (past the superblock) matters.
			start := int(p.HashStartBlock()*4096 - p.HashOffset)
			if start >= len(tree) {
				continue // one data block: no tree
			}
			for _, off := range []int{start, start + (len(tree)-start)/2, len(tree) - 1} {
				c := append([]byte(nil), tree...)
				c[off] ^= 0x80
				if _, err := ParseTree(c, p, root); !errors.Is(err, ErrTreeMismatch) {
					t.Errorf("%d blocks: tree byte %d changed: %v, want ErrTreeMismatch", blocks, off, err)
				}
			}
			if _, err := ParseTree(tree[:len(tree)-1], p, root); err == nil {
				t.Errorf("%d blocks: a truncated tree parses", blocks)
			}
		}
	}
}
