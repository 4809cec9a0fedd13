// Package slotimg is the container keel keeps in a slot's boot partition
// (GPT name slot-<name>) and in the recovery seed: a small header that
// lists named entries (kernel, initrd, manifest, ...) and the entries
// themselves, each 4 KiB aligned. keel-init reads the kernel and initrd by
// offset: no filesystem driver sees unverified data.
//
// Layout (all integers little-endian):
//
//	offset 0    8 bytes  magic "KEELSLOT"
//	       8    4        format version (1)
//	       12   4        entry count n (1..MaxEntries)
//	       16   n*48     entries: name [24]byte (NUL padded), offset u64, size u64
//	       16+48n  4     CRC-32 (IEEE) of bytes [0, 16+48n)
//	(header padded with zeros to HeaderSize)
//	entries at their offsets, each a multiple of Align
//
// Entries may not overlap, must lie inside the partition, and names are
// unique, 1-23 characters of [a-z0-9._-].
package slotimg
