// Package slotwrite is keel's one verified slot writer: it writes a slot
// (its container on slot-<name>: kernel, initrd, manifest, manifest.sig;
// its root and dm-verity tree on root-<name>) from a verified description
// of it and a source of its bytes, in an order that is safe against a
// power cut at any moment, writing only the blocks the slot does not
// already hold, and reads everything back before the header that makes
// the slot bootable (docs/DESIGN.md sections 5 and 8).
//
// Two sources feed it. Package update installs an update bundle (package
// format/bundle) from a file, a pipe or a URL: the description is what
// bundle.Open verified (and the caller's policy allowed). Package recovery
// reinstalls a slot from the recovery seed on the partition recovery:
// the description is the seed's entries, which recovery.VerifySeed
// checked before, read through bundle.NewReaderAt. Both get the same
// crash order, the same checks and the same delta; keel-init links this
// package and not package update.
//
// # Order of a write
//
//  1. Open: read and verify the description (for a bundle: its header's
//     and manifest's signatures and board, the caller's policy; for the
//     seed: VerifySeed checked the whole seed before). Check the sizes
//     against the target's partitions. With random access (a file, a URL,
//     the seed), also read the dm-verity tree and check it against the
//     signed root hash, and plan every block (below): a static delta that
//     needs blocks the device lacks fails here.
//  2. Hash the device's blocks with the new root's salt: the target's
//     current root and the active slot's root (read only).
//  3. Options.Begin: the caller records in the boot state that the target
//     is being written. Nothing was written before this.
//  4. Zero the target's slot container header block and sync: from here
//     until step 8 the target has no valid header and cannot boot.
//  5. Write the kernel and initrd at the offsets the new header will give
//     them: copied from the active slot when it holds the same bytes,
//     else from the source, hashed as they stream.
//  6. Write every root block in order, each checked against its leaf in
//     the tree before it is written, then the tree; sync.
//  7. Write the manifest and its signature; sync. Read everything back
//     from the medium (page cache dropped) and check it: the tree rebuilt
//     from the blocks must give the signed root hash.
//  8. Write the header block; sync; read it back.
//
// The caller then records the slot's version (and puts an update on
// trial, or records a reinstalled slot good).
//
// # Where a block comes from
//
// For each block of the new root, in order (docs/DESIGN.md section 8):
// already in place on the target (nothing to do: a re-run after a cut, or
// a reinstall over a slot that is mostly right, finds most blocks there);
// the zero block; the same block written earlier in this write; the
// target's old contents elsewhere (only a block after the one being
// written, which has not been overwritten yet); the active slot's root
// (an update); and only then the source. Every local copy is re-hashed
// before it is written, and a copy that no longer matches is fetched from
// the source instead. The blocks to fetch are known before the first byte
// is fetched: the source gets one ordered list of ranges and may fetch
// several at once.
//
// # Power cuts
//
// A slot boots only with a container header whose magic and CRC check
// (slotimg.ParseHeader). Before step 4 the target is untouched; from step 4
// until step 8 it has no valid header; a cut inside step 8 leaves a header
// that is a prefix of the new one followed by zeros, whose CRC (at the end
// of the used header bytes) does not check until every header byte is
// written, and by then everything else was written, synced and read back.
// The boot state (Begin, or keel-init's record of the reinstall) already
// says the target is being written, so it is never chosen; the running
// slot boots as before, or keel-init resumes the reinstall. Running the
// write again starts over at step 1 and, finding most blocks in place,
// completes quickly and fetches almost nothing again. The faultdev tests
// of both callers cut the power at every write.
//
// # The page cache
//
// The read-back must read the medium, not the page cache the writes went
// through. After a sync, DropCache drops the range's clean cached pages:
// of an *os.File (a partition's block device, a file) with
// posix_fadvise(POSIX_FADV_DONTNEED), or through the Device's own
// CacheDropper (a partition inside a disk image file drops its range of
// the image). RangeSyncer does the same for writing back one range.
package slotwrite
