// Package update installs an update bundle (package format/bundle) into
// the inactive slot: from a file, a block device, a pipe or an HTTP(S)
// URL (package update/source), fetching only the blocks the device does
// not already have, and safe against a power or network cut at any moment
// (docs/DESIGN.md section 8).
//
// # Order of an install
//
//  1. Read and verify the bundle's header and manifest (signatures, board),
//     let the caller's Check refuse it (downgrade, anti-rollback counter),
//     check the sizes against the target's partitions. With random access
//     (a file, a URL), also read the dm-verity tree and check it against
//     the signed root hash, and plan every block (below): a static delta
//     that needs blocks the device lacks fails here.
//  2. Hash the device's blocks with the new root's salt: the target's
//     current root and the active slot's root (read only).
//  3. Options.Begin: the caller records in the boot state that the target
//     is being written. Nothing was written before this.
//  4. Zero the target's slot container header block and sync: from here
//     until step 8 the target has no valid header and cannot boot.
//  5. Write the kernel and initrd at the offsets the new header will give
//     them: copied from the active slot when it holds the same bytes,
//     else from the bundle, hashed as they stream.
//  6. Write every root block in order, each checked against its leaf in
//     the tree before it is written, then the tree; sync.
//  7. Write the manifest and its signature; sync. Read everything back
//     from the medium (page cache dropped) and check it: the tree rebuilt
//     from the blocks must give the signed root hash.
//  8. Write the header block; sync; read it back.
//
// The caller then records the slot's version and puts it on trial.
//
// # Where a block comes from
//
// For each block of the new root, in order (docs/DESIGN.md section 8): already
// in place on the target (nothing to do: a re-run after a cut finds most
// blocks there); the zero block; the same block written earlier in this
// install; the target's old contents elsewhere (only a block after the one
// being written, which has not been overwritten yet); the active slot's
// root; and only then the bundle. Every local copy is re-hashed before it
// is written, and a copy that no longer matches is fetched from the bundle
// instead. The blocks to fetch are known before the first byte is
// fetched: the source gets one ordered list of ranges and may fetch several
// at once.
//
// # Power cuts
//
// A slot boots only with a container header whose magic and CRC check.
// Before step 4 the target is untouched; from step 4 until step 8 it has
// no valid header; a cut inside step 8 leaves a header whose CRC does not
// check. The boot state (Begin) already says the target is being written,
// so it is never chosen; the active slot boots as before. Running the
// install again starts over at step 1 and, finding most blocks in place,
// completes quickly and fetches almost nothing again.
package update
