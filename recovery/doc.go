// Package recovery is keel's network-free recovery: the seed on the
// partition recovery, its verification, the reinstall of a slot from it
// (through the slot writer, package slotwrite) and the factory reset
// (docs/DESIGN.md section 5).
//
// # The seed
//
// The seed is one slot container (package format/slotimg) filling the
// recovery partition, written by the image builder (package builder/image, the
// Spec's "recovery"). Its entries (kernel, initrd, the seed's manifest and
// the slot manifest it installs with their signatures, root, and the
// optional data file system) and the data entry's encoding are package
// format/seedimg's. It stays a slot container rather than an update bundle:
// docs/DESIGN.md section 5 says why.
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
// Reinstall writes a slot from a verified seed through the verified slot
// writer (package slotwrite), the one the over-the-air install uses: the
// seed is the writer's second source, read through bundle.NewReaderAt and
// described to the writer as the parts VerifySeed checked (the slot
// manifest and its signature, which become the slot's manifest and
// manifest.sig; the kernel, initrd, root data blocks and dm-verity tree
// where they lie in the seed). So a reinstall has the install's crash
// order, checks and delta: the slot's header is zeroed and synced first
// (from then on the slot cannot boot), every root block is checked against
// its dm-verity leaf before it is written, and a block the slot's root
// already holds is not written again (a reinstall resumed after a power
// cut, a slot that is mostly right); everything is synced and read back
// from the medium, and the header is written last and read back. After
// any cut the slot either verifies as the seed's content or has no valid
// header; running Reinstall again (keel-init does, as the boot record
// says which slot is being reinstalled) completes it. The power-cut
// argument is package slotwrite's; the faultdev tests here cut the power
// at hundreds of points of a reinstall.
//
// A seed that changes between VerifySeed and Reinstall (a failing disk)
// is caught as the writer checks what it reads (ErrBadSeed; the slot is
// left without a valid header). VerifySeed reads the whole seed before the
// first write, so that a bad seed writes nothing: the slot recovery
// rewrites may be a good one (recovery asked for while every slot is
// good), and a seed that fails half-way would leave it unbootable.
//
// WipeData (factory reset) writes the seed's empty data file system over
// the whole data partition: block 0 (the ext4 superblock) is zeroed first
// and written last, so a cut leaves no mountable half-wiped file system.
package recovery
