package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// BuildBundle writes the update bundle (package format/bundle) of the
// Spec's slot name to out: the same root file system, dm-verity tree,
// manifest and signatures Build writes into that slot, sized for the
// root-<name> partition (as the Spec's partition_mb sizes it, SizedBoard), the bundle's header signed by the Spec's
// SigningKeys. The Spec needs only that slot (others may be missing) and
// its signing keys; Out and keel's own kernel are not used. With the same
// Spec (Seed included) and inputs, the bundle has the same bytes. It
// writes format 2 (compressed); BuildBundleFormat writes either.
func BuildBundle(ctx context.Context, s Spec, name string, out io.Writer) (*bundle.Header, error) {
	return BuildBundleFormat(ctx, s, name, out, bundle.FormatChunked)
}

// BuildBundleFormat is BuildBundle writing the bundle format given:
// bundle.FormatChunked, or bundle.FormatPlain for devices whose keel reads
// only format 1.
func BuildBundleFormat(ctx context.Context, s Spec, name string, out io.Writer, format int) (*bundle.Header, error) {
	if format != bundle.FormatPlain && format != bundle.FormatChunked {
		return nil, fmt.Errorf("image: bundle: format %d: want %d or %d", format, bundle.FormatPlain, bundle.FormatChunked)
	}
	b := s.Board
	sl, ok := s.Slots[name]
	switch {
	case b.Name == "":
		return nil, errors.New("image: bundle: no board given")
	case !b.RootVerity:
		return nil, fmt.Errorf("image: bundle: board %s has no dm-verity roots: update bundles carry verity-protected roots only", b.Name)
	case !ok || sl.Empty:
		return nil, fmt.Errorf("image: bundle: the spec has no slot %q to bundle", name)
	case len(s.SigningKeys) == 0:
		return nil, errors.New("image: bundle: signing_keys: an update bundle is always signed; make a key with keel keygen")
	case (sl.Kernel == "") == (sl.KernelDir == ""):
		return nil, fmt.Errorf("image: bundle: slots.%s needs one of kernel_dir or kernel", name)
	case sl.Initrd == "" && len(s.TrustedKeys) == 0:
		return nil, fmt.Errorf("image: bundle: slots.%s has no prebuilt initrd, and building it needs trusted_keys: list the .pub files of the signing keys", name)
	case countSet(sl.RootDir, sl.RootTar, sl.RootImage) != 1:
		return nil, fmt.Errorf("image: bundle: slots.%s needs one of root_dir, root_tar, root_image", name)
	case s.Seed == "":
		return nil, errors.New("image: bundle: seed: give the spec a seed, so that the bundle's file system and verity salt are the same bytes every build (delta updates depend on it)")
	}
	// The root is sized for root-<name> as the Spec sizes it, as Build
	// sizes it (the archives get the board as it is, as Build's do).
	sized, err := s.SizedBoard()
	if err != nil {
		return nil, fmt.Errorf("image: bundle: %w", err)
	}
	rootSize, err := partitionSize(sized.Layout, layout.RootPartition(name))
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "keel-bundle-*")
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer os.RemoveAll(work)
	if s.WorkDir != "" {
		work = s.WorkDir
	}
	bl := &builder{ctx: ctx, s: &s, ids: idSource{seed: s.Seed}, work: work}
	if err := bl.slotFiles(name, &sl, map[bootimage.Kernel]string{}); err != nil {
		return nil, err
	}
	pl, err := bl.payload(name, sl, layout.RootPartition(name), rootSize, false, nil)
	if err != nil {
		return nil, err
	}
	in := bundle.Input{Plain: format == bundle.FormatPlain}
	for _, p := range pl.parts {
		switch p.Name {
		case slotimg.EntryKernel:
			in.Kernel = p.Data
		case slotimg.EntryInitrd:
			in.Initrd = p.Data
		case slotimg.EntryManifest:
			in.Manifest = p.Data
		case manifest.SigEntry:
			in.Sig = p.Data
		}
	}
	root, err := os.ReadFile(pl.root)
	if err != nil {
		return nil, fmt.Errorf("image: bundle: %w", err)
	}
	in.Root = bytes.NewReader(root)
	keys, err := bl.signers(name)
	if err != nil {
		return nil, err
	}
	return bundle.Write(out, in, keys...)
}

// partitionSize is the size in bytes of the named partition of a layout.
func partitionSize(l []boards.Partition, name string) (int64, error) {
	for _, p := range l {
		if p.Name == name {
			if p.SizeMB == 0 {
				return 0, fmt.Errorf("image: bundle: partition %s takes the rest of the disk: give it a size in the board's layout", name)
			}
			return int64(p.SizeMB) << 20, nil
		}
	}
	return 0, fmt.Errorf("image: bundle: the board's layout has no partition %s", name)
}

// BundleFromImage writes the update bundle of slot name of the disk image
// at path (as Build wrote it) to out, the header signed with keys. The
// slot's manifest and signature are taken as they are (keel bundle verify
// checks them against trusted keys). It writes format 2 (compressed);
// BundleFromImageFormat writes either.
func BundleFromImage(path, name string, keys []manifest.PrivateKey, out io.Writer) (*bundle.Header, error) {
	return BundleFromImageFormat(path, name, keys, out, bundle.FormatChunked)
}

// BundleFromImageFormat is BundleFromImage writing the bundle format
// given (bundle.FormatChunked or bundle.FormatPlain).
func BundleFromImageFormat(path, name string, keys []manifest.PrivateKey, out io.Writer, format int) (*bundle.Header, error) {
	if format != bundle.FormatPlain && format != bundle.FormatChunked {
		return nil, fmt.Errorf("image: bundle: format %d: want %d or %d", format, bundle.FormatPlain, bundle.FormatChunked)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	sp, err := tab.Find(layout.SlotPartition(name))
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	rp, err := tab.Find(layout.RootPartition(name))
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", path, err)
	}
	slot := io.NewSectionReader(f, sp.Offset(), sp.Size())
	h, err := slotimg.ReadHeader(slot, sp.Size())
	if err != nil {
		return nil, fmt.Errorf("image: %s slot %s: %w (an empty slot has nothing to bundle)", path, name, err)
	}
	in := bundle.Input{Root: io.NewSectionReader(f, rp.Offset(), rp.Size()), Plain: format == bundle.FormatPlain}
	for _, e := range []struct {
		name string
		dst  *[]byte
	}{{slotimg.EntryKernel, &in.Kernel}, {slotimg.EntryInitrd, &in.Initrd}} {
		en, err := h.Find(e.name)
		if err != nil {
			return nil, fmt.Errorf("image: %s slot %s: %w", path, name, err)
		}
		if en.Size > bundle.MaxPart {
			return nil, fmt.Errorf("image: %s slot %s: entry %s is %d bytes", path, name, e.name, en.Size)
		}
		*e.dst = make([]byte, en.Size)
		if _, err := slot.ReadAt(*e.dst, en.Offset); err != nil {
			return nil, fmt.Errorf("image: %s slot %s: reading %s: %w", path, name, e.name, err)
		}
	}
	if in.Manifest, in.Sig, err = h.ReadManifest(slot, slotimg.EntryManifest); err != nil {
		return nil, fmt.Errorf("image: %s slot %s: %w", path, name, err)
	}
	return bundle.Write(out, in, keys...)
}

// countSet is how many of vs are not empty.
func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}
