package recovery

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/testkit/faultdev"
)

// TestWipeData: the data partition ends up as the seed's file system, zeros
// everywhere else; under power cuts block 0 holds the new superblock only
// when everything else is written.
func TestWipeData(t *testing.T) {
	fx := makeSeed(t, small)
	seed, err := VerifySeed(bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	const size = 96 * 4096 // larger than the file system
	want := append(bytes.Clone(fx.dataImg), make([]byte, size-len(fx.dataImg))...)
	old := random(t, size)

	var last, total int64
	dev := faultdev.NewMem(faultdev.File, old, 0)
	err = WipeData(context.Background(), seed, bytes.NewReader(fx.img), dev, size, func(done, tot int64, _ float64) {
		if done < last || done > tot {
			t.Errorf("progress %d of %d after %d", done, tot, last)
		}
		last, total = done, tot
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dev.Bytes(), want) {
		t.Error("the wiped partition is not the seed's file system followed by zeros")
	}
	if last != total || total == 0 {
		t.Errorf("progress ended at %d of %d", last, total)
	}

	// Power cuts.
	pw := faultdev.NewPower(-1)
	if err := WipeData(context.Background(), seed, bytes.NewReader(fx.img), pw.Wrap(faultdev.NewMem(faultdev.File, old, 0), faultdev.Options{WriteUnit: 512}), size, nil); err != nil {
		t.Fatal(err)
	}
	steps := pw.Steps()
	for b := int64(0); b < steps; b++ {
		if b > 8 && b < steps-24 && b%9 != 0 {
			continue
		}
		m := faultdev.NewMem(faultdev.File, old, 0)
		err := WipeData(context.Background(), seed, bytes.NewReader(fx.img), faultdev.New(m, b, faultdev.Options{WriteUnit: 512}), size, nil)
		if !errors.Is(err, faultdev.ErrPowerCut) {
			t.Fatalf("budget %d: %v", b, err)
		}
		got := m.Bytes()
		if bytes.Equal(got[:4096], want[:4096]) && !bytes.Equal(got, want) {
			t.Fatalf("budget %d of %d: the new superblock is in place before the rest is written", b, steps)
		}
		if err := WipeData(context.Background(), seed, bytes.NewReader(fx.img), m, size, nil); err != nil || !bytes.Equal(m.Bytes(), want) {
			t.Fatalf("budget %d: resumed wipe: %v", b, err)
		}
	}

	// Refusals: nothing written.
	noData := makeSeed(t, seedOpts{kernel: 100, initrd: 100, rootBlocks: 2})
	nd, err := VerifySeed(bytes.NewReader(noData.img), int64(len(noData.img)), noData.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(fx.img)
	e := fx.entry(t, "data")
	tampered[e.Offset+4096+10] ^= 1
	for name, tc := range map[string]struct {
		seed *Seed
		src  []byte
		size int64
		want string
	}{
		"no-data":  {nd, noData.img, size, "no data entry"},
		"small":    {seed, fx.img, 32 * 4096, "the data partition has 131072"},
		"tampered": {seed, tampered, size, "seed data digest mismatch"},
	} {
		m := faultdev.NewMem(faultdev.File, old, 0)
		err := WipeData(context.Background(), tc.seed, bytes.NewReader(tc.src), m, tc.size, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: WipeData = %v, want %q", name, err, tc.want)
		}
		if !bytes.Equal(m.Bytes(), old) {
			t.Errorf("%s: a refused wipe wrote", name)
		}
	}
}

// imagePart is a partition inside a disk image as a device: it drops its
// own range of the image's page cache (slotwrite.CacheDropper); this one
// records the ranges it was asked to drop.
type imagePart struct {
	*faultdev.Mem
	dropped [][2]int64
}

func (p *imagePart) DropCache(off, n int64) { p.dropped = append(p.dropped, [2]int64{off, n}) }

// covers reports whether the dropped ranges cover every 4 KiB block of
// [off, off+n).
func (p *imagePart) covers(off, n int64) bool {
	for b := off; b < off+n; b += 4096 {
		if !slices.ContainsFunc(p.dropped, func(d [2]int64) bool { return d[0] <= b && b+4096 <= d[0]+d[1] }) {
			return false
		}
	}
	return true
}

// TestReadBackDropsPartitionCache: before it reads back what it wrote, the
// factory reset and the reinstall drop the page cache of a partition that
// lives inside a disk image file (through its CacheDropper), as the OTA
// install always did: the read-back reads the medium. The old recovery
// helper dropped the cache of an *os.File only, the whole file.
func TestReadBackDropsPartitionCache(t *testing.T) {
	fx := makeSeed(t, small)
	seed, err := VerifySeed(bytes.NewReader(fx.img), int64(len(fx.img)), fx.trusted, testBoard)
	if err != nil {
		t.Fatal(err)
	}
	const size = 96 * 4096
	data := &imagePart{Mem: faultdev.NewMem(faultdev.File, random(t, size), 0)}
	if err := WipeData(context.Background(), seed, bytes.NewReader(fx.img), data, size, nil); err != nil {
		t.Fatal(err)
	}
	if !data.covers(0, size) {
		t.Errorf("the factory reset dropped %v of the data partition's cache, want all %d bytes", data.dropped, size)
	}
	slot := &imagePart{Mem: faultdev.NewMem(faultdev.File, random(t, 64<<10), 0)}
	root := &imagePart{Mem: faultdev.NewMem(faultdev.File, random(t, 256<<10), 0)}
	if err := reinstall(context.Background(), seed, bytes.NewReader(fx.img), slotwrite.Target{Slot: slot, SlotSize: 64 << 10, Root: root, RootSize: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	if !slot.covers(0, 64<<10) || !root.covers(0, int64(len(fx.root))) {
		t.Errorf("the reinstall dropped %v of the slot's and %v of the root's cache, want the slot and the %d bytes of the root", slot.dropped, root.dropped, len(fx.root))
	}
}
