package gpt

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// Constants of the on-disk format, UEFI 2.10 sections 5.2.3, 5.3.2, 5.3.3.
const (
	signature      = "EFI PART" // EFI_PTAB_HEADER_ID, 5.3.2
	revision       = 0x00010000 // GPT revision 1.0, 5.3.2
	headerSize     = 92         // bytes of the header covered by HeaderCRC32, 5.3.2
	entrySize      = 128        // SizeOfPartitionEntry that Create writes, 5.3.2
	entryCount     = 128        // NumberOfPartitionEntries that Create writes
	nameUnits      = 36         // UTF-16 code units of PartitionName, 5.3.3 table 5.6
	pmbrOSType     = 0xEE       // GPT protective partition, 5.2.3 table 5.4
	alignment      = 1 << 20    // partition alignment Create uses
	maxEntryBytes  = 4 << 20    // largest entry array Read accepts (128 entries use 16 KiB)
	minEntrySpace  = 16384      // bytes reserved for an entry array, 5.3.2
	mbrSignature0  = 0x55       // MBR signature at byte 510, 5.2.1 table 5.1
	mbrSignature1  = 0xAA       // ... and byte 511
	mbrPartitions  = 446        // offset of the four MBR partition records, 5.2.1
	mbrRecordSize  = 16         // size of an MBR partition record, 5.2.1
	minSectorCount = 6          // MBR, header, entries, one usable sector, backup entries, backup header
)

// header is a GPT header, UEFI 2.10 section 5.3.2 table 5.5. Offsets:
//
//	0  Signature[8]            8  Revision          12 HeaderSize
//	16 HeaderCRC32             20 Reserved          24 MyLBA
//	32 AlternateLBA            40 FirstUsableLBA    48 LastUsableLBA
//	56 DiskGUID[16]            72 PartitionEntryLBA 80 NumberOfPartitionEntries
//	84 SizeOfPartitionEntry    88 PartitionEntryArrayCRC32
type header struct {
	revision     uint32
	size         uint32
	crc          uint32
	myLBA        uint64
	alternateLBA uint64
	firstUsable  uint64
	lastUsable   uint64
	diskGUID     GUID
	entriesLBA   uint64
	entryCount   uint32
	entrySize    uint32
	entriesCRC   uint32
}

// parseHeader decodes the fixed fields of a header sector. It does not
// validate anything.
func parseHeader(b []byte) header {
	var h header
	h.revision = binary.LittleEndian.Uint32(b[8:])
	h.size = binary.LittleEndian.Uint32(b[12:])
	h.crc = binary.LittleEndian.Uint32(b[16:])
	h.myLBA = binary.LittleEndian.Uint64(b[24:])
	h.alternateLBA = binary.LittleEndian.Uint64(b[32:])
	h.firstUsable = binary.LittleEndian.Uint64(b[40:])
	h.lastUsable = binary.LittleEndian.Uint64(b[48:])
	copy(h.diskGUID[:], b[56:72])
	h.entriesLBA = binary.LittleEndian.Uint64(b[72:])
	h.entryCount = binary.LittleEndian.Uint32(b[80:])
	h.entrySize = binary.LittleEndian.Uint32(b[84:])
	h.entriesCRC = binary.LittleEndian.Uint32(b[88:])
	return h
}

// headerCRC computes HeaderCRC32: the CRC32 of the first size bytes of the
// header with the HeaderCRC32 field taken as zero (5.3.2).
func headerCRC(b []byte, size uint32) uint32 {
	c := crc32.NewIEEE()
	c.Write(b[:16])
	c.Write([]byte{0, 0, 0, 0})
	c.Write(b[20:size])
	return c.Sum32()
}

// marshal encodes h into a whole sector (zero-padded, 5.3.2: the rest of the
// block is reserved and must be zero) and fills in HeaderCRC32.
func (h header) marshal(sectorSize int) []byte {
	b := make([]byte, sectorSize)
	copy(b, signature)
	binary.LittleEndian.PutUint32(b[8:], revision)
	binary.LittleEndian.PutUint32(b[12:], headerSize)
	binary.LittleEndian.PutUint64(b[24:], h.myLBA)
	binary.LittleEndian.PutUint64(b[32:], h.alternateLBA)
	binary.LittleEndian.PutUint64(b[40:], h.firstUsable)
	binary.LittleEndian.PutUint64(b[48:], h.lastUsable)
	copy(b[56:72], h.diskGUID[:])
	binary.LittleEndian.PutUint64(b[72:], h.entriesLBA)
	binary.LittleEndian.PutUint32(b[80:], h.entryCount)
	binary.LittleEndian.PutUint32(b[84:], h.entrySize)
	binary.LittleEndian.PutUint32(b[88:], h.entriesCRC)
	binary.LittleEndian.PutUint32(b[16:], headerCRC(b, headerSize))
	return b
}

// Partition entry, UEFI 2.10 section 5.3.3 table 5.6. Offsets:
//
//	0  PartitionTypeGUID[16]   16 UniquePartitionGUID[16]
//	32 StartingLBA             40 EndingLBA
//	48 Attributes              56 PartitionName[72] (36 UTF-16LE code units)
func parseEntry(b []byte) Partition {
	var p Partition
	copy(p.Type[:], b[0:16])
	copy(p.UUID[:], b[16:32])
	p.FirstLBA = binary.LittleEndian.Uint64(b[32:])
	p.LastLBA = binary.LittleEndian.Uint64(b[40:])
	p.Attributes = binary.LittleEndian.Uint64(b[48:])
	p.Name = decodeName(b[56:128])
	return p
}

func marshalEntry(b []byte, p Partition) {
	copy(b[0:16], p.Type[:])
	copy(b[16:32], p.UUID[:])
	binary.LittleEndian.PutUint64(b[32:], p.FirstLBA)
	binary.LittleEndian.PutUint64(b[40:], p.LastLBA)
	binary.LittleEndian.PutUint64(b[48:], p.Attributes)
	units := encodeName(p.Name)
	for i, u := range units {
		binary.LittleEndian.PutUint16(b[56+2*i:], u)
	}
}

// decodeName decodes a PartitionName: UTF-16LE, ending at the first NUL
// code unit or after 36 units. Unpaired surrogates become U+FFFD.
func decodeName(b []byte) string {
	units := make([]uint16, 0, nameUnits)
	for i := 0; i+1 < len(b) && len(units) < nameUnits; i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}

// encodeName encodes name as UTF-16 code units (invalid UTF-8 becomes
// U+FFFD). The caller checks the length.
func encodeName(name string) []uint16 {
	return utf16.Encode([]rune(name))
}

// protectiveMBR builds LBA 0, the protective MBR of UEFI 2.10 section 5.2.3
// (table 5.3, and table 5.4 for the one partition record).
func protectiveMBR(sectorSize int, lastLBA uint64) []byte {
	b := make([]byte, sectorSize)
	r := b[mbrPartitions : mbrPartitions+mbrRecordSize]
	r[0] = 0x00                             // BootIndicator: not bootable
	copy(r[1:4], []byte{0, 2, 0})           // StartingCHS 0x000200 (head 0, sector 2, cylinder 0)
	r[4] = pmbrOSType                       // OSType
	copy(r[5:8], chs(lastLBA))              // EndingCHS: CHS of the last block, or 0xFFFFFF
	binary.LittleEndian.PutUint32(r[8:], 1) // StartingLBA: the GPT header
	size := lastLBA                         // SizeInLBA: the disk less LBA 0 ...
	if size > 0xFFFFFFFF {
		size = 0xFFFFFFFF // ... or 0xFFFFFFFF if that does not fit
	}
	binary.LittleEndian.PutUint32(r[12:], uint32(size))
	b[510], b[511] = mbrSignature0, mbrSignature1
	return b
}

// chs encodes lba as an MBR cylinder-head-sector triple for the customary
// geometry of 255 heads and 63 sectors per track, or 0xFFFFFF when it does
// not fit (5.2.3: "Set to 0xFFFFFF if it is not possible to represent the
// value in this field").
func chs(lba uint64) []byte {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	if c > 1023 {
		return []byte{0xFF, 0xFF, 0xFF}
	}
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// mbrKind says what LBA 0 holds: a protective MBR (a record of type 0xEE), a
// legacy MBR (signature but no 0xEE record), or nothing recognisable.
type mbrKind int

const (
	mbrNone mbrKind = iota
	mbrLegacy
	mbrProtective
)

func classifyMBR(b []byte) mbrKind {
	if len(b) < 512 || b[510] != mbrSignature0 || b[511] != mbrSignature1 {
		return mbrNone
	}
	for i := 0; i < 4; i++ {
		if b[mbrPartitions+i*mbrRecordSize+4] == pmbrOSType {
			return mbrProtective
		}
	}
	return mbrLegacy
}
