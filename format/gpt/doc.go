// Package gpt reads and writes GUID Partition Tables (GPT) as defined by the
// UEFI Specification 2.10, chapter 5 ("GUID Partition Table (GPT) Disk
// Layout"). It uses only the standard library.
//
// A GPT disk is laid out as follows (UEFI 2.10 section 5.3.1):
//
//	LBA 0            protective MBR (section 5.2.3): one partition of type 0xEE
//	LBA 1            primary GPT header (section 5.3.2)
//	LBA 2 ..         primary partition entry array (section 5.3.3)
//	FirstUsableLBA .. LastUsableLBA   partitions
//	.. LBA N-2       backup partition entry array
//	LBA N-1          backup GPT header (the last LBA of the disk)
//
// [Read] validates the protective MBR, both CRC32s of the header it uses (the
// header's own and the entry array's) and that every partition lies inside the
// disk. When the primary copy is damaged it falls back to the backup header at
// the last LBA and records why in [Table.Warnings] and [Table.FromBackup].
// Logical sector sizes of 512 and 4096 bytes are recognised.
//
// [Create] lays out a new disk: a protective MBR, primary and backup headers,
// 128 partition entries of 128 bytes each, partitions aligned to 1 MiB, names
// stored as UTF-16LE. Tables it writes pass `sgdisk -v`.
//
// keel finds partitions by their GPT name ([Table.Find]), never by number.
// Type GUIDs follow the Discoverable Partitions Specification where one fits;
// see [TypeEFISystem] and the other Type functions.
//
// GUIDs are kept in a [GUID] exactly as they are stored on disk: the first
// three fields little-endian, the last eight bytes as they are (UEFI 2.10
// appendix A). [GUID.String] and [ParseGUID] use the canonical text form
// (C12A7328-F81F-11D2-BA4B-00A0C93EC93B).
//
// Errors name the problem and wrap one of the sentinel errors ([ErrNotGPT],
// [ErrTruncated], [ErrHeaderCRC], [ErrEntriesCRC], [ErrBadHeader],
// [ErrPartitionOutOfRange], [ErrOverlap], [ErrPartitionNotFound],
// [ErrDuplicateName], [ErrNoSpace], [ErrInvalidSpec]) for errors.Is.
// [ErrPartitionNotFound] also matches fs.ErrNotExist.
package gpt
