package recovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/keelboot/keel/manifest"
)

// The data entry's sparse encoding (little-endian): an empty file system
// is mostly zeros (a 32 MiB ext4 has about 75 non-zero 4 KiB blocks, the
// last one 24 MiB in), so the seed keeps only the non-zero blocks.
//
//	0   8      magic "KEELDATA"
//	8   4      block size (4096)
//	12  4      zero
//	16  8      file system size in bytes (a multiple of the block size)
//	24  8      n: number of blocks stored
//	32  8*n    their block numbers, strictly increasing
//	           zeros up to the next block boundary
//	           the n blocks
const (
	dataMagic = "KEELDATA"
	dataBlock = 4096
)

// EncodeData writes the sparse encoding of the file system image img (a
// multiple of 4 KiB) to w.
func EncodeData(w io.Writer, img []byte) error {
	if len(img) == 0 || len(img)%dataBlock != 0 {
		return fmt.Errorf("recovery: data image of %d bytes: want a non-zero multiple of %d", len(img), dataBlock)
	}
	var idx []uint64
	for i := 0; i < len(img); i += dataBlock {
		if !allZero(img[i : i+dataBlock]) {
			idx = append(idx, uint64(i/dataBlock))
		}
	}
	hdr := make([]byte, alignBlock(32+8*int64(len(idx))))
	copy(hdr, dataMagic)
	binary.LittleEndian.PutUint32(hdr[8:], dataBlock)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(len(img)))
	binary.LittleEndian.PutUint64(hdr[24:], uint64(len(idx)))
	for i, b := range idx {
		binary.LittleEndian.PutUint64(hdr[32+8*i:], b)
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, b := range idx {
		if _, err := w.Write(img[b*dataBlock : (b+1)*dataBlock]); err != nil {
			return err
		}
	}
	return nil
}

func alignBlock(n int64) int64 { return (n + dataBlock - 1) / dataBlock * dataBlock }

// dataImage is a decoded data entry.
type dataImage struct {
	size   int64
	index  []uint64
	blocks []byte
}

func (d *dataImage) block(i int) []byte { return d.blocks[i*dataBlock : (i+1)*dataBlock] }

func decodeData(b []byte) (*dataImage, error) {
	if len(b) < 32 || string(b[:8]) != dataMagic {
		return nil, errors.New("no KEELDATA magic")
	}
	if bs := binary.LittleEndian.Uint32(b[8:]); bs != dataBlock {
		return nil, fmt.Errorf("block size %d, want %d", bs, dataBlock)
	}
	size := binary.LittleEndian.Uint64(b[16:])
	n := binary.LittleEndian.Uint64(b[24:])
	if size == 0 || size%dataBlock != 0 || size > 1<<50 || n > size/dataBlock {
		return nil, fmt.Errorf("file system size %d with %d blocks", size, n)
	}
	start := alignBlock(32 + 8*int64(n))
	if int64(len(b)) != start+int64(n)*dataBlock {
		return nil, fmt.Errorf("%d bytes, %d blocks need %d", len(b), n, start+int64(n)*dataBlock)
	}
	d := &dataImage{size: int64(size), index: make([]uint64, n), blocks: b[start:]}
	for i := range d.index {
		d.index[i] = binary.LittleEndian.Uint64(b[32+8*i:])
		if d.index[i] >= size/dataBlock || i > 0 && d.index[i] <= d.index[i-1] {
			return nil, fmt.Errorf("block number %d at position %d out of order or range", d.index[i], i)
		}
	}
	return d, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// WipeData is the factory reset of the data partition dst (size bytes):
// it writes the seed's empty data file system (its data entry, read again
// from src and checked against the signed manifest before anything is
// written) over the whole partition, zeros everywhere the file system has
// none, so no user data survives. Order: block 0 (which holds the ext4
// superblock) is zeroed and synced first, then the rest of the partition
// is written, synced and the file system's blocks read back and checked,
// then block 0 is written last: a cut leaves a partition with no
// superblock (run WipeData again), never a half-wiped file system that
// mounts. progress may be nil.
func WipeData(ctx context.Context, seed *Seed, src io.ReaderAt, dst Device, size int64, progress Progress) error {
	if seed == nil || !seed.verified {
		return errors.New("recovery: wipe from a seed that VerifySeed did not return")
	}
	if seed.Data == nil {
		return errors.New("recovery: the seed has no data entry: it cannot re-create the data file system")
	}
	if seed.Data.Size > maxData {
		return bad("the data entry is %d bytes, at most %d", seed.Data.Size, maxData)
	}
	raw := make([]byte, seed.Data.Size)
	if _, err := src.ReadAt(raw, seed.Data.Offset); err != nil {
		return fmt.Errorf("recovery: reading the seed's data entry: %w", err)
	}
	if err := manifest.Check("seed data", bytes.NewReader(raw), *seed.Manifest.Data); err != nil {
		return bad("%v", err)
	}
	d, err := decodeData(raw)
	if err != nil {
		return bad("the data entry: %v", err)
	}
	if d.size > size {
		return fmt.Errorf("recovery: the seed's data file system is %d bytes, the data partition has %d", d.size, size)
	}
	p := newProgress(ctx, progress, size+int64(len(d.blocks)))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	zero := make([]byte, dataBlock)
	if _, err := dst.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("recovery: clearing the data superblock: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("recovery: syncing the data partition: %w", err)
	}
	// Everything after block 0: the file system's blocks where it has
	// them, zeros elsewhere, a chunk at a time.
	buf := make([]byte, ChunkSize)
	next := 0 // position in d.index
	if next < len(d.index) && d.index[next] == 0 {
		next++
	}
	for off := int64(dataBlock); off < size; {
		c := min(int64(len(buf)), size-off)
		b := buf[:c]
		clear(b)
		for next < len(d.index) && int64(d.index[next])*dataBlock < off+c {
			at := int64(d.index[next])*dataBlock - off
			copy(b[at:], d.block(next))
			next++
		}
		if _, err := dst.WriteAt(b, off); err != nil {
			return fmt.Errorf("recovery: writing the data partition at %d: %w", off, err)
		}
		off += c
		if err := p.add(c); err != nil {
			return err
		}
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("recovery: syncing the data partition: %w", err)
	}
	dropCache(dst)
	got := make([]byte, dataBlock)
	for i, blk := range d.index {
		if blk == 0 {
			continue
		}
		if _, err := dst.ReadAt(got, int64(blk)*dataBlock); err != nil {
			return fmt.Errorf("recovery: reading back the data partition: %w", err)
		}
		if !bytes.Equal(got, d.block(i)) {
			return fmt.Errorf("recovery: data partition block %d read back differs from what was written", blk)
		}
		if err := p.add(dataBlock); err != nil {
			return err
		}
	}
	first := zero
	if len(d.index) > 0 && d.index[0] == 0 {
		first = d.block(0)
	}
	if _, err := dst.WriteAt(first, 0); err != nil {
		return fmt.Errorf("recovery: writing the data superblock: %w", err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("recovery: syncing the data partition: %w", err)
	}
	if _, err := dst.ReadAt(got, 0); err != nil || !bytes.Equal(got, first) {
		return fmt.Errorf("recovery: data partition block 0 read back differs from what was written (%v)", err)
	}
	p.finish()
	return nil
}
