package ubootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/keelboot/keel/testkit/faultdev"
	"golang.org/x/sys/unix"
)

// makeFiles creates n device files of devSize bytes filled with fill and a
// config with one copy of size bytes at offset 0 of each.
func makeFiles(t testing.TB, n int, size, devSize int64, fill byte) (*Config, []string) {
	t.Helper()
	dir := t.TempDir()
	cfg := &Config{}
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("env%d.bin", i))
		if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, int(devSize)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		cfg.Copies = append(cfg.Copies, DeviceConfig{Path: p, Size: size})
	}
	return cfg, paths
}

func openT(t testing.TB, cfg *Config) *Storage {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertVars(t testing.TB, got *Env, want *Env) {
	t.Helper()
	if !reflect.DeepEqual(got.Vars(), want.Vars()) {
		t.Fatalf("env = %q\nwant  %q", got.Vars(), want.Vars())
	}
}

func TestStorageRoundTrip(t *testing.T) {
	for _, copies := range []int{1, 2} {
		for _, fill := range []byte{0x00, 0xFF} {
			t.Run(fmt.Sprintf("copies=%d/fill=%#x", copies, fill), func(t *testing.T) {
				cfg, paths := makeFiles(t, copies, 0x400, 0x400, fill)
				s := openT(t, cfg)
				if s.Redundant() != (copies == 2) {
					t.Fatal("Redundant()")
				}
				if _, err := s.Read(); !errors.Is(err, ErrBlank) {
					t.Fatalf("fresh storage: %v, want ErrBlank", err)
				}
				var flags []byte
				for i := 0; i < 5; i++ {
					e := mustEnv(t, "keel_gen", fmt.Sprint(i), "bootcmd", "run x")
					if err := s.Write(e); err != nil {
						t.Fatal(err)
					}
					got, err := s.Read()
					if err != nil {
						t.Fatal(err)
					}
					assertVars(t, got, e)
					// A fresh Storage sees the same.
					got2, err := openT(t, cfg).Read()
					if err != nil {
						t.Fatal(err)
					}
					assertVars(t, got2, e)
					if copies == 2 {
						flags = append(flags, readFile(t, paths[i%2])[flagOffset])
					}
				}
				// Redundant: first write to copy 1 with flag 1 (as U-Boot), then
				// alternate with the flag counting up.
				if copies == 2 && !bytes.Equal(flags, []byte{1, 2, 3, 4, 5}) {
					t.Fatalf("flags written %v, want 1..5 alternating copies", flags)
				}
			})
		}
	}
}

func TestCurrentCopy(t *testing.T) {
	valid := copyState{crcOK: true, env: &Env{}}
	invalid := copyState{bad: errors.New("bad")}
	tests := []struct {
		kind   FlagKind
		v0, v1 bool
		f0, f1 byte
		want   int
	}{
		{FlagCounter, true, false, 9, 10, 0},
		{FlagCounter, false, true, 10, 9, 1},
		{FlagCounter, false, false, 1, 2, -1},
		{FlagCounter, true, true, 1, 2, 1},
		{FlagCounter, true, true, 2, 1, 0},
		{FlagCounter, true, true, 0xFF, 0x00, 1}, // wrapped
		{FlagCounter, true, true, 0x00, 0xFF, 0}, // wrapped
		{FlagCounter, true, true, 0xFE, 0xFF, 1},
		{FlagCounter, true, true, 0x00, 0x01, 1},
		{FlagCounter, true, true, 0x01, 0xFF, 1}, // only 0x00 beats 0xFF
		{FlagCounter, true, true, 5, 5, 0},       // equal: first
		{FlagBoolean, true, true, 1, 0, 0},
		{FlagBoolean, true, true, 0, 1, 1},
		{FlagBoolean, true, true, 1, 1, 0}, // cut before the obsolete flag: first
		{FlagBoolean, true, true, 0, 0, 0},
		{FlagBoolean, true, true, 0xFF, 1, 0},
		{FlagBoolean, true, true, 1, 0xFF, 1},
		{FlagBoolean, true, true, 0, 0xFF, 1},
		{FlagBoolean, true, true, 0xFF, 0, 0},
		{FlagBoolean, true, true, 2, 7, 0}, // unknown pair: first, as U-Boot
		{FlagBoolean, false, true, 1, 0, 1},
		{FlagBoolean, true, false, 0, 1, 0},
	}
	for _, tt := range tests {
		st := []copyState{invalid, invalid}
		if tt.v0 {
			st[0] = valid
		}
		if tt.v1 {
			st[1] = valid
		}
		st[0].flag, st[1].flag = tt.f0, tt.f1
		if got := current(tt.kind, st); got != tt.want {
			t.Errorf("%v valid=(%v,%v) flags=(%#x,%#x): copy %d, want %d", tt.kind, tt.v0, tt.v1, tt.f0, tt.f1, got, tt.want)
		}
	}
	if current(FlagCounter, []copyState{valid}) != 0 || current(FlagCounter, []copyState{invalid}) != -1 {
		t.Error("single copy")
	}
}

func TestReadBlank(t *testing.T) {
	for _, fills := range [][]byte{{0x00}, {0xFF}, {0x00, 0x00}, {0xFF, 0xFF}, {0x00, 0xFF}} {
		cfg, paths := makeFiles(t, len(fills), 0x200, 0x200, 0)
		for i, f := range fills {
			if err := os.WriteFile(paths[i], bytes.Repeat([]byte{f}, 0x200), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := openT(t, cfg).Read()
		if !errors.Is(err, ErrBlank) || !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("fills %x: %v, want ErrBlank matching fs.ErrNotExist", fills, err)
		}
		if !strings.Contains(err.Error(), paths[0]) {
			t.Errorf("error does not name the device: %v", err)
		}
	}
}

func TestReadCorrupt(t *testing.T) {
	cfg, paths := makeFiles(t, 2, 0x200, 0x200, 0)
	s := openT(t, cfg)
	if err := os.WriteFile(paths[1], bytes.Repeat([]byte{0x5A}, 0x200), 0o644); err != nil {
		t.Fatal(err)
	}
	// Copy 1 is blank, copy 2 garbage.
	_, err := s.Read()
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrBlank) {
		t.Fatalf("%v, want ErrCorrupt only", err)
	}
	for _, want := range []string{"copy 1", "blank", "copy 2", "CRC mismatch", paths[1]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Write recovers from plain corruption (no other size matches).
	e := mustEnv(t, "b", "2")
	if err := s.Write(e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	assertVars(t, got, e)
}

// A copy whose CRC fails is skipped, whichever copy it is; one whose CRC
// holds but whose data is not an env is skipped too.
func TestCorruptCopySkipped(t *testing.T) {
	for _, corrupt := range []string{"newer", "older", "unterminated"} {
		t.Run(corrupt, func(t *testing.T) {
			cfg, paths := makeFiles(t, 2, 0x200, 0x200, 0)
			s := openT(t, cfg)
			older, newer := mustEnv(t, "v", "older"), mustEnv(t, "v", "newer")
			if err := s.Write(older); err != nil { // copy 1 (paths[0])
				t.Fatal(err)
			}
			if err := s.Write(newer); err != nil { // copy 2 (paths[1])
				t.Fatal(err)
			}
			var victim string
			want := older
			switch corrupt {
			case "newer":
				victim = paths[1]
				flipByte(t, victim, 0x10)
			case "older":
				victim, want = paths[0], newer
				flipByte(t, victim, 0x10)
			case "unterminated":
				// A CRC-valid copy with the higher flag but no NUL anywhere.
				img := bytes.Repeat([]byte{'x'}, 0x200)
				binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[hdrRedundant:]))
				img[flagOffset] = 9
				victim = paths[1]
				if err := os.WriteFile(victim, img, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Read()
			if err != nil {
				t.Fatal(err)
			}
			assertVars(t, got, want)
			// The next write goes over the bad copy.
			next := mustEnv(t, "v", "next")
			if err := s.Write(next); err != nil {
				t.Fatal(err)
			}
			if st := decodeCopy(readFile(t, victim), true); !st.valid() {
				t.Fatalf("the write did not go to the bad copy %s", victim)
			}
			got, err = s.Read()
			if err != nil {
				t.Fatal(err)
			}
			assertVars(t, got, next)
		})
	}
}

func flipByte(t testing.TB, p string, off int) {
	t.Helper()
	b := readFile(t, p)
	b[off] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeImage puts one copy made by keel's encoder at off in path.
func writeImage(t testing.TB, path string, off int64, e *Env, size int64, redundant bool, flag byte) {
	t.Helper()
	img, err := encodeImage(e, size, redundant, flag)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(img, off); err != nil {
		t.Fatal(err)
	}
}

func TestMisconfigurationHints(t *testing.T) {
	e := mustEnv(t, "bootcmd", "boot", "keel", "1")
	tests := []struct {
		name             string
		wrote            int64 // size the env was written with
		wroteRedundant   bool
		bigEndian        bool
		cfgSize          int64
		cfgCopies        int
		errHas           []string
		otherCopyIsValid bool
	}{
		{name: "size too big", wrote: 0x2000, cfgSize: 0x4000, cfgCopies: 1,
			errHas: []string{"CRC mismatch", "the CRC matches at size 0x2000, not the configured 0x4000", "fix the size in fw_env.config"}},
		{name: "size too small", wrote: 0x4000, cfgSize: 0x2000, cfgCopies: 1,
			errHas: []string{"the CRC matches at size 0x4000"}},
		{name: "odd size", wrote: 0x1e00, cfgSize: 0x2000, cfgCopies: 1,
			errHas: []string{"the CRC matches at size 0x1e00"}},
		{name: "redundant data, single config", wrote: 0x2000, wroteRedundant: true, cfgSize: 0x2000, cfgCopies: 1,
			errHas: []string{"the data is a redundant env", "fw_env.config has one line (single copy) — add the second copy's line"}},
		{name: "single data, redundant config", wrote: 0x2000, cfgSize: 0x2000, cfgCopies: 2,
			errHas: []string{"the data is a single-copy env", "fw_env.config has two lines (redundant) — use one line"}},
		{name: "single data, redundant config, other size", wrote: 0x1000, cfgSize: 0x2000, cfgCopies: 2,
			errHas: []string{"single-copy env (CRC only, no flag byte) of size 0x1000", "with size 0x1000"}},
		{name: "big-endian CRC", wrote: 0x2000, bigEndian: true, cfgSize: 0x2000, cfgCopies: 1,
			errHas: []string{"big-endian", "mkenvimage -b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, paths := makeFiles(t, tt.cfgCopies, tt.cfgSize, 0x8000, 0xFF)
			img, err := encodeImage(e, tt.wrote, tt.wroteRedundant, 1)
			if err != nil {
				t.Fatal(err)
			}
			// 0xFF padding, as mkenvimage writes, so trailing bytes do not
			// look like zero padding of a bigger env.
			for i := hdrRedundant + e.encodedLen(); i < len(img); i++ {
				img[i] = 0xFF
			}
			crc := crc32.ChecksumIEEE(img[headerSize(tt.wroteRedundant):])
			if tt.bigEndian {
				binary.BigEndian.PutUint32(img, crc)
			} else {
				binary.LittleEndian.PutUint32(img, crc)
			}
			for _, p := range paths {
				f, _ := os.OpenFile(p, os.O_RDWR, 0)
				f.WriteAt(img, 0)
				f.Close()
			}
			s := openT(t, cfg)
			_, err = s.Read()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read: %v, want ErrCorrupt", err)
			}
			for _, want := range tt.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			if !strings.Contains(err.Error(), paths[0]) {
				t.Errorf("error does not name the file: %v", err)
			}
			// Write refuses: overwriting would lose an env U-Boot (with
			// its own, right, config) still reads.
			before := readFile(t, paths[0])
			if err := s.Write(mustEnv(t, "x", "y")); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Write over a misconfigured env: %v, want refusal", err)
			}
			if !bytes.Equal(before, readFile(t, paths[0])) {
				t.Fatal("Write changed the device")
			}
		})
	}
}

func TestWriteTooLarge(t *testing.T) {
	for _, copies := range []int{1, 2} {
		cfg, paths := makeFiles(t, copies, 0x100, 0x100, 0)
		s := openT(t, cfg)
		if err := s.Write(mustEnv(t, "a", "1")); err != nil {
			t.Fatal(err)
		}
		var before [][]byte
		for _, p := range paths {
			before = append(before, readFile(t, p))
		}
		hdr := headerSize(copies == 2)
		// name "v" + "=" + value + NUL + final NUL must fit in 0x100-hdr.
		fits := strings.Repeat("x", 0x100-hdr-4)
		err := s.Write(mustEnv(t, "v", fits+"x"))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("copies=%d: %v, want ErrTooLarge", copies, err)
		}
		for i, p := range paths {
			if !bytes.Equal(before[i], readFile(t, p)) {
				t.Fatalf("copies=%d: a failed Write changed %s", copies, p)
			}
		}
		if err := s.Write(mustEnv(t, "v", fits)); err != nil {
			t.Fatalf("copies=%d: exact fit: %v", copies, err)
		}
		if err := s.Write(nil); err == nil {
			t.Fatal("Write(nil) succeeded")
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, make([]byte, 0x100), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 0x1000), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name   string
		cfg    *Config
		errHas []string
	}{
		{"missing device", &Config{Copies: []DeviceConfig{{Path: missing, Size: 0x100}}},
			[]string{missing, "no such file", "fix the device path"}},
		{"device too small", &Config{Copies: []DeviceConfig{{Path: small, Offset: 0x80, Size: 0x100}}},
			[]string{small, "0x100 bytes, smaller than offset 0x80 + 0x100"}},
		{"negative offset before start", &Config{Copies: []DeviceConfig{{Path: small, Offset: -0x200, Size: 0x100}}},
			[]string{"before the start"}},
		{"copies overlap", &Config{Copies: []DeviceConfig{{Path: big, Size: 0x400}, {Path: big, Offset: 0x200, Size: 0x400}}},
			[]string{"overlap"}},
		{"directory", &Config{Copies: []DeviceConfig{{Path: dir, Size: 0x100}}},
			[]string{dir}},
		{"UBI", &Config{Copies: []DeviceConfig{{Path: "/dev/ubi0:env", Size: 0x100}}},
			[]string{"UBI volumes are not supported"}},
		{"no copies", &Config{}, []string{"no device line"}},
		{"not MTD char device", &Config{Copies: []DeviceConfig{{Path: "/dev/null", Size: 0x100}}},
			[]string{"/dev/null", "not a usable MTD device"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			for _, want := range tt.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			// A broken config must never look like "no env yet".
			if errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error matches fs.ErrNotExist: %v", err)
			}
		})
	}
}

// A device that cannot be opened for writing is opened read-only: Read
// works, Write fails before touching anything and says why.
func TestReadOnlyDevice(t *testing.T) {
	cfg, paths := makeFiles(t, 2, 0x200, 0x200, 0)
	e := mustEnv(t, "a", "1")
	if err := openT(t, cfg).Write(e); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := os.Chmod(p, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	for d := filepath.Dir(paths[0]); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := readFile(t, paths[1])
	// Root ignores file modes; drop the filesystem uid of this thread to
	// nobody while opening, so the mode bits apply.
	var s *Storage
	var err error
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if os.Geteuid() == 0 {
			unix.Setfsuid(65534)
			defer unix.Setfsuid(0)
		}
		s, err = Open(cfg)
	}()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	assertVars(t, got, e)
	err = s.Write(mustEnv(t, "a", "2"))
	if err == nil || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), paths[0]) {
		t.Fatalf("Write on read-only device: %v", err)
	}
	if !bytes.Equal(before, readFile(t, paths[1])) {
		t.Fatal("failed Write changed the device")
	}
}

func TestNegativeOffsetAndWindow(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 0x3000), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two copies counted from the end, as libubootenv does for block devices.
	cfg := &Config{Copies: []DeviceConfig{{Path: img, Offset: -0x800, Size: 0x400}, {Path: img, Offset: -0x400, Size: 0x400}}}
	s := openT(t, cfg)
	e := mustEnv(t, "k", "v")
	if err := s.Write(e); err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, img)
	if st := decodeCopy(raw[0x2800:0x2C00], true); !st.valid() {
		t.Fatalf("copy 1 not at end-0x800: %v", st.bad)
	}

	// A partition inside a disk image: the env at 0x100 of a window at 0x1000.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	part := NewFileDevice(f, 0x1000, 0x800)
	pcfg := &Config{Copies: []DeviceConfig{{Path: "disk.img:p1", Offset: 0x100, Size: 0x400}}}
	ps, err := OpenDevices(pcfg, []Device{part}, FlagCounter)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Write(e); err != nil {
		t.Fatal(err)
	}
	raw = readFile(t, img)
	if st := decodeCopy(raw[0x1100:0x1500], false); !st.valid() {
		t.Fatalf("window copy not at 0x1100: %v", st.bad)
	}
	if _, err := part.WriteAt([]byte{1}, 0x800); err == nil {
		t.Fatal("write past the window accepted")
	}
	bad := &Config{Copies: []DeviceConfig{{Path: "disk.img:p1", Offset: 0x500, Size: 0x400}}}
	if _, err := OpenDevices(bad, []Device{part}, FlagCounter); err == nil || !strings.Contains(err.Error(), "smaller than offset") {
		t.Fatalf("env past the window: %v", err)
	}
}

// NOR flash: boolean flags, erase before write, the old copy's flag cleared
// in place.
func TestNORBoolean(t *testing.T) {
	mem := faultdev.Erased(faultdev.NOR, 0x2000, 0x400)
	cfg := &Config{Copies: []DeviceConfig{{Path: "nor", Size: 0x800}, {Path: "nor", Offset: 0x1000, Size: 0x800}}}
	s, err := OpenDevices(cfg, []Device{mem, mem}, FlagBoolean)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(); !errors.Is(err, ErrBlank) {
		t.Fatalf("erased NOR: %v", err)
	}
	want := [][2]byte{{1, 0xFF}, {0, 1}, {1, 0}, {0, 1}}
	for i, w := range want {
		e := mustEnv(t, "n", fmt.Sprint(i))
		if err := s.Write(e); err != nil {
			t.Fatal(err)
		}
		raw := mem.Bytes()
		if got := [2]byte{raw[flagOffset], raw[0x1000+flagOffset]}; got != w {
			t.Fatalf("write %d: flags %x, want %x", i, got, w)
		}
		got, err := s.Read()
		if err != nil {
			t.Fatal(err)
		}
		assertVars(t, got, e)
	}
	// Unaligned offsets cannot be erased.
	bad := &Config{Copies: []DeviceConfig{{Path: "nor", Offset: 0x200, Size: 0x400}}}
	if _, err := OpenDevices(bad, []Device{mem}, FlagBoolean); err == nil || !strings.Contains(err.Error(), "not aligned to the erase block size 0x400") {
		t.Fatalf("unaligned: %v", err)
	}
	bad = &Config{Copies: []DeviceConfig{{Path: "nor", Size: 0x400, SectorSize: 0x600}}}
	if _, err := OpenDevices(bad, []Device{mem}, FlagBoolean); err == nil || !strings.Contains(err.Error(), "not a multiple of the erase block size") {
		t.Fatalf("bad sector size: %v", err)
	}
	// Copies sharing an erase block would both be lost by one erase.
	bad = &Config{Copies: []DeviceConfig{{Path: "nor", Size: 0x200, SectorSize: 0x800}, {Path: "nor", Offset: 0x400, Size: 0x200}}}
	if _, err := OpenDevices(bad, []Device{mem, mem}, FlagBoolean); err == nil || !strings.Contains(err.Error(), "erase blocks") {
		t.Fatalf("shared erase block: %v", err)
	}
}

// Raw NAND: counter flags, bad blocks skipped within the copy's sectors.
func TestNANDBadBlocks(t *testing.T) {
	mem := faultdev.Erased(faultdev.NAND, 0x4000, 0x400)
	mem.MarkBad(0x400) // second block of copy 1
	cfg := &Config{Copies: []DeviceConfig{
		{Path: "nand", Size: 0x800, Sectors: 3},
		{Path: "nand", Offset: 0x2000, Size: 0x800, Sectors: 3},
	}}
	s, err := OpenDevices(cfg, []Device{mem, mem}, FlagCounter)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		e := mustEnv(t, "n", fmt.Sprint(i), "pad", strings.Repeat("p", 0x500))
		if err := s.Write(e); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := s.Read()
		if err != nil {
			t.Fatal(err)
		}
		assertVars(t, got, e)
	}
	// Copy 1 lives in blocks 0 and 2: block 1 was skipped.
	raw := mem.Bytes()
	joined := append(append([]byte{}, raw[0:0x400]...), raw[0x800:0xC00]...)
	if st := decodeCopy(joined, true); !st.valid() {
		t.Fatalf("copy 1 not in blocks 0 and 2: %v", st.bad)
	}
	// Too many bad blocks in copy 1, the next target: the write fails,
	// copy 2 still holds the last env.
	last, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	mem.MarkBad(0x800)
	err = s.Write(mustEnv(t, "x", "z"))
	if err == nil || !strings.Contains(err.Error(), "not enough good blocks") || !strings.Contains(err.Error(), "raise the number of sectors") {
		t.Fatalf("write with too many bad blocks: %v", err)
	}
	got, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	assertVars(t, got, last)
}

// One copy unreadable (a dead device): Read uses the other, and the first
// write goes to the readable copy.
func TestUnreadableCopy(t *testing.T) {
	dead := faultdev.NewPower(0)
	deadDev := dead.Wrap(faultdev.NewMem(faultdev.File, make([]byte, 0x200), 0), faultdev.Options{})
	good := faultdev.NewMem(faultdev.File, make([]byte, 0x200), 0)
	cfg := &Config{Copies: []DeviceConfig{{Path: "dead", Size: 0x200}, {Path: "good", Size: 0x200}}}
	s, err := OpenDevices(cfg, []Device{deadDev, good}, FlagCounter)
	if err != nil {
		t.Fatal(err)
	}
	deadDev.WriteAt([]byte{0}, 0) // the power goes
	if _, err := s.Read(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "read error") {
		t.Fatalf("Read with a dead copy and a blank one: %v", err)
	}
	e := mustEnv(t, "a", "1")
	if err := s.Write(e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	assertVars(t, got, e)
	// Both dead: the I/O error, not ErrCorrupt or ErrBlank.
	s2, err := OpenDevices(&Config{Copies: cfg.Copies[:1]}, []Device{deadDev}, FlagCounter)
	if err == nil {
		_, err = s2.Read()
	}
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBlank) {
		t.Fatalf("dead device: %v", err)
	}
}
