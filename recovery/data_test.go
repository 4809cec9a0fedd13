package recovery

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keelboot/keel/internal/faultdev"
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
