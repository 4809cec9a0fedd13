package ubootenv

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/keelboot/keel/testkit/faultdev"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares got with testdata/golden/name (or writes it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s differs from the golden file at byte %#x (got %d bytes, want %d); if the change is intended, run go test -update", name, i, len(got), len(want))
	}
}

func goldenEnv(t *testing.T) *Env {
	return mustEnv(t,
		"bootcmd", "run keel_boot",
		"bootdelay", "0",
		"keel_slot_a", "good",
		"keel_slot_b", "trial",
		"keel_tries_b", "2",
		"ethaddr", "52:54:00:12:34:56",
	)
}

// The bytes keel writes, pinned: a change in layout, padding, CRC or flag
// handling shows up here. The golden images are also read back, so keel
// keeps reading what it wrote before.
func TestGolden(t *testing.T) {
	e := goldenEnv(t)
	t.Run("single", func(t *testing.T) {
		cfg, paths := makeFiles(t, 1, 0x400, 0x400, 0xFF)
		keelWrite(t, cfg, e)
		golden(t, "single-0x400.bin", readFile(t, paths[0]))
	})
	t.Run("empty-single", func(t *testing.T) {
		cfg, paths := makeFiles(t, 1, 0x100, 0x100, 0xFF)
		keelWrite(t, cfg, &Env{})
		golden(t, "empty-single-0x100.bin", readFile(t, paths[0]))
	})
	t.Run("redundant-three-writes", func(t *testing.T) {
		cfg, paths := makeFiles(t, 2, 0x400, 0x400, 0x00)
		for _, gen := range []string{"1", "2", "3"} {
			e2 := e.Clone()
			_ = e2.Set("keel_gen", gen)
			keelWrite(t, cfg, e2)
		}
		golden(t, "redundant-0x400-copy1.bin", readFile(t, paths[0]))
		golden(t, "redundant-0x400-copy2.bin", readFile(t, paths[1]))
	})
	t.Run("nor-boolean-two-writes", func(t *testing.T) {
		mem := faultdev.Erased(faultdev.NOR, 0x800, 0x400)
		cfg := &Config{Copies: []DeviceConfig{{Path: "nor", Size: 0x400}, {Path: "nor", Offset: 0x400, Size: 0x400}}}
		s, err := OpenDevices(cfg, []Device{mem, mem}, FlagBoolean)
		if err != nil {
			t.Fatal(err)
		}
		for _, gen := range []string{"1", "2"} {
			e2 := e.Clone()
			_ = e2.Set("keel_gen", gen)
			if err := s.Write(e2); err != nil {
				t.Fatal(err)
			}
		}
		golden(t, "nor-boolean-0x800.bin", mem.Bytes())
	})
}

func TestGoldenReadBack(t *testing.T) {
	if *update {
		t.Skip("rewriting golden files")
	}
	e := goldenEnv(t)
	dir := t.TempDir()
	cp := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, readFile(t, filepath.Join("testdata", "golden", name)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	single := &Config{Copies: []DeviceConfig{{Path: cp("single-0x400.bin"), Size: 0x400}}}
	assertVars(t, keelRead(t, single), e)
	empty := &Config{Copies: []DeviceConfig{{Path: cp("empty-single-0x100.bin"), Size: 0x100}}}
	if got := keelRead(t, empty); got.Len() != 0 {
		t.Fatalf("empty golden reads %q", got.Vars())
	}
	red := &Config{Copies: []DeviceConfig{{Path: cp("redundant-0x400-copy1.bin"), Size: 0x400}, {Path: cp("redundant-0x400-copy2.bin"), Size: 0x400}}}
	want := e.Clone()
	_ = want.Set("keel_gen", "3")
	assertVars(t, keelRead(t, red), want)
	if f := flagsOf(t, red); f != [2]byte{3, 2} {
		t.Fatalf("redundant golden flags %x, want 03 02", f)
	}
	nor := faultdev.NewMem(faultdev.NOR, readFile(t, filepath.Join("testdata", "golden", "nor-boolean-0x800.bin")), 0x400)
	s, err := OpenDevices(&Config{Copies: []DeviceConfig{{Path: "nor", Size: 0x400}, {Path: "nor", Offset: 0x400, Size: 0x400}}}, []Device{nor, nor}, FlagBoolean)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	want = e.Clone()
	_ = want.Set("keel_gen", "2")
	assertVars(t, got, want)
	if raw := nor.Bytes(); raw[flagOffset] != flagObsolete || raw[0x400+flagOffset] != flagActive {
		t.Fatalf("NOR golden flags %x %x, want 00 01", raw[flagOffset], raw[0x400+flagOffset])
	}
}
