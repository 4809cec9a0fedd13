package bundle

import (
	"errors"
	"fmt"
	"io"

	"github.com/keelboot/keel/format/verity"
)

// DeltaMap decides which blocks of the root whose tree is t a static delta
// bundle must carry for a device that holds the older root old, whose tree
// is oldTree (Bundle.ReadTree of the old bundle checks it against its
// signed manifest): all but the zero block, the blocks old has (by
// content, hashed with t's salt), and blocks that repeat an earlier block
// of the new root (the installer copies those from where it wrote them).
//
// Every block of old is checked against its leaf in oldTree first, and a
// block that does not match fails the map, naming it (ErrTampered): a
// damaged or altered old bundle would otherwise make a delta that leaves
// out blocks the devices do not have (they could not install it) or
// carries blocks they have.
func DeltaMap(t *verity.Tree, old io.ReaderAt, oldTree *verity.Tree) (BlockMap, error) {
	x, ox := t.Hasher(), oldTree.Hasher()
	have := make(map[[32]byte]bool, oldTree.Blocks()+t.Blocks())
	var d [32]byte
	copy(d[:], x.Sum(make([]byte, Align)))
	have[d] = true
	buf := make([]byte, 256*Align)
	if err := eachBlock(old, oldTree.Blocks(), buf, func(i uint64, b []byte) error {
		if !oldTree.Check(ox, i, b) {
			return fmt.Errorf("%w: data block %d does not match its dm-verity leaf (in the old root)", ErrTampered, i)
		}
		copy(d[:], x.Sum(b))
		have[d] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("bundle: the old root: %w", err)
	}
	m := make(BlockMap, (t.Blocks()+7)/8)
	for i := uint64(0); i < t.Blocks(); i++ {
		copy(d[:], t.Leaf(i))
		if !have[d] {
			m.Set(i)
			have[d] = true
		}
	}
	return m, nil
}

// RootReader reads a full bundle's root as a root partition holds it: the
// data part's blocks from offset 0, the tree part at the hash offset. r
// reads the bundle file (a format-2 bundle's chunks are decompressed).
func (b *Bundle) RootReader(r io.ReaderAt) (io.ReaderAt, error) {
	if b.Header.Delta != nil {
		return nil, errors.New("bundle: a delta bundle does not hold the whole root")
	}
	if b.index != nil {
		r = readerAtView{b.View(NewReaderAt(r, b.Header.Size(), "the bundle"))}
	}
	dp, _ := b.Header.Part(PartData)
	tp, _ := b.Header.Part(PartTree)
	return &rootReader{r: r, data: dp, tree: tp, hashOff: int64(b.Params.HashOffset)}, nil
}

type rootReader struct {
	r          io.ReaderAt
	data, tree Part
	hashOff    int64
}

func (rr *rootReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for len(p) > 0 {
		var src, left int64
		switch {
		case off < rr.data.Size:
			src, left = rr.data.Offset+off, rr.data.Size-off
		case off >= rr.hashOff && off < rr.hashOff+rr.tree.Size:
			src, left = rr.tree.Offset+off-rr.hashOff, rr.hashOff+rr.tree.Size-off
		default:
			return n, io.EOF
		}
		c := min(int64(len(p)), left)
		k, err := rr.r.ReadAt(p[:c], src)
		n += k
		if int64(k) != c {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		p, off = p[c:], off+c
	}
	return n, nil
}
