package gpt

import "io/fs"

// Error is the type of the package's sentinel errors. They are constants, so
// that no caller can replace them; match them with errors.Is.
type Error string

func (e Error) Error() string { return string(e) }

// Is makes ErrPartitionNotFound match fs.ErrNotExist as well.
func (e Error) Is(target error) bool {
	return e == ErrPartitionNotFound && target == fs.ErrNotExist
}

// Sentinel errors. Errors returned by this package start with "gpt: ", wrap
// one of them and add the details (which copy and LBA, which partition, how
// many bytes).
const (
	// ErrNotGPT: no GPT header signature ("EFI PART") on the disk, or no
	// protective MBR and no primary header.
	ErrNotGPT = Error("not a GPT disk")
	// ErrTruncated: the image is smaller than its GPT header says.
	ErrTruncated = Error("truncated image")
	// ErrHeaderCRC: a GPT header fails its HeaderCRC32 check.
	ErrHeaderCRC = Error("header CRC mismatch")
	// ErrEntriesCRC: a partition entry array fails its
	// PartitionEntryArrayCRC32 check.
	ErrEntriesCRC = Error("partition entries CRC mismatch")
	// ErrBadHeader: a GPT header with a valid CRC has impossible fields.
	ErrBadHeader = Error("invalid GPT header")
	// ErrPartitionOutOfRange: a partition lies outside the usable area of
	// the disk, or ends before it starts.
	ErrPartitionOutOfRange = Error("partition outside the disk")
	// ErrOverlap: two partitions share sectors.
	ErrOverlap = Error("overlapping partitions")
	// ErrPartitionNotFound: no partition has the requested name. It also
	// matches fs.ErrNotExist.
	ErrPartitionNotFound = Error("partition not found")
	// ErrDuplicateName: two partitions have the same name.
	ErrDuplicateName = Error("duplicate partition name")
	// ErrNoSpace: the partitions do not fit on the disk.
	ErrNoSpace = Error("partitions do not fit on the disk")
	// ErrInvalidSpec: a partition to create is malformed (no name, name too
	// long, zero type GUID, ...).
	ErrInvalidSpec = Error("invalid partition spec")
)
