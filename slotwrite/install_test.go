package slotwrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/testkit/faultdev"
	"github.com/keelboot/keel/update/source"
)

func TestInstallFull(t *testing.T) {
	f := newFixture(t, 1, 300, 5, false)
	plain := bundletest.PlainBundle(t, f.v1, f.key)
	for _, kind := range []string{"file", "pipe", "file, format 1", "pipe, format 1"} {
		t.Run(kind, func(t *testing.T) {
			d := newDevice(t, nil)
			full := f.full1
			if strings.HasSuffix(kind, "format 1") {
				full = plain
			}
			src := mem(full)
			if strings.HasPrefix(kind, "pipe") {
				src = source.Stream(bytes.NewReader(full), "pipe")
			}
			o := d.options(f.trusted, nil)
			var events []Event
			begun := 0
			o.Begin = func(*bundle.Bundle) error { begun++; return nil }
			o.Progress = func(e Event) { events = append(events, e) }
			res, err := install(t, src, o)
			if err != nil {
				t.Fatal(err)
			}
			d.checkSlot(t, f.v1)
			if begun != 1 {
				t.Errorf("Begin called %d times", begun)
			}
			c := res.Blocks
			// The zero blocks are in place on an empty target.
			if c.InPlace+c.Zero+c.Copied+c.Target+c.Active+c.Fetched != 300 || c.Fetched == 0 || c.InPlace == 0 || c.Copied == 0 {
				t.Errorf("blocks: %v", c)
			}
			if last := events[len(events)-1]; last.Phase != "done" {
				t.Errorf("last event %+v", last)
			}
			// Each phase counts up to its total: its last event says
			// Done == Total (a progress line reaches 100%).
			phases := map[string]bool{}
			for i, e := range events {
				phases[e.Phase] = true
				if e.Done > e.Total {
					t.Fatalf("event %+v: done > total", e)
				}
				if i+1 < len(events) && events[i+1].Phase != e.Phase && e.Done != e.Total {
					t.Errorf("the %s phase ended at %d of %d bytes", e.Phase, e.Done, e.Total)
				}
			}
			for _, p := range []string{"index", "write", "verify", "done"} {
				if !phases[p] {
					t.Errorf("no %s event", p)
				}
			}
			// Fetched: all but the zero and repeated blocks (and, from a
			// pipe, everything: a pipe cannot skip without reading). A
			// format-2 bundle stores them compressed: at most all of it.
			if max := int64(len(full)) - int64(c.InPlace+c.Zero+c.Copied)*4096; kind == "file, format 1" && res.Fetched > max {
				t.Errorf("fetched %d bytes of a %d-byte bundle, want at most %d", res.Fetched, len(full), max)
			}
			if res.Fetched > int64(len(full)) {
				t.Errorf("fetched %d bytes of a %d-byte bundle", res.Fetched, len(full))
			}
		})
	}
}

// TestInstallDelta: with the old version active, only the changed blocks
// (and the header, manifest and tree) are fetched; the unchanged kernel
// and initrd are copied from the active slot. From a format-2 bundle, the
// chunks that hold them.
func TestInstallDelta(t *testing.T) {
	f := newFixture(t, 2, 400, 6, false)
	for _, c := range []struct {
		name   string
		bundle []byte
	}{{"format 1", bundletest.PlainBundle(t, f.v2, f.key)}, {"format 2", bundletest.ChunkedBundle(t, f.v2, bundle.MinChunk, f.key)}} {
		t.Run(c.name, func(t *testing.T) {
			d := newDevice(t, f.v1)
			res, err := install(t, mem(c.bundle), d.options(f.trusted, nil))
			if err != nil {
				t.Fatal(err)
			}
			d.checkSlot(t, f.v2)
			if res.Blocks.Fetched > 6 || res.Blocks.Active < 300 {
				t.Errorf("blocks: %v, want at most the 6 changed fetched", res.Blocks)
			}
			if res.LocalContainer != int64(len(f.v2.Kernel)+len(f.v2.Initrd)) {
				t.Errorf("kernel and initrd from the active slot: %d bytes", res.LocalContainer)
			}
			h := mustHeader(t, f, c.bundle)
			tp, _ := h.Part(bundle.PartTree)
			limit := int64(4096*3) + 8*4096 + tp.Size + 8192
			if h.Chunks != nil {
				// The header, the index, the manifest's, signature's and
				// tree's chunks, and at most 6 data chunks (incompressible
				// random blocks: stored about as large).
				limit = int64(4096*3) + h.Chunks.IndexSize + 2*4096 + tp.Size + 6*(bundle.MinChunk+bundle.MinChunk/64)
			}
			if res.Fetched > limit {
				t.Errorf("fetched %d bytes for a 6-block change, want at most %d", res.Fetched, limit)
			}
			t.Logf("delta: fetched %d of %d bytes (%.1f%%), blocks %v", res.Fetched, len(c.bundle), 100*float64(res.Fetched)/float64(len(c.bundle)), res.Blocks)
		})
	}
	d := newDevice(t, f.v1)
	res, err := install(t, mem(f.full2), d.options(f.trusted, nil))
	if err != nil {
		t.Fatal(err)
	}

	// Run again: everything is in place, almost nothing is fetched.
	res, err = install(t, mem(f.full2), d.options(f.trusted, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Blocks.InPlace != 400 {
		t.Errorf("second run: %v, want every block in place", res.Blocks)
	}
	// NoLocal: nothing from the device (zero and repeated blocks are
	// still not fetched twice).
	d2 := newDevice(t, f.v1)
	o := d2.options(f.trusted, nil)
	o.NoLocal = true
	if res, err = install(t, mem(f.full2), o); err != nil {
		t.Fatal(err)
	}
	d2.checkSlot(t, f.v2)
	if res.Blocks.Active+res.Blocks.InPlace+res.Blocks.Target != 0 || res.LocalContainer != 0 {
		t.Errorf("NoLocal: %v, %d container bytes local", res.Blocks, res.LocalContainer)
	}
}

func mustHeader(t *testing.T, f *fixture, b []byte) *bundle.Header {
	t.Helper()
	bb, err := bundle.Open(context.Background(), mem(b), f.trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	return bb.Header
}

// staticDelta makes the static delta bundle from f.full1 to f.full2.
func staticDelta(t *testing.T, f *fixture) []byte {
	t.Helper()
	ctx := context.Background()
	nb, err := bundle.Open(ctx, mem(f.full2), f.trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	tr, _, err := nb.ReadTree(ctx, mem(f.full2))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.DeltaMap(tr, bytes.NewReader(f.v1.Data), f.v1.Tree(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ob, err := bundle.Open(ctx, mem(f.full1), f.trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Write(&out, bundle.Input{Manifest: f.v2.Manifest, Sig: f.v2.Sig, Kernel: f.v2.Kernel, Initrd: f.v2.Initrd,
		Root: bytes.NewReader(f.v2.Root), Delta: &bundle.Delta{From: ob.Header.Version, FromRootHash: ob.Manifest.Root.Verity.RootHash}, Map: m}, f.key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestInstallStaticDelta(t *testing.T) {
	f := newFixture(t, 3, 300, 4, true)
	delta := staticDelta(t, f)
	if len(delta) > len(f.full2)/4 {
		t.Errorf("static delta of a 4-block change is %d bytes, the full bundle %d", len(delta), len(f.full2))
	}
	for _, kind := range []string{"file", "pipe"} {
		src := func() source.Source {
			if kind == "pipe" {
				return source.Stream(bytes.NewReader(delta), "pipe")
			}
			return mem(delta)
		}
		// On a device running version 1: installs.
		d := newDevice(t, f.v1)
		if _, err := install(t, src(), d.options(f.trusted, nil)); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		d.checkSlot(t, f.v2)
		// On a device without version 1: refused, naming the version it
		// needs; from a file before anything is written.
		d = newDevice(t, nil)
		o := d.options(f.trusted, nil)
		begun := false
		o.Begin = func(*bundle.Bundle) error { begun = true; return nil }
		_, err := install(t, src(), o)
		if !errors.Is(err, ErrDeltaSource) || !strings.Contains(err.Error(), "version 1.0") {
			t.Fatalf("%s: delta on a device without its source: %v", kind, err)
		}
		if kind == "file" && (begun || !bytes.Equal(d.slot.Bytes(), make([]byte, slotSize))) {
			t.Errorf("a delta that cannot apply began (%v) or wrote", begun)
		}
		var nh errNoHeader
		if err := d.slotState(f.v2); !errors.As(err, &nh) {
			t.Errorf("%s: after the refused delta the target is %v, want no header", kind, err)
		}
	}
}

// TestInstallRefused: bad bundles and bad fits are refused before
// anything is written; a bad data block fails the install naming it.
func TestInstallRefused(t *testing.T) {
	f := newFixture(t, 4, 200, 3, false)
	other, otherTrusted := bundletest.Keys(t, "someone else")
	_ = otherTrusted
	plain := bundletest.PlainBundle(t, f.v1, f.key)
	h := mustHeader(t, f, plain)
	part := func(name string) bundle.Part { p, _ := h.Part(name); return p }
	flipIn := func(b []byte, off int64) []byte {
		b = append([]byte(nil), b...)
		b[off] ^= 0x40
		return b
	}
	flip := func(off int64) []byte { return flipIn(plain, off) }
	dp := part(bundle.PartData)
	// Format 2: the index right after the header region, the data part's
	// chunks at the end.
	hl, sl, err := bundle.ParsePreamble(f.full1)
	if err != nil {
		t.Fatal(err)
	}
	index := bundle.RegionSize(hl, sl)
	b2, err := bundle.Open(context.Background(), mem(f.full1), f.trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	dp2, _ := b2.Header.Part(bundle.PartData)
	_, last, _ := b2.ChunkOf(dp2.End() - 1)
	cases := []struct {
		name    string
		bundle  []byte
		opt     func(*opts)
		want    string
		written bool // the failure comes after Begin
	}{
		{"not a bundle", make([]byte, 8192), nil, "not a keel update bundle", false},
		{"header byte", flip(bundle.PreambleSize + 10), nil, "signature does not verify", false},
		{"signature", flip(bundle.PreambleSize + int64(bytes.Index(f.full1[bundle.PreambleSize:], []byte(`"sig"`))) + 10), nil, "", false},
		{"unknown key", bundletest.Bundle(t, f.v1, other), nil, "not among the trusted keys", false},
		{"manifest", flip(part(bundle.PartManifest).Offset + 5), nil, "manifest part has sha256", false},
		{"manifest sig", flip(part(bundle.PartSig).Offset + 5), nil, "part has sha256", false},
		{"kernel", flip(part(bundle.PartKernel).Offset + 100), nil, "kernel part has sha256", true},
		{"initrd", flip(part(bundle.PartInitrd).Offset + 100), nil, "initrd part has sha256", true},
		{"tree", flip(part(bundle.PartTree).Offset + 100), nil, "tree part has sha256", false},
		{"data block 17", flip(dp.Offset + 17*4096 + 1000), nil, "data block 17", true},
		{"truncated", plain[:len(plain)-4096], nil, "truncated", false},
		{"format 2 truncated", f.full1[:len(f.full1)-1], nil, "truncated", false},
		{"format 2 chunk index", flipIn(f.full1, index+1), nil, "chunk index has sha256", false},
		{"format 2 data chunk", flipIn(f.full1, last.Off+last.Len/2), nil, "chunk 8 (the data part's bytes 786432 to 819200) does not decompress", true},
		{"wrong board", plain, func(o *opts) { o.board = "other-board" }, "for another board", false},
		{"policy", f.full1, func(o *opts) {
			o.check = func(*bundle.Bundle) error { return errors.New("security version below the counter") }
		}, "below the counter", false},
		{"slot too small", f.full1, func(o *opts) { o.Target.SlotSize = 8192 }, "slot partition has 8192", false},
		{"root too small", f.full1, func(o *opts) { o.Target.RootSize = 100 * 4096 }, "root partition has", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDevice(t, nil)
			o := d.options(f.trusted, nil)
			begun := false
			o.Begin = func(*bundle.Bundle) error { begun = true; return nil }
			if c.opt != nil {
				c.opt(&o)
			}
			_, err := install(t, mem(c.bundle), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			if begun != c.written {
				t.Errorf("began: %v, want %v", begun, c.written)
			}
			if !c.written && !bytes.Equal(d.slot.Bytes(), make([]byte, slotSize)) {
				t.Error("the slot partition was written")
			}
			var nh errNoHeader
			if err := d.slotState(f.v1); !errors.As(err, &nh) {
				t.Errorf("after the failed install the target is %v, want no valid header", err)
			}
		})
	}
}

// TestInstallPowerCuts cuts the power at every write (4 KiB units) of an
// install, then checks the target is either without a valid header or
// complete, and that running the install again completes it, fetching
// little.
func TestInstallPowerCuts(t *testing.T) {
	f := newFixture(t, 5, 120, 3, true)
	for _, start := range []struct {
		name string
		dev  func() *device
	}{
		{"empty target", func() *device { return newDevice(t, f.v1) }},
		{"target holds version 1", func() *device { return prefilled(t, f) }},
	} {
		t.Run(start.name, func(t *testing.T) {
			// Count the steps of an uncut install.
			p := faultdev.NewPower(-1)
			if _, err := install(t, mem(f.full2), start.dev().options(f.trusted, p)); err != nil {
				t.Fatal(err)
			}
			steps := p.Steps()
			if steps < 15 {
				t.Fatalf("only %d write steps", steps)
			}
			stride := int64(1)
			if testing.Short() {
				stride = 5
			}
			complete := 0
			for budget := int64(0); budget <= steps; budget = nextBudget(budget, stride, steps) {
				d := start.dev()
				before := d.slotState(f.v1)
				_, err := install(t, mem(f.full2), d.options(f.trusted, faultdev.NewPower(budget)))
				where := fmt.Sprintf("cut after %d of %d steps", budget, steps)
				if budget < steps && !errors.Is(err, faultdev.ErrPowerCut) {
					t.Fatalf("%s: %v", where, err)
				}
				// After the cut: untouched (a cut before the first
				// write), no valid header, or version 2 complete.
				var nh errNoHeader
				switch err := d.slotState(f.v2); {
				case err == nil:
					complete++
				case errors.As(err, &nh):
				case budget == 0 && before == nil && d.slotState(f.v1) == nil:
				default:
					t.Fatalf("%s: the target has a valid header but %v", where, err)
				}
				res, err := install(t, mem(f.full2), d.options(f.trusted, nil))
				if err != nil {
					t.Fatalf("%s, then again: %v", where, err)
				}
				d.checkSlot(t, f.v2)
				if res.Blocks.Fetched > 3 {
					t.Fatalf("%s: the second run fetched %d blocks", where, res.Blocks.Fetched)
				}
			}
			if complete == 0 {
				t.Error("no cut left a complete slot (the last step is the header)")
			}
			t.Logf("%d cuts", steps/stride+1)
		})
	}
}

// prefilled is a device running version 1 whose target also holds version
// 1 (installed before the one that was active now).
func prefilled(t *testing.T, f *fixture) *device {
	d := newDevice(t, f.v1)
	if _, err := d.slot.WriteAt(d.activeSlot, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.root.WriteAt(d.activeRootPart, 0); err != nil {
		t.Fatal(err)
	}
	return d
}

// nextBudget steps through 0..steps by stride, always ending at steps.
func nextBudget(b, stride, steps int64) int64 {
	if b < steps && b+stride > steps {
		return steps
	}
	return b + stride
}

// TestInstallShortChunks: a target that already holds every other block
// of the new root (chunks of one block between blocks in place, over more
// than a region): the pipeline neither deadlocks nor misses a block.
func TestInstallShortChunks(t *testing.T) {
	f := newFixture(t, 6, 5000, 0, false)
	d := newDevice(t, nil)
	d.root = faultdev.NewMem(faultdev.File, make([]byte, 32<<20), 0)
	old := append([]byte(nil), f.v1.Root...)
	for i := 1; i < 5000; i += 2 {
		for k := 0; k < 4096; k++ {
			old[i*4096+k] ^= 0xa5
		}
	}
	if _, err := d.root.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	o := d.options(f.trusted, nil)
	o.Target.RootSize = 32 << 20
	res, err := install(t, mem(f.full1), o)
	if err != nil {
		t.Fatal(err)
	}
	d.checkSlot(t, f.v1)
	if res.Blocks.InPlace < 2400 {
		t.Errorf("blocks %v: want about half in place", res.Blocks)
	}
}
