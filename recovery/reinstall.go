package recovery

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
)

// slot is the seed as the slot writer reads it (a slotwrite.Open's
// description): the slot manifest and its signature, which become the
// slot's manifest and manifest.sig, and the kernel, initrd, root data
// blocks and dm-verity tree where they lie in the seed partition, with
// the digests VerifySeed checked (the kernel's and initrd's from the
// signed manifests, the tree's of the tree VerifySeed rebuilt). The Header
// is made here and never encoded or signed: everything it says was
// verified; it lists the parts the writer reads.
func (s *Seed) slot() *bundle.Bundle {
	m := s.SlotManifest
	h := &bundle.Header{
		Format: bundle.FormatPlain, Compatible: m.Compatible, Version: m.Version,
		SecurityVersion: m.SecurityVersion, DataBlocks: s.params.DataBlocks,
		Parts: []bundle.Part{
			{Name: bundle.PartKernel, Offset: s.Kernel.Offset, Size: s.Kernel.Size, SHA256: m.Kernel.SHA256},
			{Name: bundle.PartInitrd, Offset: s.Initrd.Offset, Size: s.Initrd.Size, SHA256: m.Initrd.SHA256},
			{Name: bundle.PartData, Offset: s.Root.Offset, Size: int64(s.params.DataBlocks) * bundle.Align},
			{Name: bundle.PartTree, Offset: s.Root.Offset + int64(s.params.HashOffset), Size: s.treeSize, SHA256: s.treeSHA256},
		},
	}
	return &bundle.Bundle{Header: h, Manifest: m, ManifestBytes: s.SlotManifestBytes, Sig: s.SlotSig,
		Params: s.params, RootHash: s.RootHash}
}

// Reinstall rewrites the slot dst from the verified seed in src (the
// recovery partition VerifySeed read) through the slot writer
// (slotwrite.Write), the one the over-the-air install uses: a fresh slot
// container with the seed's kernel and initrd and its slot manifest
// (seedimg.EntrySlotManifest and seedimg.EntrySlotSig, as the slot's
// manifest and manifest.sig) on dst.Slot, and the seed's root (data
// blocks and dm-verity tree) on dst.Root. Blocks dst.Root already holds
// are not written again (a reinstall resumed after a power cut, a slot
// that is mostly right); every block is checked against its leaf before
// it is written, and everything is read back before the container's
// header is written. The order of the writes (package slotwrite) makes it
// safe against power cuts: after a cut the slot has no valid header, or
// is the seed's content, verified; call Reinstall again to finish. A
// target too small is refused before anything is written. A seed that
// changed since VerifySeed read it fails with ErrBadSeed (the slot is
// left without a valid header). progress, if not nil, gets the writer's
// events. The Result says where the blocks came from.
func Reinstall(ctx context.Context, seed *Seed, src io.ReaderAt, dst slotwrite.Target, progress func(slotwrite.Event)) (*slotwrite.Result, error) {
	if seed == nil || !seed.verified {
		return nil, errors.New("recovery: reinstall from a seed that VerifySeed did not return")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	open := func(context.Context, bundle.Source) (*bundle.Bundle, error) { return seed.slot(), nil }
	res, err := slotwrite.Write(ctx, bundle.NewReaderAt(src, seed.size, "the recovery seed"), open,
		slotwrite.Options{Target: dst, Progress: progress})
	if errors.Is(err, bundle.ErrTampered) {
		err = fmt.Errorf("%w: the seed changed on its partition since it verified (a failing disk?): %w", ErrBadSeed, err)
	}
	if err != nil {
		return res, fmt.Errorf("recovery: reinstalling from the seed: %w", err)
	}
	return res, nil
}

// Recover verifies the seed in the recovery partition src (size bytes)
// for board and, only if it verifies, reinstalls dst from it: VerifySeed, then
// Reinstall. A seed that does not verify returns a nil Seed and an error
// wrapping ErrBadSeed, and nothing is written; otherwise the Seed is
// returned with Reinstall's error (nil when the slot is reinstalled).
func Recover(ctx context.Context, src io.ReaderAt, size int64, trusted []manifest.PublicKey, board string, dst slotwrite.Target, progress func(slotwrite.Event)) (*Seed, error) {
	seed, err := VerifySeed(src, size, trusted, board)
	if err != nil {
		return nil, err
	}
	_, err = Reinstall(ctx, seed, src, dst, progress)
	return seed, err
}
