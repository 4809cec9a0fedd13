// Package seedimg is the recovery seed's format: the entries of the slot
// container (package format/slotimg) that fills the partition recovery,
// and the sparse encoding of its data entry. The image builder (package
// builder/image) writes it; package recovery verifies it and reinstalls a
// slot or the data partition from it (docs/DESIGN.md section 5). The
// builder links this package and not recovery: writing a seed needs the
// format, not the device's procedures.
//
// # Entries
//
//	kernel             the slot kernel
//	initrd             keel's stage-2 initrd for it
//	manifest           the seed's manifest (package manifest; role seed,
//	                   compatible = the board), with the digests of kernel,
//	                   initrd and data and the root's dm-verity parameters
//	manifest.sig       its signature envelope, by the same keys as the slots
//	slot-manifest      the manifest (role slot, same board) of the slot the
//	                   seed installs: the same kernel, initrd, root, version,
//	                   security version and cmdline, no data
//	slot-manifest.sig  its signature envelope
//	root               the root file system with its dm-verity tree appended
//	                   at the manifest's hash offset: the very bytes a
//	                   root-<slot> partition gets
//	data               (optional) the empty file system a factory reset
//	                   writes to the data partition, in the sparse encoding
//	                   of EncodeData
//
// Why two manifests: a manifest is bound to its board and role (package
// manifest), so the seed's own manifest cannot be copied into a slot and
// booted, nor a slot's manifest (of any version) be passed off as a seed.
// The reinstalled slot needs a slot-role manifest signed by the release
// keys, and the device holds no signing key: the image builder signs both,
// and a reinstall writes slot-manifest and slot-manifest.sig as the slot's
// manifest and manifest.sig.
//
// # The data entry
//
// An empty file system is mostly zeros (a 32 MiB ext4 has about 75
// non-zero 4 KiB blocks, the last one 24 MiB in), so the seed keeps only
// the non-zero blocks (little-endian):
//
//	0   8      magic "KEELDATA"
//	8   4      block size (4096)
//	12  4      zero
//	16  8      file system size in bytes (a multiple of the block size)
//	24  8      n: number of blocks stored
//	32  8*n    their block numbers, strictly increasing
//	           zeros up to the next block boundary
//	           the n blocks
//
// The entry is covered by the seed's signed manifest (its digest); Decode
// still checks every field, as it reads bytes from a partition.
package seedimg
