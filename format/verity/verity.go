// Package verity builds dm-verity hash trees in the on-disk format of
// veritysetup (cryptsetup), so that `veritysetup verify` accepts them and
// the kernel's dm-verity target can map them with the root hash alone.
//
// Format (hash type / version 1, the default of `veritysetup format`), from
// the kernel's Documentation/admin-guide/device-mapper/verity.rst
// (torvalds/linux) and cryptsetup's lib/verity/verity_hash.c:
//
//   - Every data block is hashed as H(salt || block) ("The salt is prepended
//     when hashing and each digest is padded with zeros to the power of
//     two"). The digests are stored in hash blocks, hash_block_size /
//     pow2(digest size) of them per block (128 for sha256 and 4 KiB blocks),
//     the rest of the block zero; a hash block is hashed the same way into
//     the level above, until a level fits in a single block. The root hash
//     is H(salt || that block) (with a single data block: H(salt || block)).
//   - The number of levels is the smallest L with
//     (data_blocks-1) >> (L*bits) == 0, bits = log2(digests per block)
//     (verity_hash.c hash_levels(), dm-verity-target.c verity_ctr()).
//   - Levels are stored root-most first ("the root-most level stored
//     first"): the top level at hash_start_block, then each lower level, the
//     leaves (hashes of the data blocks) last.
//   - With a superblock (veritysetup's default, lib/verity/verity.c struct
//     verity_sb, 512 bytes, little endian) at the hash offset, the tree starts
//     at the next hash block: VERITY_hash_offset_block() =
//     (hash_offset + 512 + hash_block_size - 1) / hash_block_size. The kernel
//     never reads the superblock; the table's hash_start_block points at the
//     tree.
package verity

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"runtime"
	"strings"
	"sync"
)

// Params describes a dm-verity device. The zero values of HashAlgorithm,
// DataBlockSize and HashBlockSize mean "sha256" and 4096 (veritysetup's
// defaults).
type Params struct {
	// HashAlgorithm is the kernel crypto API name: "sha256" (default),
	// "sha512" or "sha1".
	HashAlgorithm string
	// DataBlockSize and HashBlockSize in bytes: powers of two, 512 up to
	// the page size (the kernel's limit; 4096 on x86).
	DataBlockSize uint32
	HashBlockSize uint32
	// Salt is prepended to every hashed block (veritysetup uses 32 random
	// bytes); at most 256 bytes. Empty means no salt ("-" in the table).
	Salt []byte
	// DataBlocks is the number of data blocks covered. Build sets nothing
	// back: 0 there means dataSize / DataBlockSize, and Table needs the
	// real value.
	DataBlocks uint64
	// HashOffset is the byte offset on the hash device where the verity
	// area starts (the superblock if any, else the tree). Must be a multiple
	// of HashBlockSize without a superblock, of 512 with one.
	HashOffset uint64
	// Superblock writes veritysetup's superblock at HashOffset, the tree
	// after it, as `veritysetup format` does without --no-superblock.
	Superblock bool
	// UUID goes into the superblock. Zero: derived from the root hash (a
	// version 8 UUID), so the same input gives the same bytes
	// (veritysetup picks a random one; nothing checks it).
	UUID [16]byte
}

// Option is an optional dm-verity table parameter (verity.rst
// "Optional parameters").
type Option string

// Optional parameters of the verity target.
const (
	IgnoreCorruption    Option = "ignore_corruption"
	RestartOnCorruption Option = "restart_on_corruption"
	PanicOnCorruption   Option = "panic_on_corruption"
	IgnoreZeroBlocks    Option = "ignore_zero_blocks"
	CheckAtMostOnce     Option = "check_at_most_once"
)

const (
	superblockSize = 512 // sizeof(struct verity_sb)
	maxSaltSize    = 256 // verity_sb.salt
	hashType       = 1   // version 1 ("normal"), salt prepended
)

// defaults fills the zero values and checks the parameters that do not
// depend on the data.
func (p Params) defaults() (Params, error) {
	if p.HashAlgorithm == "" {
		p.HashAlgorithm = "sha256"
	}
	if p.DataBlockSize == 0 {
		p.DataBlockSize = 4096
	}
	if p.HashBlockSize == 0 {
		p.HashBlockSize = 4096
	}
	if newHash(p.HashAlgorithm) == nil {
		return p, fmt.Errorf("verity: unsupported hash algorithm %q (sha256, sha512, sha1)", p.HashAlgorithm)
	}
	for _, bs := range []uint32{p.DataBlockSize, p.HashBlockSize} {
		if bs < 512 || bs > 1<<16 || bs&(bs-1) != 0 {
			return p, fmt.Errorf("verity: block size %d is not a power of two in [512, 65536]", bs)
		}
	}
	if len(p.Salt) > maxSaltSize {
		return p, fmt.Errorf("verity: salt is %d bytes, at most %d", len(p.Salt), maxSaltSize)
	}
	if p.Superblock {
		if p.HashOffset%512 != 0 {
			return p, fmt.Errorf("verity: hash offset %d is not a multiple of 512 (superblock)", p.HashOffset)
		}
	} else if p.HashOffset%uint64(p.HashBlockSize) != 0 {
		return p, fmt.Errorf("verity: hash offset %d is not a multiple of the hash block size %d", p.HashOffset, p.HashBlockSize)
	}
	return p, nil
}

func newHash(name string) func() hash.Hash {
	switch name {
	case "sha256":
		return sha256.New
	case "sha512":
		return sha512.New
	case "sha1":
		return sha1.New
	}
	return nil
}

// geometry is the shape of the tree (verity_hash.c hash_levels()).
type geometry struct {
	digestSize int      // digest size of the algorithm
	slot       int      // digest padded to a power of two (version 1)
	perBits    uint     // log2(digests per hash block)
	levelSize  []uint64 // hash blocks of level i, 0 = leaves
	levelStart []uint64 // first hash block of level i on the hash device
	treeStart  uint64   // first hash block of the tree (top level)
	blocks     uint64   // hash blocks in the tree
}

func (p Params) geometry() geometry {
	var g geometry
	g.digestSize = newHash(p.HashAlgorithm)().Size()
	g.slot = 1 << bits.Len(uint(g.digestSize-1)) // next power of two
	g.perBits = uint(bits.Len32(p.HashBlockSize/uint32(g.slot)) - 1)
	g.treeStart = p.HashStartBlock()
	levels := 0
	if p.DataBlocks > 0 {
		for g.perBits*uint(levels) < 64 && (p.DataBlocks-1)>>(g.perBits*uint(levels)) != 0 {
			levels++
		}
	}
	g.levelSize = make([]uint64, levels)
	g.levelStart = make([]uint64, levels)
	pos := g.treeStart
	for i := levels - 1; i >= 0; i-- {
		shift := uint(i+1) * g.perBits
		var n uint64
		if shift >= 64 {
			n = 1
		} else {
			n = (p.DataBlocks + (1 << shift) - 1) >> shift
		}
		g.levelSize[i] = n
		g.levelStart[i] = pos
		pos += n
	}
	g.blocks = pos - g.treeStart
	return g
}

// HashStartBlock is the table's hash_start_block: where the tree starts on
// the hash device, in hash blocks, after the superblock if any
// (cryptsetup VERITY_hash_offset_block()). It assumes valid parameters.
func (p Params) HashStartBlock() uint64 {
	hbs := uint64(p.HashBlockSize)
	if hbs == 0 {
		hbs = 4096
	}
	if !p.Superblock {
		return p.HashOffset / hbs
	}
	return (p.HashOffset + superblockSize + hbs - 1) / hbs
}

// TreeSize is the number of bytes Build writes from HashOffset on (the
// superblock and its padding if any, then the tree) for p.DataBlocks data
// blocks: what to reserve on the hash device.
func (p Params) TreeSize() (int64, error) {
	p, err := p.defaults()
	if err != nil {
		return 0, err
	}
	g := p.geometry()
	end := (g.treeStart + g.blocks) * uint64(p.HashBlockSize)
	return int64(end - p.HashOffset), nil
}

// Build hashes DataBlocks blocks of data (dataSize bytes must cover them)
// and writes the hash tree, and the superblock if p.Superblock, to hash at
// p.HashOffset. It returns the root hash and the number of bytes written
// from HashOffset (TreeSize). data and hash may be the same file (the tree
// after the data): all data is read before anything is written.
func Build(data io.ReaderAt, dataSize int64, hash io.WriterAt, p Params) (rootHash []byte, treeSize int64, err error) {
	p, err = p.defaults()
	if err != nil {
		return nil, 0, err
	}
	dbs := int64(p.DataBlockSize)
	if dataSize < 0 {
		return nil, 0, fmt.Errorf("verity: negative data size %d", dataSize)
	}
	if p.DataBlocks == 0 {
		if dataSize%dbs != 0 {
			return nil, 0, fmt.Errorf("verity: data size %d is not a multiple of the data block size %d (pad it, or set DataBlocks)", dataSize, dbs)
		}
		p.DataBlocks = uint64(dataSize / dbs)
	}
	if p.DataBlocks == 0 {
		return nil, 0, errors.New("verity: no data blocks")
	}
	if p.DataBlocks > uint64(dataSize/dbs) {
		return nil, 0, fmt.Errorf("verity: %d data blocks of %d bytes need %d bytes, the data has %d", p.DataBlocks, dbs, p.DataBlocks*uint64(dbs), dataSize)
	}
	g := p.geometry()
	hbs := int(p.HashBlockSize)
	newH := newHash(p.HashAlgorithm)

	if len(g.levelSize) == 0 { // a single data block: the root is its hash
		block := make([]byte, dbs)
		if err := readFull(data, block, 0); err != nil {
			return nil, 0, err
		}
		h := newH()
		h.Write(p.Salt)
		h.Write(block)
		rootHash = h.Sum(nil)
	} else {
		// Level 0: the data blocks' digests, in parallel.
		level := make([]byte, g.levelSize[0]*uint64(hbs))
		if err := hashData(data, p, g, newH, level); err != nil {
			return nil, 0, err
		}
		levels := [][]byte{level}
		for i := 1; i < len(g.levelSize); i++ {
			up := make([]byte, g.levelSize[i]*uint64(hbs))
			hashBlocks(newH, p.Salt, levels[i-1], hbs, up, g.slot)
			levels = append(levels, up)
		}
		top := levels[len(levels)-1]
		h := newH()
		h.Write(p.Salt)
		h.Write(top)
		rootHash = h.Sum(nil)
		for i, l := range levels {
			if _, err := hash.WriteAt(l, int64(g.levelStart[i]*uint64(hbs))); err != nil {
				return nil, 0, fmt.Errorf("verity: writing level %d: %w", i, err)
			}
		}
	}
	if p.Superblock {
		// The superblock, zero up to the tree.
		sb := make([]byte, g.treeStart*uint64(hbs)-p.HashOffset)
		copy(sb, p.superblock(rootHash))
		if _, err := hash.WriteAt(sb, int64(p.HashOffset)); err != nil {
			return nil, 0, fmt.Errorf("verity: writing the superblock: %w", err)
		}
	}
	return rootHash, int64((g.treeStart+g.blocks)*uint64(hbs) - p.HashOffset), nil
}

// hashData computes the digests of the data blocks into level (slot bytes
// each, contiguous: a hash block holds exactly 2^perBits slots).
func hashData(data io.ReaderAt, p Params, g geometry, newH func() hash.Hash, level []byte) error {
	dbs := uint64(p.DataBlockSize)
	const chunkBytes = 1 << 20
	per := uint64(chunkBytes) / dbs
	if per == 0 {
		per = 1
	}
	chunks := (p.DataBlocks + per - 1) / per
	workers := runtime.GOMAXPROCS(0)
	if uint64(workers) > chunks {
		workers = int(chunks)
	}
	next := make(chan uint64)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, per*dbs)
			h := newH()
			sum := make([]byte, 0, h.Size())
			for c := range next {
				first := c * per
				n := min(per, p.DataBlocks-first)
				b := buf[:n*dbs]
				if err := readFull(data, b, int64(first*dbs)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				for i := uint64(0); i < n; i++ {
					h.Reset()
					h.Write(p.Salt)
					h.Write(b[i*dbs : (i+1)*dbs])
					sum = h.Sum(sum[:0])
					copy(level[(first+i)*uint64(g.slot):], sum)
				}
			}
		}()
	}
	for c := uint64(0); c < chunks; c++ {
		next <- c
	}
	close(next)
	wg.Wait()
	return firstErr
}

// hashBlocks hashes every hbs-byte block of below into a slot of up.
func hashBlocks(newH func() hash.Hash, salt, below []byte, hbs int, up []byte, slot int) {
	h := newH()
	sum := make([]byte, 0, h.Size())
	for i := 0; i*hbs < len(below); i++ {
		h.Reset()
		h.Write(salt)
		h.Write(below[i*hbs : (i+1)*hbs])
		sum = h.Sum(sum[:0])
		copy(up[i*slot:], sum)
	}
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("verity: reading data at %d: %w", off, err)
}

// superblock encodes cryptsetup's struct verity_sb (lib/verity/verity.c,
// packed, little endian):
//
//	0   signature[8]     "verity\0\0"
//	8   version          1
//	12  hash_type        1 (0 = Chrome OS)
//	16  uuid[16]
//	32  algorithm[32]    lower case, NUL padded
//	64  data_block_size
//	68  hash_block_size
//	72  data_blocks      u64
//	80  salt_size        u16
//	82  _pad1[6]
//	88  salt[256]
//	344 _pad2[168]       -> 512 bytes
func (p Params) superblock(rootHash []byte) []byte {
	b := make([]byte, superblockSize)
	copy(b[0:8], "verity\x00\x00")
	binary.LittleEndian.PutUint32(b[8:], 1)
	binary.LittleEndian.PutUint32(b[12:], hashType)
	uuid := p.UUID
	if uuid == ([16]byte{}) {
		s := sha256.Sum256(append([]byte("keel verity uuid\x00"), rootHash...))
		copy(uuid[:], s[:16])
		uuid[6] = uuid[6]&0x0f | 0x80 // version 8 (RFC 9562, custom)
		uuid[8] = uuid[8]&0x3f | 0x80 // variant 10
	}
	copy(b[16:32], uuid[:])
	copy(b[32:63], strings.ToLower(p.HashAlgorithm))
	binary.LittleEndian.PutUint32(b[64:], p.DataBlockSize)
	binary.LittleEndian.PutUint32(b[68:], p.HashBlockSize)
	binary.LittleEndian.PutUint64(b[72:], p.DataBlocks)
	binary.LittleEndian.PutUint16(b[80:], uint16(len(p.Salt)))
	copy(b[88:88+maxSaltSize], p.Salt)
	return b
}

// Table returns the device-mapper table line of the verity target
// (verity.rst "Construction Parameters"):
//
//	0 <sectors> verity 1 <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//	  <num_data_blocks> <hash_start_block> <algorithm> <root_hash> <salt> [<#opts> <opts>...]
//
// sectors is DataBlocks*DataBlockSize/512; hash_start_block points at the
// tree (after the superblock if any); an empty salt is "-". The devices
// are paths or major:minor.
func Table(dataDev, hashDev string, p Params, rootHash []byte, opts ...Option) string {
	sectors, params := TargetParams(dataDev, hashDev, p, rootHash, opts...)
	return fmt.Sprintf("0 %d verity %s", sectors, params)
}

// TargetParams is Table split for a device-mapper target (dm.Target): its
// length in 512-byte sectors and its params string (everything after
// "verity").
func TargetParams(dataDev, hashDev string, p Params, rootHash []byte, opts ...Option) (sectors uint64, params string) {
	p, _ = p.defaults() // formatting only; Build validates
	salt := "-"
	if len(p.Salt) > 0 {
		salt = hex.EncodeToString(p.Salt)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s %s %d %d %d %d %s %s %s",
		hashType, dataDev, hashDev,
		p.DataBlockSize, p.HashBlockSize, p.DataBlocks, p.HashStartBlock(),
		p.HashAlgorithm, hex.EncodeToString(rootHash), salt)
	if len(opts) > 0 {
		fmt.Fprintf(&b, " %d", len(opts))
		for _, o := range opts {
			b.WriteString(" " + string(o))
		}
	}
	return p.DataBlocks * uint64(p.DataBlockSize) / 512, b.String()
}
