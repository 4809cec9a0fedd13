package seedimg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Entries of the seed besides slotimg's: the manifest (role slot) and its
// signature envelope (named with slotimg.SigSuffix, as
// slotimg.Header.ReadManifest reads them) that a reinstall writes into the
// slot as the slot's manifest and manifest.sig. The seed's own manifest (slotimg.EntryManifest,
// role seed) can never boot a slot: keel-init accepts only a slot's.
const (
	EntrySlotManifest = "slot-manifest"
	EntrySlotSig      = "slot-manifest.sig"
)

// BlockSize is the data entry's block size.
const BlockSize = 4096

const dataMagic = "KEELDATA"

// EncodeData writes the sparse encoding of the file system image img (a
// multiple of 4 KiB) to w.
func EncodeData(w io.Writer, img []byte) error {
	if len(img) == 0 || len(img)%BlockSize != 0 {
		return fmt.Errorf("seedimg: data image of %d bytes: want a non-zero multiple of %d", len(img), BlockSize)
	}
	var idx []uint64
	zero := make([]byte, BlockSize)
	for i := 0; i < len(img); i += BlockSize {
		if !bytes.Equal(img[i:i+BlockSize], zero) {
			idx = append(idx, uint64(i/BlockSize))
		}
	}
	hdr := make([]byte, alignBlock(32+8*int64(len(idx))))
	copy(hdr, dataMagic)
	binary.LittleEndian.PutUint32(hdr[8:], BlockSize)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(len(img)))
	binary.LittleEndian.PutUint64(hdr[24:], uint64(len(idx)))
	for i, b := range idx {
		binary.LittleEndian.PutUint64(hdr[32+8*i:], b)
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, b := range idx {
		if _, err := w.Write(img[b*BlockSize : (b+1)*BlockSize]); err != nil {
			return err
		}
	}
	return nil
}

func alignBlock(n int64) int64 { return (n + BlockSize - 1) / BlockSize * BlockSize }

// Data is a decoded data entry: a file system of Size bytes whose
// non-zero blocks are the blocks numbered Index, in order; every other
// block is zeros.
type Data struct {
	Size  int64
	Index []uint64
	// Blocks holds the blocks of Index, BlockSize bytes each.
	Blocks []byte
}

// Block returns the i-th stored block (the file system's block Index[i]).
func (d *Data) Block(i int) []byte { return d.Blocks[i*BlockSize : (i+1)*BlockSize] }

// DecodeData parses a data entry (it aliases b). The error says which
// field is wrong.
func DecodeData(b []byte) (*Data, error) {
	if len(b) < 32 || string(b[:8]) != dataMagic {
		return nil, errors.New("no KEELDATA magic")
	}
	if bs := binary.LittleEndian.Uint32(b[8:]); bs != BlockSize {
		return nil, fmt.Errorf("block size %d, want %d", bs, BlockSize)
	}
	size := binary.LittleEndian.Uint64(b[16:])
	n := binary.LittleEndian.Uint64(b[24:])
	if size == 0 || size%BlockSize != 0 || size > 1<<50 || n > size/BlockSize {
		return nil, fmt.Errorf("file system size %d with %d blocks", size, n)
	}
	start := alignBlock(32 + 8*int64(n))
	if int64(len(b)) != start+int64(n)*BlockSize {
		return nil, fmt.Errorf("%d bytes, %d blocks need %d", len(b), n, start+int64(n)*BlockSize)
	}
	d := &Data{Size: int64(size), Index: make([]uint64, n), Blocks: b[start:]}
	for i := range d.Index {
		d.Index[i] = binary.LittleEndian.Uint64(b[32+8*i:])
		if d.Index[i] >= size/BlockSize || i > 0 && d.Index[i] <= d.Index[i-1] {
			return nil, fmt.Errorf("block number %d at position %d out of order or range", d.Index[i], i)
		}
	}
	return d, nil
}
