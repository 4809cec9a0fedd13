package gpt

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Partition is one used entry of the partition entry array (UEFI 2.10
// section 5.3.3).
type Partition struct {
	// Index is the 1-based position of the entry in the partition entry
	// array: the number sgdisk and the kernel (sdaN) use.
	Index int
	// Name is the entry's PartitionName, decoded from UTF-16LE.
	Name string
	// Type is PartitionTypeGUID; UUID is UniquePartitionGUID.
	Type, UUID GUID
	// FirstLBA and LastLBA are StartingLBA and EndingLBA, both inclusive.
	FirstLBA, LastLBA uint64
	// Attributes holds the attribute bits (bit 0 required, bit 1 no block IO
	// protocol, bit 2 legacy BIOS bootable, bits 48-63 type specific; the
	// DPS uses bit 60 read-only, 63 no-auto, 59 grow-fs).
	Attributes uint64

	// sectorSize is the disk's logical sector size when it is not 512
	// (0 means 512), so that Offset and Size are right on 4Kn disks while a
	// Partition literal for a 512-byte disk still compares equal.
	sectorSize int
}

func (p Partition) ss() int64 {
	if p.sectorSize == 0 {
		return 512
	}
	return int64(p.sectorSize)
}

// Offset returns the byte offset of the partition's first sector. Offset and
// Size use the sector size of the disk the partition was read from or created
// on; for a Partition literal, 512.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * p.ss() }

// Size returns the partition's size in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * p.ss() }

// Sectors returns the number of sectors the partition spans.
func (p Partition) Sectors() uint64 { return p.LastLBA - p.FirstLBA + 1 }

// Section returns a reader of the partition's bytes within the whole disk r
// (an *os.File of the disk or image, for example).
func (p Partition) Section(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, p.Offset(), p.Size())
}

// SectionWriter returns a writer confined to the partition's bytes within the
// whole disk w: a write that would cross the partition's end writes nothing
// and fails, so it can never damage the next partition or the backup GPT.
func (p Partition) SectionWriter(w io.WriterAt) *SectionWriter {
	return &SectionWriter{w: w, name: p.Name, base: p.Offset(), size: p.Size()}
}

// String describes the partition for messages and logs.
func (p Partition) String() string {
	return fmt.Sprintf("partition %d %q (type %v, LBA %d-%d)", p.Index, p.Name, p.Type, p.FirstLBA, p.LastLBA)
}

// SectionWriter writes into one partition of a disk; see
// Partition.SectionWriter. It implements io.Writer, io.WriterAt and io.Seeker.
type SectionWriter struct {
	w    io.WriterAt
	name string
	base int64
	size int64
	off  int64
}

// Size returns the partition's size in bytes.
func (s *SectionWriter) Size() int64 { return s.size }

// WriteAt writes b at offset off from the start of the partition.
func (s *SectionWriter) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off > s.size || int64(len(b)) > s.size-off {
		return 0, fmt.Errorf("gpt: write of %d bytes at offset %d past the end of partition %q (%d bytes): %w",
			len(b), off, s.name, s.size, io.ErrShortWrite)
	}
	return s.w.WriteAt(b, s.base+off)
}

// Write writes b at the current offset and advances it.
func (s *SectionWriter) Write(b []byte) (int, error) {
	n, err := s.WriteAt(b, s.off)
	s.off += int64(n)
	return n, err
}

// Seek sets the offset of the next Write, relative to the partition.
func (s *SectionWriter) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("gpt: SectionWriter.Seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("gpt: SectionWriter.Seek: negative position")
	}
	s.off = offset
	return offset, nil
}

// Table is a GUID Partition Table: the fields of the GPT header (UEFI 2.10
// section 5.3.2) that matter and the used partition entries.
type Table struct {
	// SectorSize is the logical block size in bytes: 512 or 4096.
	SectorSize int
	// DiskGUID identifies the disk.
	DiskGUID GUID
	// FirstUsableLBA and LastUsableLBA bound the area partitions may use
	// (inclusive).
	FirstUsableLBA, LastUsableLBA uint64
	// BackupLBA is the LBA of the backup header: the last LBA of the disk
	// when the table was made (AlternateLBA of the primary header).
	BackupLBA uint64
	// EntryCount and EntrySize describe the partition entry arrays
	// (NumberOfPartitionEntries, SizeOfPartitionEntry): 128 and 128 for
	// tables made by Create.
	EntryCount, EntrySize uint32
	// Partitions are the used entries (non-zero type GUID), in entry order.
	Partitions []Partition

	// FromBackup is set when Read found the primary header or its entries
	// unusable and used the backup copy; Warnings then says why.
	FromBackup bool
	// Warnings lists problems Read tolerated: a damaged copy of the table,
	// a missing protective MBR, a backup header not at the last LBA.
	// Each wraps a sentinel error where one applies.
	Warnings []error
}

// Find returns the partition whose GPT name is exactly name. The error wraps
// ErrPartitionNotFound (which matches fs.ErrNotExist too) and lists the names
// that exist; two partitions with that name are an error (ErrDuplicateName),
// since picking one of them could boot the wrong slot.
func (t *Table) Find(name string) (Partition, error) {
	var found []Partition
	for _, p := range t.Partitions {
		if p.Name == name {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Partition{}, fmt.Errorf("gpt: %w: %q (%s)", ErrPartitionNotFound, name, t.describeNames())
	default:
		idx := make([]string, len(found))
		for i, p := range found {
			idx[i] = strconv.Itoa(p.Index)
		}
		return Partition{}, fmt.Errorf("gpt: %w: %d partitions are named %q (numbers %s)",
			ErrDuplicateName, len(found), name, strings.Join(idx, ", "))
	}
}

func (t *Table) describeNames() string {
	if len(t.Partitions) == 0 {
		return "the disk has no partitions"
	}
	names := make([]string, len(t.Partitions))
	for i, p := range t.Partitions {
		names[i] = strconv.Quote(p.Name)
	}
	return "the disk has " + strings.Join(names, ", ")
}
