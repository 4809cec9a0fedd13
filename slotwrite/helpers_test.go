package slotwrite

import (
	"bytes"
	"context"
	"math/rand"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/testkit/faultdev"
	"github.com/keelboot/keel/update/source"
)

// Partition sizes of the test device.
const (
	slotSize = 256 << 10
	rootSize = 2 << 20
)

// device is a test device: the target slot's partitions (in memory, with
// power cuts) and the active slot's.
type device struct {
	slot, root     *faultdev.Mem
	active         *bundletest.Slot // nil: no active slot
	activeSlot     []byte
	activeRootPart []byte
}

// newDevice makes a device whose active slot holds active (nil: none) and
// whose target is empty.
func newDevice(t *testing.T, active *bundletest.Slot) *device {
	d := &device{
		slot:   faultdev.NewMem(faultdev.File, make([]byte, slotSize), 0),
		root:   faultdev.NewMem(faultdev.File, make([]byte, rootSize), 0),
		active: active,
	}
	if active != nil {
		var b bytes.Buffer
		if _, err := slotimg.Write(&b, []slotimg.Part{
			{Name: slotimg.EntryKernel, Data: active.Kernel},
			{Name: slotimg.EntryInitrd, Data: active.Initrd},
			{Name: slotimg.EntryManifest, Data: active.Manifest},
			{Name: manifest.SigEntry, Data: active.Sig},
		}); err != nil {
			t.Fatal(err)
		}
		d.activeSlot = append(b.Bytes(), make([]byte, slotSize-b.Len())...)
		d.activeRootPart = append(append([]byte(nil), active.Root...), make([]byte, rootSize-len(active.Root))...)
	}
	return d
}

// opts are a test install's: the writer's options, and what opens the
// bundle (bundle.Open with trusted for board, then check, if set: the
// caller's policy).
type opts struct {
	Options
	trusted []manifest.PublicKey
	board   string
	check   func(*bundle.Bundle) error
}

// options are install options for d, writing through power p (nil: no
// cuts).
func (d *device) options(trusted []manifest.PublicKey, p *faultdev.Power) opts {
	var slot, root Device = d.slot, d.root
	if p != nil {
		slot = p.Wrap(d.slot, faultdev.Options{WriteUnit: 4096})
		root = p.Wrap(d.root, faultdev.Options{WriteUnit: 4096})
	}
	o := opts{trusted: trusted, board: bundletest.Board,
		Options: Options{Target: Target{Slot: slot, SlotSize: slotSize, Root: root, RootSize: rootSize}}}
	if d.active != nil {
		o.Active = &Active{Slot: bytes.NewReader(d.activeSlot), SlotSize: slotSize, Root: bytes.NewReader(d.activeRootPart), RootSize: rootSize}
	}
	return o
}

// checkSlot checks that the target holds s, completely: a valid header,
// the kernel, initrd, manifest and signature, the root and its tree.
func (d *device) checkSlot(t *testing.T, s *bundletest.Slot) {
	t.Helper()
	if err := d.slotState(s); err != nil {
		t.Fatal(err)
	}
}

// slotState returns nil when the target holds s, errNoHeader when it has
// no valid container header, and an error naming what differs otherwise.
func (d *device) slotState(s *bundletest.Slot) error {
	img := d.slot.Bytes()
	h, err := slotimg.ParseHeader(img, int64(len(img)))
	if err != nil {
		return errNoHeader{err}
	}
	for _, e := range []struct {
		name string
		want []byte
	}{{slotimg.EntryKernel, s.Kernel}, {slotimg.EntryInitrd, s.Initrd}, {slotimg.EntryManifest, s.Manifest}, {manifest.SigEntry, s.Sig}} {
		en, err := h.Find(e.name)
		if err != nil {
			return err
		}
		if !bytes.Equal(img[en.Offset:en.Offset+en.Size], e.want) {
			return errDiffers(e.name)
		}
	}
	if !bytes.Equal(d.root.Bytes()[:len(s.Root)], s.Root) {
		return errDiffers("root")
	}
	return nil
}

type errNoHeader struct{ err error }

func (e errNoHeader) Error() string { return "no valid header: " + e.err.Error() }

type errDiffers string

func (e errDiffers) Error() string { return string(e) + " differs" }

// fixture is a key, two versions of a slot and their bundles.
type fixture struct {
	key          manifest.PrivateKey
	trusted      []manifest.PublicKey
	v1, v2       *bundletest.Slot
	full1, full2 []byte
}

func newFixture(t *testing.T, seed int64, blocks, changed int, newKernel bool) *fixture {
	rng := rand.New(rand.NewSource(seed))
	f := &fixture{}
	f.key, f.trusted = bundletest.Keys(t, "release")
	f.v1 = bundletest.NewSlot(t, rng, blocks, "1.0", 1, f.key)
	f.v2 = bundletest.Next(t, rng, f.v1, changed, newKernel, "2.0", f.key)
	f.full1 = bundletest.Bundle(t, f.v1, f.key)
	f.full2 = bundletest.Bundle(t, f.v2, f.key)
	return f
}

func mem(b []byte) source.Source {
	return source.NewReaderAt(bytes.NewReader(b), int64(len(b)), "test bundle")
}

// install writes the bundle in src as o says.
func install(t *testing.T, src source.Source, o opts) (*Result, error) {
	t.Helper()
	return Write(context.Background(), src, func(ctx context.Context, src bundle.Source) (*bundle.Bundle, error) {
		b, err := bundle.Open(ctx, src, o.trusted, o.board)
		if err == nil && o.check != nil {
			err = o.check(b)
		}
		return b, err
	}, o.Options)
}

// chunkedLimit is the most a delta install of a format-2 bundle with
// header h should fetch when changed blocks (of random, incompressible
// content) are missing: the header region, the chunk index, the manifest
// and its signature, the tree, and a chunk per changed block.
func chunkedLimit(h *bundle.Header, changed int) int64 {
	mp, _ := h.Part(bundle.PartManifest)
	sp, _ := h.Part(bundle.PartSig)
	tp, _ := h.Part(bundle.PartTree)
	c := h.Chunks.ChunkSize
	return 2*4096 + h.Chunks.IndexSize + mp.Size + sp.Size + tp.Size + 3*1024 + int64(changed)*(c+c/64)
}
