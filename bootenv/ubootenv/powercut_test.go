package ubootenv

// Power-cut proof: a redundant env committed through a faultdev device
// whose power is cut at every step of the commit (every byte or page
// written, every erase block, the NOR obsolete-flag write) reads back as
// the old env or the new one, exactly, and never fails. A single copy can
// be left corrupt.

import (
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/keelboot/keel/testkit/faultdev"
)

// rig is a redundant env on simulated media.
type rig struct {
	name  string
	flags FlagKind
	opt   faultdev.Options
	cfg   *Config
	mems  []*faultdev.Mem // the media, as left by the last full commit
	devOf []int           // copy i is on mems[devOf[i]]
}

func (r *rig) clone() []*faultdev.Mem {
	c := make([]*faultdev.Mem, len(r.mems))
	for i, m := range r.mems {
		c[i] = m.Clone()
	}
	return c
}

// open makes a Storage over mems, through power p when p is not nil.
func (r *rig) open(t testing.TB, mems []*faultdev.Mem, p *faultdev.Power) *Storage {
	t.Helper()
	devs := make([]Device, len(r.cfg.Copies))
	wrapped := make([]Device, len(mems))
	for i, m := range mems {
		wrapped[i] = m
		if p != nil {
			wrapped[i] = p.Wrap(m, r.opt)
		}
	}
	for i := range devs {
		devs[i] = wrapped[r.devOf[i]]
	}
	s, err := OpenDevices(r.cfg, devs, r.flags)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (r *rig) commit(t testing.TB, e *Env) {
	t.Helper()
	if err := r.open(t, r.mems, nil).Write(e); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) read(t testing.TB, mems []*faultdev.Mem) (*Env, error) {
	t.Helper()
	return r.open(t, mems, nil).Read()
}

func sameEnv(a, b *Env) bool { return reflect.DeepEqual(a.Vars(), b.Vars()) }

// cutEverywhere commits next over the rig's current state (which reads as
// prev) with the power cut after every possible number of steps, and checks
// each survivor. It returns the step count and how many cuts left prev and
// next. The rig's state is not changed.
func cutEverywhere(t *testing.T, r *rig, prev, next *Env, label string) (steps int64, olds, news int) {
	t.Helper()
	p := faultdev.NewPower(-1)
	if err := r.open(t, r.clone(), p).Write(next); err != nil {
		t.Fatalf("%s: uncut commit: %v", label, err)
	}
	steps = p.Steps()
	for budget := int64(0); budget <= steps; budget++ {
		mems := r.clone()
		err := r.open(t, mems, faultdev.NewPower(budget)).Write(next)
		switch {
		case budget < steps && !errors.Is(err, faultdev.ErrPowerCut):
			t.Fatalf("%s: cut after %d of %d steps: Write returned %v, want the power cut", label, budget, steps, err)
		case budget == steps && err != nil:
			t.Fatalf("%s: full budget: %v", label, err)
		}
		got, err := r.read(t, mems)
		if err != nil {
			t.Fatalf("%s: cut after %d of %d steps: Read: %v", label, budget, steps, err)
		}
		switch {
		case sameEnv(got, next):
			news++
		case sameEnv(got, prev):
			olds++
			if budget == steps {
				t.Fatalf("%s: complete commit reads the old env", label)
			}
		default:
			t.Fatalf("%s: cut after %d of %d steps: read %q, neither old %q nor new %q", label, budget, steps, got.Vars(), prev.Vars(), next.Vars())
		}
		// Now and then, check the survivor takes the next commit too.
		if budget%97 == 0 {
			after := mustEnv(t, "after", fmt.Sprint(budget))
			if err := r.open(t, mems, nil).Write(after); err != nil {
				t.Fatalf("%s: commit after a cut at %d: %v", label, budget, err)
			}
			if got, err := r.read(t, mems); err != nil || !sameEnv(got, after) {
				t.Fatalf("%s: read after recommit: %v %v", label, got, err)
			}
		}
	}
	if olds == 0 || news == 0 {
		t.Fatalf("%s: %d cuts left the old env and %d the new one; expected both", label, olds, news)
	}
	return steps, olds, news
}

// rigs returns fresh redundant rigs, each holding no env yet.
func rigs() []*rig {
	const size = 0x800
	two := func(a, b DeviceConfig) *Config { return &Config{Copies: []DeviceConfig{a, b}} }
	return []*rig{
		{name: "file-counter-one-device", flags: FlagCounter,
			cfg:  two(DeviceConfig{Path: "img", Size: size}, DeviceConfig{Path: "img", Offset: size, Size: size}),
			mems: []*faultdev.Mem{faultdev.NewMem(faultdev.File, make([]byte, 2*size), 0)}, devOf: []int{0, 0}},
		{name: "file-counter-two-devices", flags: FlagCounter,
			cfg:  two(DeviceConfig{Path: "a", Size: size}, DeviceConfig{Path: "b", Size: size}),
			mems: []*faultdev.Mem{faultdev.NewMem(faultdev.File, make([]byte, size), 0), faultdev.NewMem(faultdev.File, make([]byte, size), 0)}, devOf: []int{0, 1}},
		{name: "nor-boolean-bytes", flags: FlagBoolean, opt: faultdev.Options{EraseUnit: 0x400},
			cfg:  two(DeviceConfig{Path: "mtd", Size: size}, DeviceConfig{Path: "mtd", Offset: 0x1000, Size: size}),
			mems: []*faultdev.Mem{faultdev.Erased(faultdev.NOR, 0x2000, 0x400)}, devOf: []int{0, 0}},
		{name: "nor-boolean-torn-erase", flags: FlagBoolean, opt: faultdev.Options{EraseUnit: 0x400, TornErase: true},
			cfg:  two(DeviceConfig{Path: "mtd1", Size: size}, DeviceConfig{Path: "mtd2", Size: size}),
			mems: []*faultdev.Mem{faultdev.Erased(faultdev.NOR, size, 0x400), faultdev.Erased(faultdev.NOR, size, 0x400)}, devOf: []int{0, 1}},
		{name: "nor-boolean-pages", flags: FlagBoolean, opt: faultdev.Options{WriteUnit: 0x100, EraseUnit: 0x400, TornErase: true},
			cfg:  two(DeviceConfig{Path: "mtd", Size: size, SectorSize: 0x800}, DeviceConfig{Path: "mtd", Offset: 0x800, Size: size, SectorSize: 0x800}),
			mems: []*faultdev.Mem{faultdev.Erased(faultdev.NOR, 0x1000, 0x400)}, devOf: []int{0, 0}},
		{name: "nand-counter-pages-badblock", flags: FlagCounter, opt: faultdev.Options{WriteUnit: 0x200, EraseUnit: 0x400, TornErase: true},
			cfg:  two(DeviceConfig{Path: "nand", Size: size, Sectors: 3}, DeviceConfig{Path: "nand", Offset: 0xC00, Size: size, Sectors: 3}),
			mems: []*faultdev.Mem{nandWithBadBlock()}, devOf: []int{0, 0}},
	}
}

func nandWithBadBlock() *faultdev.Mem {
	m := faultdev.Erased(faultdev.NAND, 0x1800, 0x400)
	m.MarkBad(0x400) // the middle block of copy 1's three
	return m
}

// envN is the n-th env of a sequence: sizes vary so that later commits are
// shorter and longer than earlier ones.
func envN(t testing.TB, n int) *Env {
	return mustEnv(t, "bootcmd", "run keel_boot", "keel_gen", fmt.Sprint(n),
		"keel_pad", strings.Repeat(string(rune('a'+n%26)), (n*211)%900))
}

func TestPowerCutRedundant(t *testing.T) {
	for _, r := range rigs() {
		t.Run(r.name, func(t *testing.T) {
			prev := envN(t, 0)
			r.commit(t, prev)
			// Successive commits: the target alternates between the copies.
			for n := 1; n <= 4; n++ {
				next := envN(t, n)
				steps, olds, news := cutEverywhere(t, r, prev, next, fmt.Sprintf("commit %d", n))
				t.Logf("commit %d: %d steps, %d cuts kept the old env, %d the new", n, steps, olds, news)
				r.commit(t, next)
				prev = next
			}
		})
	}
}

// The counter crosses 0xFF -> 0x00 during commits cut at every step, with
// the 0x00 landing in each copy in turn.
func TestPowerCutFlagWrap(t *testing.T) {
	for _, r := range rigs() {
		if r.flags != FlagCounter || r.name == "file-counter-two-devices" {
			continue
		}
		for _, skew := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/skew=%d", r.name, skew), func(t *testing.T) {
				r := rigByName(r.name)
				n := 0
				// Advance until the current flag is 0xFC or 0xFD.
				for ; n < 0xFC+skew; n++ {
					r.commit(t, envN(t, n))
				}
				prev := envN(t, n-1)
				var flagsSeen []byte
				for i := 0; i < 4; i++ {
					next := envN(t, n)
					cutEverywhere(t, r, prev, next, fmt.Sprintf("commit %d", n))
					r.commit(t, next)
					s := r.open(t, r.mems, nil)
					st := s.load()
					flagsSeen = append(flagsSeen, st[current(s.flags, st)].flag)
					prev = next
					n++
				}
				t.Logf("flags of the new copies: %x", flagsSeen)
				if !strings.Contains(fmt.Sprintf("%x", flagsSeen), "ff00") {
					t.Fatalf("flags %x did not cross the wrap", flagsSeen)
				}
			})
		}
	}
}

func rigByName(name string) *rig {
	for _, r := range rigs() {
		if r.name == name {
			return r
		}
	}
	panic(name)
}

// A long chain of commits, each cut at a random step, each survivor the
// start of the next commit: whatever was read last, or the new env.
func TestPowerCutChain(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, r := range rigs() {
		t.Run(r.name, func(t *testing.T) {
			last := envN(t, 0)
			r.commit(t, last)
			for n := 1; n <= 300; n++ {
				next := envN(t, n)
				p := faultdev.NewPower(-1)
				if err := r.open(t, r.clone(), p).Write(next); err != nil {
					t.Fatal(err)
				}
				budget := rng.Int63n(p.Steps() + 1)
				_ = r.open(t, r.mems, faultdev.NewPower(budget)).Write(next)
				got, err := r.read(t, r.mems)
				if err != nil {
					t.Fatalf("commit %d cut at %d/%d: %v", n, budget, p.Steps(), err)
				}
				if !sameEnv(got, last) && !sameEnv(got, next) {
					t.Fatalf("commit %d cut at %d/%d: read %q, neither %q nor %q", n, budget, p.Steps(), got.Vars(), last.Vars(), next.Vars())
				}
				last = got
			}
		})
	}
}

// A single copy is rewritten in place: a cut in the middle leaves no valid
// env. This documents that a single-copy env is not power-safe.
func TestPowerCutSingleCopyNotSafe(t *testing.T) {
	for _, kind := range []faultdev.Kind{faultdev.File, faultdev.NOR} {
		t.Run(kind.String(), func(t *testing.T) {
			var r *rig
			if kind == faultdev.File {
				r = &rig{flags: FlagCounter, cfg: &Config{Copies: []DeviceConfig{{Path: "img", Size: 0x400}}},
					mems: []*faultdev.Mem{faultdev.NewMem(faultdev.File, make([]byte, 0x400), 0)}, devOf: []int{0}}
			} else {
				r = &rig{flags: FlagCounter, opt: faultdev.Options{EraseUnit: 0x400, TornErase: true}, cfg: &Config{Copies: []DeviceConfig{{Path: "mtd", Size: 0x400}}},
					mems: []*faultdev.Mem{faultdev.Erased(faultdev.NOR, 0x400, 0x400)}, devOf: []int{0}}
			}
			old, next := envN(t, 1), envN(t, 2)
			r.commit(t, old)
			p := faultdev.NewPower(-1)
			if err := r.open(t, r.clone(), p).Write(next); err != nil {
				t.Fatal(err)
			}
			corrupt := 0
			for budget := int64(0); budget <= p.Steps(); budget++ {
				mems := r.clone()
				_ = r.open(t, mems, faultdev.NewPower(budget)).Write(next)
				got, err := r.read(t, mems)
				switch {
				case errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBlank):
					corrupt++
				case err != nil:
					t.Fatalf("cut at %d: %v", budget, err)
				case !sameEnv(got, old) && !sameEnv(got, next):
					t.Fatalf("cut at %d: a mix: %q", budget, got.Vars())
				}
			}
			if corrupt == 0 {
				t.Fatal("no cut left a single copy corrupt; the test does not cut where it should")
			}
			t.Logf("%d of %d cuts left the single copy unreadable", corrupt, p.Steps()+1)
		})
	}
}
