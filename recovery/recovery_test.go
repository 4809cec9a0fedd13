package recovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/seedimg"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/testkit/faultdev"
)

var small = seedOpts{kernel: 5000, initrd: 3001, rootBlocks: 16, data: true}

func openFile(t testing.TB, path string, b []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestRecoverFiles reinstalls a slot held in files over an older slot and
// checks it as keel-init would, and the progress reports.
func TestRecoverFiles(t *testing.T) {
	dir := t.TempDir()
	fx := makeSeed(t, seedOpts{kernel: 3<<20 + 5, initrd: 1<<20 + 77, rootBlocks: 700, data: true})
	src := openFile(t, filepath.Join(dir, "recovery.img"), fx.img)
	const slotSize, rootSize = 8 << 20, 4 << 20
	slot := openFile(t, filepath.Join(dir, "slot-a.img"), random(t, slotSize))
	root := openFile(t, filepath.Join(dir, "root-a.img"), random(t, rootSize))

	// The writer's events: its phases in order, each counting up to its
	// total, the last one "done".
	var phases []string
	var last slotwrite.Event
	prog := func(e slotwrite.Event) {
		if e.Phase != last.Phase {
			phases = append(phases, e.Phase)
		} else if e.Done < last.Done || e.Total != last.Total {
			t.Errorf("progress %+v after %+v", e, last)
		}
		if e.Done > e.Total || e.Elapsed < last.Elapsed {
			t.Errorf("progress %+v after %+v", e, last)
		}
		last = e
	}
	seed, err := Recover(context.Background(), src, int64(len(fx.img)), fx.trusted, testBoard, slotwrite.Target{Slot: slot, SlotSize: slotSize, Root: root, RootSize: rootSize}, prog)
	if err != nil {
		t.Fatal(err)
	}
	if seed.Manifest.Version != "1.0" || !bytes.Equal(seed.ManifestBytes, fx.manifest) || !bytes.Equal(seed.SlotManifestBytes, fx.slotManifest) || seed.Data == nil {
		t.Errorf("seed %+v", seed)
	}
	if got := strings.Join(phases, " "); got != "index write verify done" {
		t.Errorf("progress phases %q, want index write verify done", got)
	}
	mb, err := checkSlot(slot, slotSize, root, fx.trusted)
	if err != nil {
		t.Fatalf("the reinstalled slot does not verify: %v", err)
	}
	if !bytes.Equal(mb, fx.slotManifest) {
		t.Error("the reinstalled slot's manifest is not the seed's slot manifest")
	}
	got := make([]byte, len(fx.root))
	root.ReadAt(got, 0)
	if !bytes.Equal(got, fx.root) {
		t.Error("root-a does not start with the seed's root entry")
	}
	h, _ := slotimg.ReadHeader(slot, slotSize)
	if len(h.Entries) != 4 {
		t.Errorf("slot entries %+v, want kernel, initrd, manifest, manifest.sig", h.Entries)
	}
}

// TestTamperedSeed: every kind of tampering is refused with an error that
// names it, and nothing is written to the targets.
func TestTamperedSeed(t *testing.T) {
	fx := makeSeed(t, small)
	other, _, err := manifest.GenerateKey(rand.Reader, "other")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(name string, at func(e slotimg.Entry) int64) func(*seedFix) []byte {
		return func(f *seedFix) []byte {
			b := bytes.Clone(f.img)
			e := f.entry(t, name)
			b[e.Offset+at(e)] ^= 0x40
			return b
		}
	}
	mid := func(e slotimg.Entry) int64 { return e.Size / 2 }
	for name, tc := range map[string]struct {
		img  func(*seedFix) []byte
		want string
	}{
		"kernel":         {flip(slotimg.EntryKernel, mid), "seed kernel digest mismatch"},
		"initrd":         {flip(slotimg.EntryInitrd, mid), "seed initrd digest mismatch"},
		"root-data":      {flip(slotimg.EntryRoot, func(slotimg.Entry) int64 { return 5*4096 + 17 }), "dm-verity root hash"},
		"root-tree":      {flip(slotimg.EntryRoot, func(e slotimg.Entry) int64 { return 16*4096 + 40 }), "stored dm-verity tree differs"},
		"manifest":       {flip(slotimg.EntryManifest, mid), "manifest signature does not verify"},
		"signature":      {flip(manifest.SigEntry, func(e slotimg.Entry) int64 { return e.Size - 20 }), "manifest: "},
		"data":           {flip(slotimg.EntryData, func(e slotimg.Entry) int64 { return e.Size - 1 }), "seed data digest mismatch"},
		"header":         {func(f *seedFix) []byte { b := bytes.Clone(f.img); b[30] ^= 1; return b }, "header CRC"},
		"zero":           {func(f *seedFix) []byte { return make([]byte, len(f.img)) }, "not a keel slot image"},
		"unknown-key":    {func(*seedFix) []byte { s := small; s.signer = &other; return makeSeed(t, s).img }, "not among the trusted keys"},
		"unsigned":       {func(*seedFix) []byte { s := small; s.unsigned = true; return makeSeed(t, s).img }, "unsigned"},
		"slot-manifest":  {flip(seedimg.EntrySlotManifest, mid), "slot-manifest: manifest signature does not verify"},
		"slot-signature": {flip(seedimg.EntrySlotSig, func(e slotimg.Entry) int64 { return e.Size - 20 }), "slot-manifest: "},
	} {
		t.Run(name, func(t *testing.T) {
			img := tc.img(fx)
			slot := faultdev.NewMem(faultdev.File, random(t, 64<<10), 0)
			root := faultdev.NewMem(faultdev.File, random(t, 256<<10), 0)
			slot0, root0 := slot.Bytes(), root.Bytes()
			calls := 0
			_, err := Recover(context.Background(), bytes.NewReader(img), int64(len(img)), fx.trusted, testBoard,
				slotwrite.Target{Slot: slot, SlotSize: 64 << 10, Root: root, RootSize: 256 << 10}, func(slotwrite.Event) { calls++ })
			if !errors.Is(err, ErrBadSeed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Recover = %v, want ErrBadSeed mentioning %q", err, tc.want)
			}
			t.Log(err)
			if !bytes.Equal(slot.Bytes(), slot0) || !bytes.Equal(root.Bytes(), root0) || calls != 0 {
				t.Errorf("a refused seed wrote to the targets (%d progress calls)", calls)
			}
		})
	}
}

// TestSeedChangedUnderReinstall: a seed that verified but changes before
// Reinstall copies it (a bad disk, an attacker with the device) fails the
// read-back check and leaves the slot without a header.
func TestSeedChangedUnderReinstall(t *testing.T) {
	for _, name := range []string{slotimg.EntryKernel, slotimg.EntryRoot} {
		t.Run(name, func(t *testing.T) {
			fx := makeSeed(t, small)
			seed, err := VerifySeed(bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard)
			if err != nil {
				t.Fatal(err)
			}
			e := fx.entry(t, name)
			fx.img[e.Offset+100] ^= 1
			slot := faultdev.NewMem(faultdev.File, make([]byte, 64<<10), 0)
			root := faultdev.NewMem(faultdev.File, make([]byte, 256<<10), 0)
			err = reinstall(context.Background(), seed, bytes.NewReader(fx.img), slotwrite.Target{Slot: slot, SlotSize: 64 << 10, Root: root, RootSize: 256 << 10})
			if !errors.Is(err, ErrBadSeed) {
				t.Fatalf("Reinstall = %v, want ErrBadSeed", err)
			}
			t.Log(err)
			if _, err := slotimg.ReadHeader(slot, 64<<10); !errors.Is(err, slotimg.ErrNotSlot) {
				t.Errorf("after a failed reinstall the slot header reads: %v", err)
			}
		})
	}
}

func TestReinstallRefuses(t *testing.T) {
	fx := makeSeed(t, small)
	seed, err := VerifySeed(bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		seed           *Seed
		slotSz, rootSz int64
		want           string
	}{
		"small-slot":   {seed, 8 << 10, 256 << 10, "the slot partition has 8192"},
		"small-root":   {seed, 64 << 10, 64 << 10, "the root partition has 65536"},
		"not-verified": {&Seed{}, 64 << 10, 256 << 10, "VerifySeed did not return"},
	} {
		t.Run(name, func(t *testing.T) {
			slot := faultdev.NewMem(faultdev.File, random(t, int(tc.slotSz)), 0)
			root := faultdev.NewMem(faultdev.File, random(t, int(tc.rootSz)), 0)
			s0, r0 := slot.Bytes(), root.Bytes()
			err := reinstall(context.Background(), tc.seed, bytes.NewReader(fx.img), slotwrite.Target{Slot: slot, SlotSize: tc.slotSz, Root: root, RootSize: tc.rootSz})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reinstall = %v, want %q", err, tc.want)
			}
			if !bytes.Equal(slot.Bytes(), s0) || !bytes.Equal(root.Bytes(), r0) {
				t.Error("a refused reinstall wrote")
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slot := faultdev.NewMem(faultdev.File, make([]byte, 64<<10), 0)
	root := faultdev.NewMem(faultdev.File, make([]byte, 256<<10), 0)
	if err := reinstall(ctx, seed, bytes.NewReader(fx.img), slotwrite.Target{Slot: slot, SlotSize: 64 << 10, Root: root, RootSize: 256 << 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Reinstall = %v", err)
	}
}

// TestReinstallPowerCut cuts the power of both targets at many points of a
// reinstall over a valid older slot: afterwards the slot either verifies
// (as the old slot, only before anything was written, or as the seed) or
// has no valid header; a second Reinstall always completes it.
func TestReinstallPowerCut(t *testing.T) {
	const slotSize, rootSize = 64 << 10, 256 << 10
	oldFx := makeSeed(t, seedOpts{kernel: 4000, initrd: 2000, rootBlocks: 20, version: "0.9"})
	fx := makeSeed(t, small)
	seed, err := VerifySeed(bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	oldSeed, err := VerifySeed(bytes.NewReader(oldFx.img), int64(len(oldFx.img)), oldFx.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	slot0 := faultdev.NewMem(faultdev.File, random(t, slotSize), 0)
	root0 := faultdev.NewMem(faultdev.File, random(t, rootSize), 0)
	if err := reinstall(context.Background(), oldSeed, bytes.NewReader(oldFx.img), slotwrite.Target{Slot: slot0, SlotSize: slotSize, Root: root0, RootSize: rootSize}); err != nil {
		t.Fatal(err)
	}

	run := func(budget int64) (*faultdev.Mem, *faultdev.Mem, *faultdev.Power, error) {
		slot, root := slot0.Clone(), root0.Clone()
		pw := faultdev.NewPower(budget)
		err := reinstall(context.Background(), seed, bytes.NewReader(fx.img),
			slotwrite.Target{Slot: pw.Wrap(slot, faultdev.Options{}), SlotSize: slotSize, Root: pw.Wrap(root, faultdev.Options{}), RootSize: rootSize})
		return slot, root, pw, err
	}
	_, _, pw, err := run(-1)
	if err != nil {
		t.Fatal(err)
	}
	steps := pw.Steps()
	hdrStart := steps - slotimg.HeaderSize // the header is written last
	var budgets []int64
	for b := int64(0); b <= steps; {
		budgets = append(budgets, b)
		switch {
		case b < 32, b >= hdrStart-8 && b < hdrStart+240, b > steps-8:
			b++
		default:
			b += 197
		}
	}
	outcomes := map[string]int{}
	for _, b := range budgets {
		slot, root, pw, err := run(b)
		if b < steps && (!errors.Is(err, faultdev.ErrPowerCut) || !pw.IsCut()) {
			t.Fatalf("budget %d of %d: Reinstall = %v, want a power cut", b, steps, err)
		}
		mb, verr := checkSlot(slot, slotSize, root, fx.trusted)
		switch {
		case verr == nil && bytes.Equal(mb, fx.slotManifest):
			outcomes["new"]++
		case verr == nil && bytes.Equal(mb, oldFx.slotManifest):
			outcomes["old"]++
			if b > 0 {
				t.Errorf("budget %d: the old slot is still valid after writes began", b)
			}
		case errors.Is(verr, slotimg.ErrNotSlot) || errors.Is(verr, slotimg.ErrCorrupt):
			outcomes["no header"]++
		default:
			t.Fatalf("budget %d of %d: a valid header with wrong content: %v", b, steps, verr)
		}
		if verr == nil && bytes.Equal(mb, fx.slotManifest) && b < hdrStart+212 {
			t.Errorf("budget %d: the slot is valid before its header was fully written (at %d)", b, hdrStart)
		}
		// The next boot runs the reinstall again.
		if err := reinstall(context.Background(), seed, bytes.NewReader(fx.img), slotwrite.Target{Slot: slot, SlotSize: slotSize, Root: root, RootSize: rootSize}); err != nil {
			t.Fatalf("budget %d: resumed Reinstall: %v", b, err)
		}
		if mb, err := checkSlot(slot, slotSize, root, fx.trusted); err != nil || !bytes.Equal(mb, fx.slotManifest) {
			t.Fatalf("budget %d: after the resumed reinstall: %v", b, err)
		}
	}
	t.Logf("%d steps, %d cut points: %v", steps, len(budgets), outcomes)
	if outcomes["new"] == 0 || outcomes["no header"] == 0 || outcomes["old"] != 1 {
		t.Errorf("outcomes %v", outcomes)
	}
}

// TestSeedBinding: the seed's manifest must be a seed's, its slot manifest
// a slot's, both for the device's board and describing the same slot
// (issue 9 item 14); the reinstalled slot gets the slot's manifest, never
// the seed's. On the old code VerifySeed took no board, manifests had no
// role, and Reinstall copied the seed's own manifest into the slot.
func TestSeedBinding(t *testing.T) {
	for name, tc := range map[string]struct {
		opts     seedOpts
		board    string
		sentinel error
		want     string
	}{
		"another board": {small, "qemu-arm64-uboot", manifest.ErrWrongBoard,
			"the seed's manifest: manifest is for board qemu-x86_64-uefi, this is qemu-arm64-uboot"},
		"a seed made for another board": {withEdit(small, func(m, sm *manifest.Manifest) { m.Compatible, sm.Compatible = "other", "other" }), testBoard,
			manifest.ErrWrongBoard, "manifest is for board other, this is qemu-x86_64-uefi"},
		"a slot's manifest as the seed's": {withEdit(small, func(m, sm *manifest.Manifest) { m.Role, m.Data = manifest.RoleSlot, nil }), testBoard,
			manifest.ErrWrongRole, "the seed's manifest: manifest is a slot's, not a seed's"},
		"a seed's manifest as the slot manifest": {withEdit(small, func(m, sm *manifest.Manifest) { sm.Role = manifest.RoleSeed }), testBoard,
			manifest.ErrWrongRole, "slot-manifest: manifest is a seed's, not a slot's"},
		"a slot manifest for another board": {withEdit(small, func(m, sm *manifest.Manifest) { sm.Compatible = "other" }), testBoard,
			manifest.ErrWrongBoard, "slot-manifest: manifest is for board other"},
		"a slot manifest of another version": {withEdit(small, func(m, sm *manifest.Manifest) { sm.Version = "0.1" }), testBoard,
			ErrBadSeed, "differ in version"},
		"a slot manifest of another kernel": {withEdit(small, func(m, sm *manifest.Manifest) { sm.Kernel.Size++ }), testBoard,
			ErrBadSeed, "differ in kernel"},
		"a slot manifest of another root": {withEdit(small, func(m, sm *manifest.Manifest) { v := *sm.Root.Verity; v.Salt = "00"; sm.Root.Verity = &v }), testBoard,
			ErrBadSeed, "differ in root verity parameters"},
		"no slot manifest": {func() seedOpts { o := small; o.noSlotManifest = true; return o }(), testBoard,
			ErrBadSeed, `"slot-manifest"`},
	} {
		t.Run(name, func(t *testing.T) {
			fx := makeSeed(t, tc.opts)
			slot := faultdev.NewMem(faultdev.File, random(t, 64<<10), 0)
			root := faultdev.NewMem(faultdev.File, random(t, 256<<10), 0)
			s0, r0 := slot.Bytes(), root.Bytes()
			_, err := Recover(context.Background(), bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, tc.board,
				slotwrite.Target{Slot: slot, SlotSize: 64 << 10, Root: root, RootSize: 256 << 10}, nil)
			if !errors.Is(err, ErrBadSeed) || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Recover = %v, want ErrBadSeed and %v saying %q", err, tc.sentinel, tc.want)
			}
			if !bytes.Equal(slot.Bytes(), s0) || !bytes.Equal(root.Bytes(), r0) {
				t.Error("a refused seed wrote to the targets")
			}
		})
	}
	if _, err := VerifySeed(bytes.NewReader(nil), 0, []manifest.PublicKey{testPub}, ""); err == nil || !strings.Contains(err.Error(), "no board") {
		t.Errorf("VerifySeed without a board: %v", err)
	}

	// A good seed: the reinstalled slot holds the slot manifest, which
	// keel-init accepts as a slot's; the seed's own manifest, copied into a
	// slot by someone with the disk, is refused as a seed's.
	fx := makeSeed(t, small)
	slot := faultdev.NewMem(faultdev.File, make([]byte, 64<<10), 0)
	root := faultdev.NewMem(faultdev.File, make([]byte, 256<<10), 0)
	seed, err := Recover(context.Background(), bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard,
		slotwrite.Target{Slot: slot, SlotSize: 64 << 10, Root: root, RootSize: 256 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if seed.Manifest.Role != manifest.RoleSeed || seed.SlotManifest.Role != manifest.RoleSlot || seed.SlotManifest.Data != nil {
		t.Errorf("seed roles: manifest %q, slot manifest %q", seed.Manifest.Role, seed.SlotManifest.Role)
	}
	mb, err := checkSlot(slot, 64<<10, root, fx.trusted)
	if err != nil || !bytes.Equal(mb, fx.slotManifest) {
		t.Fatalf("the reinstalled slot: %v", err)
	}
	var b bytes.Buffer
	if _, err := slotimg.Write(&b, []slotimg.Part{
		{Name: slotimg.EntryKernel, Data: fx.kernel}, {Name: slotimg.EntryInitrd, Data: fx.initrd},
		{Name: slotimg.EntryManifest, Data: fx.manifest}, {Name: manifest.SigEntry, Data: fx.sig},
	}); err != nil {
		t.Fatal(err)
	}
	copied := append(b.Bytes(), make([]byte, 64<<10-b.Len())...)
	if _, err := checkSlot(bytes.NewReader(copied), int64(len(copied)), root, fx.trusted); !errors.Is(err, manifest.ErrWrongRole) ||
		!strings.Contains(err.Error(), "a seed's, not a slot's") {
		t.Errorf("the seed's manifest in a slot: %v, want ErrWrongRole", err)
	}
}

func withEdit(o seedOpts, edit func(m, sm *manifest.Manifest)) seedOpts {
	o.edit = edit
	return o
}

// TestReinstallDelta: a reinstall over a slot whose root is mostly the
// seed's already (a reinstall cut near its end, a few damaged blocks)
// writes only the blocks that differ, the container and the tree; the
// others are checked where they are (issue 20 §1: the seed feeds the OTA
// install's writer and its delta). The old reinstall wrote the whole root
// every time.
func TestReinstallDelta(t *testing.T) {
	const slotSize, rootSize, blocks = 1 << 20, 4 << 20, 512
	fx := makeSeed(t, seedOpts{kernel: 20000, initrd: 10000, rootBlocks: blocks})
	seed, err := VerifySeed(bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	img := append(bytes.Clone(fx.root), random(t, rootSize-len(fx.root))...)
	damaged := []int{3, 100, 101, 400}
	for _, i := range damaged {
		img[i*4096+9] ^= 1
	}
	slot := faultdev.NewMem(faultdev.File, random(t, slotSize), 0)
	root := faultdev.NewMem(faultdev.File, img, 0)
	pw := faultdev.NewPower(-1)
	res, err := Reinstall(context.Background(), seed, bytes.NewReader(fx.img),
		slotwrite.Target{Slot: pw.Wrap(slot, faultdev.Options{}), SlotSize: slotSize, Root: pw.Wrap(root, faultdev.Options{}), RootSize: rootSize}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mb, err := checkSlot(slot, slotSize, root, fx.trusted); err != nil || !bytes.Equal(mb, fx.slotManifest) {
		t.Fatalf("the reinstalled slot: %v", err)
	}
	// Written: the damaged blocks, the tree, the container (header zeroed
	// first, kernel, initrd, manifest, signature, header).
	want := int64(len(damaged)*4096+len(fx.root)-blocks*4096) +
		int64(len(fx.kernel)+len(fx.initrd)+len(fx.slotManifest)+len(fx.slotSig)) + 2*slotimg.HeaderSize
	if got := pw.Steps(); got != want {
		t.Errorf("the reinstall wrote %d bytes, want %d (%d damaged blocks of %d, the tree and the container)", got, want, len(damaged), blocks)
	}
	if c := res.Blocks; c.InPlace != blocks-uint64(len(damaged)) || c.Fetched != uint64(len(damaged)) {
		t.Errorf("blocks: %v, want %d in place and %d from the seed", c, blocks-len(damaged), len(damaged))
	}
}
