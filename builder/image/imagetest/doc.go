// Package imagetest breaks built disk images on purpose, for tests only.
//
// The image builder (package builder/image) writes good images only: what
// it reads from a spec is what a product ships. Tests that need a slot
// keel-init must refuse (a kernel that no longer matches its signed digest,
// a manifest signed by a key nobody trusts, a root file system block that
// fails dm-verity) build a normal image and then damage it with this
// package, working on the disk image file in place:
//
//   - [CorruptEntry] flips one byte in the middle of an entry (the kernel,
//     say) of the slot container in slot-<name> or of the recovery seed in
//     recovery;
//   - [CorruptRoot] flips one byte of root-<name> where a pattern first
//     occurs, under the dm-verity tree the manifest holds the root hash of;
//     [CorruptSeedRoot] does the same in the recovery seed's root entry;
//   - [Resign] replaces a container's manifest.sig by signatures of the
//     given keys only (a key rotation, an untrusted key), the manifest
//     unchanged;
//   - [UnknownKey] is a deterministic ed25519 key that no trusted-keys file
//     holds.
//
// Partitions are found by name in the image's GPT (package format/gpt), the
// containers read and written with package format/slotimg. Nothing here
// belongs in a product: production code must not import this package.
package imagetest
