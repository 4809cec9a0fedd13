package slotwrite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Device is a partition the writer writes: a block device or a file
// (*os.File is one), or a region of a disk image.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes earlier writes durable (fsync).
	Sync() error
}

// Target is the slot a write rewrites: its container partition
// (slot-<name>) and its root partition (root-<name>), with their sizes.
type Target struct {
	Slot     Device
	SlotSize int64
	Root     Device
	RootSize int64
}

// Active is the running slot, read (never written) for blocks and for the
// kernel and initrd the new slot shares with it.
type Active struct {
	Slot     io.ReaderAt
	SlotSize int64
	Root     io.ReaderAt
	RootSize int64
}

// Options configure Write.
type Options struct {
	Target Target
	// Active, if not nil, is a source of blocks.
	Active *Active
	// NoLocal fetches every block from the source (no delta lookups).
	NoLocal bool
	// Begin, if set, is called once everything that can be checked before
	// writing was checked, just before the first write: it records in the
	// boot state that the target is being written (an error stops the
	// write, nothing written).
	Begin func(*bundle.Bundle) error
	// Progress, if set, gets events as the write advances (never
	// concurrently).
	Progress func(Event)
}

// Open reads the description of the slot to write from src and verifies
// it (Write's first step; its error stops the write, nothing written): the
// slot's manifest and signature, its parts' places in src and their
// digests, its dm-verity parameters and root hash. Package update opens an
// update bundle (bundle.Open, then its policy); package recovery describes
// the verified recovery seed's entries with the same type. A description
// returned with an error (a policy refusal) is the Result's Bundle.
type Open func(ctx context.Context, src bundle.Source) (*bundle.Bundle, error)

// Event is a progress report.
type Event struct {
	// Phase: "index" (hashing the device's blocks), "write" (the new
	// slot), "verify" (reading it back), "done".
	Phase string `json:"phase"`
	// Done and Total are bytes of the phase.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Fetched is the bytes read from the source so far.
	Fetched int64 `json:"fetched"`
	// Elapsed since the write started.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Result says what a write did.
type Result struct {
	Bundle *bundle.Bundle
	Blocks BlockCounts
	// Fetched is the bytes read from the source (a bundle's header and
	// manifest included); LocalContainer the kernel and initrd bytes
	// taken from the active slot instead.
	Fetched        int64
	LocalContainer int64
}

// ErrTampered is wrapped by errors about source content that does not
// verify (bundle.ErrTampered).
const ErrTampered = bundle.ErrTampered

// installer is one install's state.
type installer struct {
	ctx context.Context
	o   Options
	src *countingSource
	// view is the bundle's parts as format 1 lays them out (a format-2
	// bundle's chunks fetched from src and decompressed).
	view  bundle.Source
	start time.Time
	b     *bundle.Bundle
	t     *verity.Tree
	tree  []byte
	bm    bundle.BlockMap
	hdr   []byte          // the new container header, written last
	ents  []slotimg.Entry // kernel, initrd, manifest, manifest.sig
	res   Result
	phase string
	done  int64
	total int64
}

// Write writes the slot that open describes, reading its bytes from
// src, into o.Target, in an order that is safe against power cuts at any
// moment (see the package documentation), and returns what it did.
// Everything that can be checked before writing is: open (signatures,
// board, the caller's policy), the sizes against the partitions, and (for
// a source with random access) the tree and, for a static delta, that the
// device holds every block the source lacks. Then o.Begin, then the
// writes. Every block is checked against its dm-verity leaf before it is
// written, wherever it comes from; at the end everything is read back and
// checked, and only then is the container's header written.
func Write(ctx context.Context, src bundle.Source, open Open, o Options) (*Result, error) {
	in := &installer{ctx: ctx, o: o, src: &countingSource{Source: src}, start: time.Now()}
	res, err := in.run(open)
	if res != nil {
		res.Fetched = in.src.n
	}
	return res, err
}

func (in *installer) run(open Open) (*Result, error) {
	o := in.o
	if o.Target.Slot == nil || o.Target.Root == nil {
		return nil, errors.New("slotwrite: no target partitions")
	}
	b, err := open(in.ctx, in.src)
	if b == nil {
		if err == nil {
			err = errors.New("slotwrite: nothing to write")
		}
		return nil, err
	}
	in.b = b
	in.view = b.View(in.src)
	in.res.Bundle = b
	if err != nil {
		return &in.res, err
	}
	if err := in.fits(); err != nil {
		return &in.res, err
	}
	sequential := in.src.Size() < 0
	if !sequential {
		if err := in.readTree(); err != nil {
			return &in.res, err
		}
	}
	// The device's blocks, hashed with the new root's salt (read only).
	idx, err := in.index()
	if err != nil {
		return &in.res, err
	}
	var p *plan
	if !sequential {
		if p, err = in.plan(idx); err != nil {
			return &in.res, err
		}
	}
	if err := in.ctx.Err(); err != nil {
		return &in.res, err
	}
	if o.Begin != nil {
		if err := o.Begin(b); err != nil {
			return &in.res, err
		}
	}
	// 1. No valid container header from here until the end.
	if _, err := o.Target.Slot.WriteAt(make([]byte, slotimg.HeaderSize), 0); err != nil {
		return &in.res, fmt.Errorf("slotwrite: clearing the target's slot container header: %w", err)
	}
	if err := in.sync(o.Target.Slot, "slot"); err != nil {
		return &in.res, err
	}
	// 2. Kernel and initrd, from the active slot when it has them.
	in.setPhase("write", in.writeTotal())
	if err := in.writeContainer(); err != nil {
		return &in.res, err
	}
	if sequential {
		if err := in.readTree(); err != nil {
			return &in.res, err
		}
		if p, err = in.plan(idx); err != nil {
			return &in.res, err
		}
	}
	in.res.Blocks = p.counts
	// 3. The root's data blocks, then its tree; durable.
	if err := in.writeRoot(p); err != nil {
		return &in.res, err
	}
	if _, err := o.Target.Root.WriteAt(in.tree, int64(in.b.Params.HashOffset)); err != nil {
		return &in.res, fmt.Errorf("slotwrite: writing the dm-verity tree: %w", err)
	}
	in.add(int64(len(in.tree)))
	if err := in.sync(o.Target.Root, "root"); err != nil {
		return &in.res, err
	}
	// 4. The manifest and its signature; durable.
	for i, c := range [][]byte{b.ManifestBytes, b.Sig} {
		if _, err := o.Target.Slot.WriteAt(c, in.ents[2+i].Offset); err != nil {
			return &in.res, fmt.Errorf("slotwrite: writing the %s: %w", in.ents[2+i].Name, err)
		}
		in.add(int64(len(c)))
	}
	if err := in.sync(o.Target.Slot, "slot"); err != nil {
		return &in.res, err
	}
	// 5. Read back from the medium and check what the root's pipeline
	// did not (it read every root block back as it went).
	if err := in.readBackRest(); err != nil {
		return &in.res, err
	}
	// 6. The header, last.
	if _, err := o.Target.Slot.WriteAt(in.hdr, 0); err != nil {
		return &in.res, fmt.Errorf("slotwrite: writing the slot container header: %w", err)
	}
	if err := in.sync(o.Target.Slot, "slot"); err != nil {
		return &in.res, err
	}
	got := make([]byte, slotimg.HeaderSize)
	if err := readFull(o.Target.Slot, got, 0); err != nil {
		return &in.res, fmt.Errorf("slotwrite: reading back the slot container header: %w", err)
	}
	if !bytes.Equal(got, in.hdr) {
		return &in.res, errors.New("slotwrite: the slot container header read back differs from what was written: the slot partition does not keep its data")
	}
	in.setPhase("done", 0)
	return &in.res, nil
}

func (in *installer) sync(d Device, what string) error {
	if err := d.Sync(); err != nil {
		return fmt.Errorf("slotwrite: syncing the target's %s partition: %w", what, err)
	}
	return nil
}

// fits lays out the new container and checks both partitions are large
// enough.
func (in *installer) fits() error {
	h := in.b.Header
	kp, _ := h.Part(bundle.PartKernel)
	ip, _ := h.Part(bundle.PartInitrd)
	var err error
	in.hdr, in.ents, err = slotimg.Layout([]slotimg.Entry{
		{Name: slotimg.EntryKernel, Size: kp.Size},
		{Name: slotimg.EntryInitrd, Size: ip.Size},
		{Name: slotimg.EntryManifest, Size: int64(len(in.b.ManifestBytes))},
		{Name: manifest.SigEntry, Size: int64(len(in.b.Sig))},
	})
	if err != nil {
		return fmt.Errorf("slotwrite: %w", err)
	}
	last := in.ents[len(in.ents)-1]
	if need := last.Offset + last.Size; need > in.o.Target.SlotSize {
		return fmt.Errorf("slotwrite: version %s does not fit this device: its kernel, initrd and manifest need %d bytes, the slot partition has %d: the slot's software must be made for this board's partition sizes", h.Version, need, in.o.Target.SlotSize)
	}
	tp, _ := h.Part(bundle.PartTree)
	if need := int64(in.b.Params.HashOffset) + tp.Size; need > in.o.Target.RootSize {
		return fmt.Errorf("slotwrite: version %s does not fit this device: its root file system and dm-verity tree need %d bytes, the root partition has %d", h.Version, need, in.o.Target.RootSize)
	}
	return nil
}

func (in *installer) readTree() error {
	t, tree, err := in.b.ReadTree(in.ctx, in.view)
	if err != nil {
		return err
	}
	in.t, in.tree = t, tree
	if in.bm, err = in.b.ReadBlockMap(in.ctx, in.view); err != nil {
		return err
	}
	return nil
}

// deviceIndex are the digests of the device's blocks under the new salt.
type deviceIndex struct {
	old, active []digest
	zero        digest
}

// index hashes the target's current root blocks (as many as the new root
// has, or its old root if larger) and the active root with the new root's
// salt.
func (in *installer) index() (*deviceIndex, error) {
	idx := &deviceIndex{}
	// The tree is not read yet from a pipe: a Tree of the same parameters
	// hashes the same way.
	ht := in.t
	if ht == nil {
		var err error
		if ht, err = hasherTree(in.b.Params); err != nil {
			return nil, err
		}
	}
	copy(idx.zero[:], ht.Hasher().Sum(make([]byte, blockSize)))
	if in.o.NoLocal {
		return idx, nil
	}
	n := in.b.Header.DataBlocks
	oldN := min(max(n, oldBlocks(in.o.Target.Slot, in.o.Target.SlotSize)), uint64(in.o.Target.RootSize/blockSize))
	var actN uint64
	if a := in.o.Active; a != nil && a.Root != nil {
		actN = min(activeBlocks(a), uint64(a.RootSize/blockSize))
	}
	in.setPhase("index", int64(oldN+actN)*blockSize)
	var err error
	if idx.old, err = hashDevice(in.o.Target.Root, oldN, ht, in.add); err != nil {
		return nil, fmt.Errorf("slotwrite: reading the target's root partition: %w", err)
	}
	if actN > 0 {
		if idx.active, err = hashDevice(in.o.Active.Root, actN, ht, in.add); err != nil {
			return nil, fmt.Errorf("slotwrite: reading the active slot's root partition: %w", err)
		}
	}
	return idx, nil
}

func (in *installer) plan(idx *deviceIndex) (*plan, error) {
	return makePlan(in.t, in.b, in.bm, idx.old, idx.active, idx.zero)
}

// hasherTree is a one-block Tree with p's salt: only its Hasher is used.
// It does not fail (the sizes are fixed), but keel-init links this code
// and PID 1 does not panic.
func hasherTree(p verity.Params) (*verity.Tree, error) {
	q := verity.Params{Salt: p.Salt, DataBlocks: 1}
	h := sha256.Sum256(append(append([]byte(nil), p.Salt...), make([]byte, blockSize)...))
	t, err := verity.ParseTree(nil, q, h[:])
	if err != nil {
		return nil, fmt.Errorf("slotwrite: a one-block tree of the root's salt: %w", err)
	}
	return t, nil
}

// slotManifest reads the (unverified) manifest of the container in r: a
// size hint only, every block is re-hashed before it is used.
func slotManifest(r io.ReaderAt, size int64) (*slotimg.Header, *manifest.Manifest) {
	if r == nil {
		return nil, nil
	}
	h, err := slotimg.ReadHeader(r, size)
	if err != nil {
		return nil, nil
	}
	b, _, err := h.ReadManifest(r, slotimg.EntryManifest)
	if err != nil {
		return h, nil
	}
	m, err := manifest.Parse(b)
	if err != nil {
		return h, nil
	}
	return h, m
}

func oldBlocks(r io.ReaderAt, size int64) uint64 {
	if _, m := slotManifest(r, size); m != nil && m.Root.Verity != nil {
		return m.Root.Verity.DataBlocks
	}
	return 0
}

func activeBlocks(a *Active) uint64 {
	if _, m := slotManifest(a.Slot, a.SlotSize); m != nil && m.Root.Verity != nil {
		return m.Root.Verity.DataBlocks
	}
	return uint64(a.RootSize / blockSize) // no manifest: the whole partition
}

// writeTotal is the bytes the write phase produces.
func (in *installer) writeTotal() int64 {
	var n int64
	for _, e := range in.ents {
		n += e.Size
	}
	tp, _ := in.b.Header.Part(bundle.PartTree)
	return n + int64(in.b.Header.DataBlocks)*blockSize + tp.Size
}

func (in *installer) setPhase(phase string, total int64) {
	in.phase, in.done, in.total = phase, 0, total
	in.report()
}

func (in *installer) add(n int64) {
	in.done += n
	in.report()
}

func (in *installer) report() {
	if in.o.Progress != nil {
		in.o.Progress(Event{Phase: in.phase, Done: min(in.done, in.total), Total: in.total, Fetched: in.src.n, Elapsed: time.Since(in.start)})
	}
}

// writeContainer writes the kernel and initrd at their new offsets: from
// the active slot when it holds the same bytes (checked), else from the
// bundle, hashed as they stream.
func (in *installer) writeContainer() error {
	h := in.b.Header
	var fetch []bundle.Part
	for i, name := range []string{bundle.PartKernel, bundle.PartInitrd} {
		p, _ := h.Part(name)
		if !in.o.NoLocal && in.copyActiveEntry(name, p, in.ents[i].Offset) {
			in.res.LocalContainer += p.Size
			in.add(p.Size)
			continue
		}
		fetch = append(fetch, p)
	}
	if len(fetch) == 0 {
		return nil
	}
	ranges := make([]bundle.Range, len(fetch))
	hashes := make([]*bundle.PartHash, len(fetch))
	for i, p := range fetch {
		ranges[i] = bundle.Range{Off: p.Offset, Len: p.Size}
		hashes[i] = bundle.NewPartHash(p)
	}
	dst := func(p bundle.Part) int64 {
		if p.Name == bundle.PartKernel {
			return in.ents[0].Offset
		}
		return in.ents[1].Offset
	}
	k := 0
	err := in.view.Fetch(in.ctx, ranges, func(off int64, b []byte) error {
		for off >= fetch[k].End() {
			k++
		}
		p := fetch[k]
		hashes[k].Write(b)
		if _, err := in.o.Target.Slot.WriteAt(b, dst(p)+off-p.Offset); err != nil {
			return fmt.Errorf("slotwrite: writing the %s: %w", p.Name, err)
		}
		in.add(int64(len(b)))
		return nil
	})
	if err != nil {
		return fmt.Errorf("slotwrite: the %s: %w", fetch[k].Name, err)
	}
	for _, x := range hashes {
		if err := x.Check(); err != nil {
			return err
		}
	}
	return nil
}

// copyActiveEntry copies the active slot's entry name to the target at
// dst if it is the part p (same size and SHA-256, checked on the bytes
// read); it reports whether it did.
func (in *installer) copyActiveEntry(name string, p bundle.Part, dst int64) bool {
	a := in.o.Active
	if a == nil || a.Slot == nil {
		return false
	}
	h, _ := slotManifest(a.Slot, a.SlotSize)
	if h == nil {
		return false
	}
	e, err := h.Find(name)
	if err != nil || e.Size != p.Size {
		return false
	}
	b := make([]byte, e.Size)
	if readFull(a.Slot, b, e.Offset) != nil {
		return false
	}
	if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != p.SHA256 {
		return false
	}
	_, err = in.o.Target.Slot.WriteAt(b, dst)
	return err == nil
}
