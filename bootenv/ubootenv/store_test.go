package ubootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/storetest"
	"github.com/keelboot/keel/testkit/faultdev"
)

const testEnvSize = 0x4000

func fileConfig(t testing.TB, redundant bool) string {
	t.Helper()
	dir := t.TempDir()
	env := filepath.Join(dir, "env.bin")
	if err := os.WriteFile(env, make([]byte, 2*testEnvSize), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("%s 0x0 %#x\n", env, testEnvSize)
	if redundant {
		cfg += fmt.Sprintf("%s %#x %#x\n", env, testEnvSize, testEnvSize)
	}
	p := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func configOpener(path string) storetest.Opener {
	return func() (bootenv.Store, error) {
		cfg, err := LoadConfig(path)
		if err != nil {
			return nil, err
		}
		st, err := Open(cfg)
		if err != nil {
			return nil, err
		}
		return NewStore(st, path), nil
	}
}

// memOpener opens a store over in-memory flash media (one per copy), as
// an MTD device would be: NOR with boolean flags, NAND with counters.
func memOpener(kind faultdev.Kind, redundant bool) storetest.Opener {
	const erase = 0x1000
	flags := FlagCounter
	if kind == faultdev.NOR {
		flags = FlagBoolean
	}
	cfg := &Config{Copies: []DeviceConfig{{Path: "mtd0", Size: testEnvSize, SectorSize: erase}}}
	mems := []*faultdev.Mem{faultdev.Erased(kind, testEnvSize, erase)}
	if redundant {
		cfg.Copies = append(cfg.Copies, DeviceConfig{Path: "mtd1", Size: testEnvSize, SectorSize: erase})
		mems = append(mems, faultdev.Erased(kind, testEnvSize, erase))
	}
	return func() (bootenv.Store, error) {
		devs := make([]Device, len(mems))
		for i, m := range mems {
			devs[i] = m
		}
		st, err := OpenDevices(cfg, devs, flags)
		if err != nil {
			return nil, err
		}
		return NewStore(st, "mtd"), nil
	}
}

// loopOpener puts a redundant env on a real block device (a loop device
// over a file), as on a device's bootstate partition.
func loopOpener(t *testing.T) storetest.Opener {
	t.Helper()
	img := filepath.Join(t.TempDir(), "part.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup (the block-device backend test needs loop devices; run as root): %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	p := filepath.Join(t.TempDir(), "fw_env.config")
	cfg := fmt.Sprintf("%s 0x0 %#x\n%s %#x %#x\n", dev, testEnvSize, dev, testEnvSize, testEnvSize)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return configOpener(p)
}

func TestStoreConformance(t *testing.T) {
	t.Run("file-single", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Opener { return configOpener(fileConfig(t, false)) })
	})
	t.Run("file-redundant", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Opener { return configOpener(fileConfig(t, true)) })
	})
	t.Run("block-redundant", func(t *testing.T) {
		storetest.Run(t, loopOpener)
	})
	t.Run("nor-mtd-redundant", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Opener { return memOpener(faultdev.NOR, true) })
	})
	t.Run("nand-mtd-redundant", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Opener { return memOpener(faultdev.NAND, true) })
	})
}

// TestStorePreservesOtherVars: the keel record lives next to the env's own
// variables, which keep their values and order.
func TestStorePreservesOtherVars(t *testing.T) {
	path := fileConfig(t, true)
	cfg, _ := LoadConfig(path)
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := &Env{}
	for _, v := range []Var{{"bootcmd", "run keel; reset"}, {"bootdelay", "0"}, {"ethaddr", "52:54:00:12:34:56"}} {
		if err := e.Set(v.Name, v.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Write(e); err != nil {
		t.Fatal(err)
	}
	s := NewStore(st, path)
	if _, err := s.Load(); err == nil {
		t.Fatal("Load of an env without keel_* variables succeeded")
	}
	r, _ := bootenv.Init(nil, "a")
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	r, _ = bootenv.Try(r, "b", 2, bootenv.NewID())
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	r, _ = bootenv.MarkGood(r, "b")
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	got, err := st.Read()
	if err != nil {
		t.Fatal(err)
	}
	vars := got.Vars()
	if len(vars) < 3 || vars[0] != e.Vars()[0] || vars[1] != e.Vars()[1] || vars[2] != e.Vars()[2] {
		t.Errorf("the env's own variables moved or changed: %v", vars)
	}
	if _, ok := got.Get("keel_slot_b_tries"); ok {
		t.Error("a variable the record no longer has was left behind")
	}
}

// TestStorePowerCut cuts the power at every step of a Commit (every byte
// written, every erase block, the obsolete-flag write of a NOR env) and
// checks that the store then loads the old record or the new one: never a
// mix, never an error, never "no state". Several commits in a row, so both
// copies are the target in turn, with the counter flag near its wrap.
func TestStorePowerCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  faultdev.Kind
		flags FlagKind
		opt   faultdev.Options
	}{
		{"file-counter", faultdev.File, FlagCounter, faultdev.Options{}},
		{"nor-boolean", faultdev.NOR, FlagBoolean, faultdev.Options{EraseUnit: 0x1000, TornErase: true}},
		{"nand-counter", faultdev.NAND, FlagCounter, faultdev.Options{WriteUnit: 512, EraseUnit: 0x1000, TornErase: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 0x1000
			cfg := &Config{Copies: []DeviceConfig{
				{Path: "copy1", Size: size, SectorSize: 0x1000},
				{Path: "copy2", Size: size, SectorSize: 0x1000},
			}}
			var mems [2]*faultdev.Mem
			for i := range mems {
				if tc.kind == faultdev.File {
					mems[i] = faultdev.NewMem(faultdev.File, make([]byte, size), 0)
				} else {
					mems[i] = faultdev.Erased(tc.kind, size, 0x1000)
				}
			}
			open := func(m [2]*faultdev.Mem, p *faultdev.Power) *Store {
				devs := []Device{m[0], m[1]}
				if p != nil {
					devs = []Device{p.Wrap(m[0], tc.opt), p.Wrap(m[1], tc.opt)}
				}
				st, err := OpenDevices(cfg, devs, tc.flags)
				if err != nil {
					t.Fatal(err)
				}
				return NewStore(st, "faultdev")
			}
			r, _ := bootenv.Init(nil, "a")
			if err := open(mems, nil).Commit(r); err != nil {
				t.Fatal(err)
			}
			cuts := 0
			// 260 commits take a counter flag through 0xFF -> 0x00; cut
			// every step of a few of them (those are the slow part).
			for commit := 0; commit < 260; commit++ {
				var next bootenv.Record
				switch commit % 3 {
				case 0:
					next, _ = bootenv.Try(r, "b", 1+commit%3, bootenv.NewID())
				case 1:
					_, next = bootenv.Select(r)
				default:
					next, _ = bootenv.MarkBad(r, "b", strings.Repeat("x", commit%40))
				}
				full := commit < 2 || (commit >= 253 && commit < 257)
				if testing.Short() {
					full = commit < 2
				}
				if full {
					// Count the steps of this commit, then cut at each.
					probe := [2]*faultdev.Mem{mems[0].Clone(), mems[1].Clone()}
					p := faultdev.NewPower(-1)
					if err := open(probe, p).Commit(next); err != nil {
						t.Fatal(err)
					}
					for budget := int64(0); budget < p.Steps(); budget++ {
						m := [2]*faultdev.Mem{mems[0].Clone(), mems[1].Clone()}
						_ = open(m, faultdev.NewPower(budget)).Commit(next)
						got, err := open(m, nil).Load()
						if err != nil {
							t.Fatalf("commit %d, cut after %d of %d steps: Load: %v", commit, budget, p.Steps(), err)
						}
						if !got.Equal(r) && !got.Equal(next) {
							t.Fatalf("commit %d, cut after %d of %d steps: loaded generation %d, want %d or %d",
								commit, budget, p.Steps(), got.Generation, r.Generation, next.Generation)
						}
						cuts++
					}
				}
				if err := open(mems, nil).Commit(next); err != nil {
					t.Fatal(err)
				}
				r = next
			}
			t.Logf("%d power cuts checked", cuts)
		})
	}
}

func BenchmarkStoreLoadCommit(b *testing.B) {
	b.Run("file-single", func(b *testing.B) { storetest.BenchmarkLoadCommit(b, configOpener(fileConfig(b, false))) })
	b.Run("file-redundant", func(b *testing.B) { storetest.BenchmarkLoadCommit(b, configOpener(fileConfig(b, true))) })
	b.Run("nor-mtd-redundant", func(b *testing.B) { storetest.BenchmarkLoadCommit(b, memOpener(faultdev.NOR, true)) })
}

// TestOwnedEnvStartsOver: both copies of keel's bootstate env fail their
// CRC but would check at another size (an env written with another
// geometry). On keel's own partition (BootstateConfig, Owned) keel-init can
// start over; through a device's fw_env.config the write is refused, as it
// would destroy an env U-Boot can read (issue 9 item 5).
func TestOwnedEnvStartsOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bootstate")
	if err := os.WriteFile(path, make([]byte, 4*BootstateEnvSize), 0o644); err != nil {
		t.Fatal(err)
	}
	// An env of 0x4000 per copy at the bootstate offsets.
	small := &Config{Copies: []DeviceConfig{{Path: path, Offset: 0, Size: 0x4000}, {Path: path, Offset: BootstateEnvSize, Size: 0x4000}}}
	st, err := Open(small)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{}
	e.Set("bootcmd", "run other")
	for range 2 { // both copies
		if err := st.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	r, _ := bootenv.Init(nil, "a")
	foreign, err := BootstateConfig(path, 0, 4*BootstateEnvSize)
	if err != nil {
		t.Fatal(err)
	}
	foreign.Owned = false
	fs, err := Open(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if err := NewStore(fs, path).Commit(r); err == nil {
		t.Error("a foreign env at another size was overwritten")
	}
	fs.Close()

	cfg, err := BootstateConfig(path, 0, 4*BootstateEnvSize)
	if err != nil {
		t.Fatal(err)
	}
	os2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer os2.Close()
	s := NewStore(os2, path)
	if _, err := s.Load(); !errors.Is(err, bootenv.ErrCorrupt) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
	}
	if err := s.Commit(r); err != nil {
		t.Fatalf("keel's own bootstate: starting over refused: %v", err)
	}
	if got, err := s.Load(); err != nil || !got.Equal(r) {
		t.Errorf("Load after starting over = %+v, %v", got, err)
	}
}

// TestDuplicateRecordVariable: an env that sets a keel_* variable twice
// (fw_setenv cannot, but anyone with the device can write such an env) is
// a corrupt record, not "the last one wins" (issue 9 item 9); the env's
// own variables may repeat, as U-Boot allows.
func TestDuplicateRecordVariable(t *testing.T) {
	for name, extra := range map[string]string{
		"keel_active twice": "keel_active=b\x00",
		"bootcmd twice":     "bootcmd=run other\x00",
	} {
		t.Run(name, func(t *testing.T) {
			path := fileConfig(t, false)
			cfg, _ := LoadConfig(path)
			st, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s := NewStore(st, path)
			r, _ := bootenv.Init(nil, "a")
			r, _ = bootenv.Try(r, "b", 1, bootenv.NewID())
			r, _ = bootenv.MarkGood(r, "b")
			r, _ = bootenv.SetActive(r, "a")
			e := &Env{}
			e.Set("bootcmd", "run keel")
			for _, v := range bootenv.Encode(r) {
				e.Set(v.Name, v.Value)
			}
			data, err := encodeData(e, int(st.size)-headerSize(false))
			if err != nil {
				t.Fatal(err)
			}
			// Append the second setting after the last entry.
			end := bytes.Index(data, []byte("\x00\x00")) + 1
			data = append(append(data[:end:end], extra...), make([]byte, len(data)-end-len(extra))...)
			raw := make([]byte, 4, st.size)
			binary.LittleEndian.PutUint32(raw, crc32.ChecksumIEEE(data))
			raw = append(raw, data...)
			a := st.areas[0]
			if _, err := a.dev.WriteAt(raw, a.off); err != nil {
				t.Fatal(err)
			}
			_, err = s.Load()
			if strings.HasPrefix(name, "keel_") {
				if !errors.Is(err, bootenv.ErrCorrupt) || !strings.Contains(err.Error(), "keel_active is set twice") {
					t.Fatalf("Load = %v, want ErrCorrupt naming keel_active", err)
				}
			} else if err != nil {
				t.Fatalf("Load = %v: the env's own variables may repeat", err)
			}
		})
	}
}
