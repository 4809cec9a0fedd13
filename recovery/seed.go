package recovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/keelboot/keel/format/seedimg"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Error is a sentinel error of this package; test with errors.Is.
type Error string

func (e Error) Error() string { return string(e) }

// ErrBadSeed wraps every reason VerifySeed refuses a seed (keel-init
// halts on it: nothing was written), and a reinstall that finds the seed
// changed since it verified.
const ErrBadSeed Error = "recovery seed does not verify"

// maxData bounds the data entry, read into memory.
const maxData = 256 << 20

// Seed is a verified recovery seed: what VerifySeed checked, and where
// the entries lie in the seed partition.
type Seed struct {
	// Manifest is the seed's verified manifest (role seed); ManifestBytes
	// and Sig its exact bytes and signature envelope.
	Manifest      *manifest.Manifest
	ManifestBytes []byte
	Sig           []byte
	// SlotManifest is the verified manifest (role slot) of the slot the
	// seed reinstalls, which describes the same kernel, initrd and root;
	// SlotManifestBytes and SlotSig, its exact bytes and signature
	// envelope, become the reinstalled slot's manifest and manifest.sig.
	SlotManifest      *manifest.Manifest
	SlotManifestBytes []byte
	SlotSig           []byte
	// Kernel, Initrd and Root are the entries in the seed partition; Data
	// is nil when the seed has no data entry.
	Kernel, Initrd, Root slotimg.Entry
	Data                 *slotimg.Entry
	// RootHash is the root's dm-verity root hash (from the manifest).
	RootHash []byte

	params     verity.Params
	treeSize   int64
	treeSHA256 string // of the stored tree, which VerifySeed compared with the rebuilt one
	size       int64  // of the seed partition
	verified   bool
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSeed, fmt.Sprintf(format, args...))
}

// VerifySeed reads and verifies the seed in r (the recovery partition, size
// bytes) against the trusted keys, for the named board (boards.Board.Name;
// manifest.AnyBoard only in host tools that do not know it): the signature
// of the seed's manifest first, which must be a seed's (role seed) for
// board, then that of the slot manifest it installs, which must be a
// slot's for board and describe the same kernel, initrd, root, version,
// security version and command line; then the kernel and initrd digests,
// then the root through its dm-verity tree (tree rebuilt from the data
// blocks: root hash and stored tree must match), then the data entry if
// any. It writes nothing. The error wraps ErrBadSeed (and, for a manifest
// of another board or role, manifest.ErrWrongBoard or ErrWrongRole) and
// says what does not verify.
func VerifySeed(r io.ReaderAt, size int64, trusted []manifest.PublicKey, board string) (*Seed, error) {
	if board == "" {
		return nil, errors.New("recovery: no board to verify the seed for")
	}
	h, err := slotimg.ReadHeader(r, size)
	if err != nil {
		return nil, bad("%v", err)
	}
	s := &Seed{size: size}
	if s.ManifestBytes, s.Sig, err = readSigned(r, h, slotimg.EntryManifest); err != nil {
		return nil, err
	}
	m, err := manifest.VerifyFor(s.ManifestBytes, s.Sig, trusted, manifest.Expect{Compatible: board, Role: manifest.RoleSeed})
	if err != nil {
		return nil, badWrap(err, "the seed's manifest")
	}
	s.Manifest = m
	if s.SlotManifestBytes, s.SlotSig, err = readSigned(r, h, seedimg.EntrySlotManifest); err != nil {
		return nil, err
	}
	sm, err := manifest.VerifyFor(s.SlotManifestBytes, s.SlotSig, trusted, manifest.Expect{Compatible: board, Role: manifest.RoleSlot})
	if err != nil {
		return nil, badWrap(err, seedimg.EntrySlotManifest)
	}
	if what := slotDiffers(m, sm); what != "" {
		return nil, bad("the %s (role slot) and the seed's manifest differ in %s: both must describe the seed's kernel, initrd and root", seedimg.EntrySlotManifest, what)
	}
	s.SlotManifest = sm
	for _, e := range []struct {
		name string
		ent  *slotimg.Entry
		want manifest.Digest
	}{{slotimg.EntryKernel, &s.Kernel, m.Kernel}, {slotimg.EntryInitrd, &s.Initrd, m.Initrd}} {
		if *e.ent, err = h.Find(e.name); err != nil {
			return nil, bad("%v", err)
		}
		if err := manifest.Check("seed "+e.name, io.NewSectionReader(r, e.ent.Offset, e.ent.Size), e.want); err != nil {
			return nil, bad("%v", err)
		}
	}

	if s.Root, err = h.Find(slotimg.EntryRoot); err != nil {
		return nil, bad("%v", err)
	}
	if err := s.setVerity(); err != nil {
		return nil, err
	}
	if err := s.checkRoot(io.NewSectionReader(r, s.Root.Offset, s.Root.Size), "the seed's root entry"); err != nil {
		return nil, err
	}

	d, derr := h.Find(slotimg.EntryData)
	switch {
	case derr == nil && m.Data == nil:
		return nil, bad("the seed has a data entry that its signed manifest does not cover")
	case derr != nil && m.Data != nil:
		return nil, bad("the manifest lists a data file system, the seed has no data entry")
	case derr == nil:
		if err := manifest.Check("seed data", io.NewSectionReader(r, d.Offset, d.Size), *m.Data); err != nil {
			return nil, bad("%v", err)
		}
		s.Data = &d
	}
	s.verified = true
	return s, nil
}

// badWrap is bad for a manifest error, keeping manifest's sentinel errors
// (ErrWrongBoard, ErrWrongRole, ErrUnknownKey...) visible to errors.Is.
func badWrap(err error, what string) error {
	return fmt.Errorf("%w: %s: %w", ErrBadSeed, what, err)
}

// slotDiffers names the first field in which the slot manifest sm differs
// from the seed's manifest m, other than role and data; "" if none.
func slotDiffers(m, sm *manifest.Manifest) string {
	switch {
	case sm.Compatible != m.Compatible:
		return "compatible"
	case sm.Version != m.Version:
		return "version"
	case sm.SecurityVersion != m.SecurityVersion:
		return "security version"
	case sm.Cmdline != m.Cmdline:
		return "cmdline"
	case sm.Kernel != m.Kernel:
		return "kernel"
	case sm.Initrd != m.Initrd:
		return "initrd"
	case sm.Root.FSType != m.Root.FSType:
		return "root fstype"
	case (sm.Root.Verity == nil) != (m.Root.Verity == nil) || sm.Root.Verity != nil && *sm.Root.Verity != *m.Root.Verity:
		return "root verity parameters"
	}
	return ""
}

// readSigned reads the manifest entry name and its signature entry
// (slotimg's ReadManifest: nil when missing, verification then says the
// manifest is unsigned).
func readSigned(r io.ReaderAt, h *slotimg.Header, name string) (mb, sig []byte, err error) {
	mb, sig, err = h.ReadManifest(r, name)
	if errors.Is(err, slotimg.ErrNoEntry) || errors.Is(err, slotimg.ErrCorrupt) {
		return nil, nil, bad("%v", err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("recovery: reading the seed's %s: %w", name, err)
	}
	return mb, sig, nil
}

// setVerity takes the root's dm-verity parameters from the manifest.
func (s *Seed) setVerity() error {
	v := s.Manifest.Root.Verity
	if v == nil {
		return bad("the manifest has no dm-verity parameters for the root: keel does not reinstall an unprotected root")
	}
	salt, _ := hex.DecodeString(v.Salt) // Validate checked it
	s.RootHash, _ = hex.DecodeString(v.RootHash)
	s.params = verity.Params{Salt: salt, DataBlocks: v.DataBlocks, HashOffset: v.HashOffset}
	n, err := s.params.TreeSize()
	if err != nil {
		return bad("root verity parameters: %v", err)
	}
	s.treeSize = n
	if need := int64(v.HashOffset) + n; s.Root.Size != need {
		return bad("the root entry is %d bytes, the manifest's verity parameters (hash offset %d, tree %d bytes) say %d",
			s.Root.Size, v.HashOffset, n, need)
	}
	return nil
}

// checkRoot rebuilds the dm-verity tree of the root in r (what names it)
// and compares the root hash with the manifest's and the tree with the
// stored one, whose SHA-256 it keeps (the slot writer reads the tree
// again and checks it against it).
func (s *Seed) checkRoot(r io.ReaderAt, what string) error {
	tree := &memWriter{off: int64(s.params.HashOffset), b: make([]byte, s.treeSize)}
	got, _, err := verity.Build(r, int64(s.params.HashOffset), tree, s.params)
	if err != nil {
		return fmt.Errorf("recovery: hashing %s: %w", what, err)
	}
	if !bytes.Equal(got, s.RootHash) {
		return bad("%s: dm-verity root hash %x, the signed manifest says %x: the root file system was changed", what, got, s.RootHash)
	}
	stored := make([]byte, s.treeSize)
	if _, err := r.ReadAt(stored, int64(s.params.HashOffset)); err != nil {
		return fmt.Errorf("recovery: reading the verity tree of %s: %w", what, err)
	}
	if !bytes.Equal(stored, tree.b) {
		i := 0
		for stored[i] == tree.b[i] {
			i++
		}
		return bad("%s: the stored dm-verity tree differs from the one its data gives, first at byte %d of the tree: the hash tree was changed", what, i)
	}
	sum := sha256.Sum256(stored)
	s.treeSHA256 = hex.EncodeToString(sum[:])
	return nil
}

// memWriter collects the tree verity.Build writes at off.
type memWriter struct {
	off int64
	b   []byte
}

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) {
	off -= m.off
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("recovery: verity tree write [%d, +%d) outside the tree", off+m.off, len(p))
	}
	return copy(m.b[off:], p), nil
}
