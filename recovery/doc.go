// Package recovery is keel's network-free recovery: the seed on the
// partition recovery, its verification, and the reinstall of a slot from
// it (docs/DESIGN.md section 5).
//
// # The seed
//
// The seed is one slot container (package format/slotimg) filling the
// recovery partition, written by the image builder (package builder/image, the
// Spec's "recovery"). Its entries (kernel, initrd, the seed's manifest and
// the slot manifest it installs with their signatures, root, and the
// optional data file system) and the data entry's encoding are package
// format/seedimg's.
//
// # Verification
//
// VerifySeed checks the signatures first (nothing of the seed is parsed
// before): the seed's manifest must be a seed's for the device's board, the
// slot manifest a slot's for the same board describing the same kernel,
// initrd and root. Then the kernel and initrd digests, then the root: it rebuilds
// the dm-verity tree over the root's data blocks, compares the root hash
// with the signed one and the rebuilt tree with the stored tree (the
// kernel reads the stored one after the reinstall), and finally the data
// entry's digest. Every failure wraps ErrBadSeed and names what is wrong.
//
// # Reinstall and power cuts
//
// Reinstall writes a slot from a verified seed, in this order:
//
//  1. zero the slot container's header block (4 KiB at offset 0 of
//     slot-<name>) and sync: from now on the slot has no valid header;
//  2. stream the root entry to root-<name> in 1 MiB chunks;
//  3. stream kernel and initrd and write the slot manifest and its
//     signatures (as manifest and manifest.sig) at the offsets the new
//     header will give them; sync both partitions;
//  4. read everything back from the targets and verify it (digests of
//     kernel and initrd, manifest bytes, dm-verity root hash and tree of
//     the root);
//  5. write the new header block and sync; read it back.
//
// Power-cut argument: a slot is bootable only with a header whose magic
// and CRC-32 check (slotimg.ParseHeader). Before step 1 completes the old
// slot is untouched (old header, old body, old root: consistent). After
// step 1 the header is zero until step 5, so a cut in steps 2-4 leaves a
// slot that keel-init rejects as "not a keel slot image", never the old
// manifest over a half-new root. A cut inside step 5 leaves a header that
// is a prefix of the new one followed by zeros: its CRC (at the end of the
// used header bytes) does not match until every header byte is written,
// and by then the body and root were written, synced and verified. So after
// any cut the slot either verifies as the seed's content or has no valid
// header; running Reinstall again (keel-init does, as the state says which
// slot is being reinstalled) completes it. The faultdev tests cut the
// power at thousands of points to check this.
//
// WipeData (factory reset) writes the seed's empty data file system over
// the whole data partition: block 0 (the ext4 superblock) is zeroed first
// and written last, so a cut leaves no mountable half-wiped file system.
package recovery
