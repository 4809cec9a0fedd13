package gpt

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzRead from fuzzSeeds")

// tinyDisk is the smallest sensible GPT, to keep fuzz seeds small: 8 sectors,
// an entry array of 4 entries in one sector (Read does not insist on the
// 16 KiB UEFI reserves for the array), partitions at LBA 3 and 4-5.
func tinyDisk(ss int) memDisk {
	d := newMemDisk(int64(8 * ss))
	tab := &Table{
		SectorSize: ss, DiskGUID: MustParseGUID("5EED5EED-0000-4000-8000-000000000001"),
		FirstUsableLBA: 3, LastUsableLBA: 5, BackupLBA: 7, EntryCount: 4, EntrySize: 128,
		Partitions: []Partition{
			{Index: 1, Name: "esp", Type: TypeEFISystem(), UUID: MustParseGUID("5EED5EED-0000-4000-8000-000000000002"), FirstLBA: 3, LastLBA: 3},
			{Index: 3, Name: "slot-ä", Type: TypeRootAMD64(), UUID: MustParseGUID("5EED5EED-0000-4000-8000-000000000003"), FirstLBA: 4, LastLBA: 5, Attributes: 1 << 60},
		},
	}
	if err := tab.Write(d); err != nil {
		panic(err)
	}
	return d
}

type fuzzSeed struct {
	data []byte
	size int64
}

// fuzzSeeds are the seed corpus kept in testdata/fuzz/FuzzRead; each takes
// Read down a different path.
func fuzzSeeds() map[string]fuzzSeed {
	valid := tinyDisk(512)
	hdrCRC := bytes.Clone(valid)
	hdrCRC[512+60] ^= 1
	entCRC := bytes.Clone(valid)
	entCRC[1024+56] ^= 1
	mbr := make([]byte, 1024)
	mbr[446+4], mbr[510], mbr[511] = 0x83, 0x55, 0xAA
	return map[string]fuzzSeed{
		"valid":                {valid, valid.size()},
		"primary-header-crc":   {hdrCRC, int64(len(hdrCRC))},
		"primary-entries-crc":  {entCRC, int64(len(entCRC))},
		"truncated-header":     {valid[:1536], 1536},         // header says the disk has 8 sectors
		"truncated-reader":     {valid[:1536], valid.size()}, // the reader ends before size
		"grown":                {valid, 2 * valid.size()},    // backup not at the last LBA
		"legacy-mbr":           {mbr, 1024},
		"huge-size-small-data": {valid[:1024], 1 << 62},
	}
}

func seedFile(s fuzzSeed) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nint64(%d)\n", s.data, s.size)
}

// TestFuzzSeedCorpus keeps testdata/fuzz/FuzzRead in step with fuzzSeeds
// (go test -run TestFuzzSeedCorpus -update rewrites it) and checks that the
// seeds still reach the paths they are named for.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	seeds := fuzzSeeds()
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range seeds {
			if err := os.WriteFile(filepath.Join(dir, name), seedFile(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, s := range seeds {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (go test -run TestFuzzSeedCorpus -update writes the seeds)", err)
		}
		if !bytes.Equal(b, seedFile(s)) {
			t.Errorf("%s is stale: go test -run TestFuzzSeedCorpus -update", name)
		}
	}
	read := func(name string) (*Table, error) {
		s := seeds[name]
		return Read(bytes.NewReader(s.data), s.size)
	}
	if tab, err := read("valid"); err != nil || len(tab.Partitions) != 2 || len(tab.Warnings) != 0 || tab.Partitions[1].Name != "slot-ä" {
		t.Errorf("valid: %+v, %v", tab, err)
	}
	if tab, err := read("primary-header-crc"); err != nil || !tab.FromBackup || !errors.Is(tab.Warnings[0], ErrHeaderCRC) {
		t.Errorf("primary-header-crc: %+v, %v", tab, err)
	}
	if tab, err := read("primary-entries-crc"); err != nil || !tab.FromBackup || !errors.Is(tab.Warnings[0], ErrEntriesCRC) {
		t.Errorf("primary-entries-crc: %+v, %v", tab, err)
	}
	if _, err := read("truncated-header"); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated-header: %v", err)
	}
	if tab, err := read("grown"); err != nil || len(tab.Warnings) != 1 {
		t.Errorf("grown: %+v, %v", tab, err)
	}
	if _, err := read("legacy-mbr"); !errors.Is(err, ErrNotGPT) {
		t.Errorf("legacy-mbr: %v", err)
	}
	// The 4Kn tiny disk reads too (it is a runtime seed: too big for a file).
	if tab, err := Read(tinyDisk(4096), 8*4096); err != nil || tab.SectorSize != 4096 || len(tab.Partitions) != 2 {
		t.Errorf("4Kn tiny disk: %+v, %v", tab, err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(tinyDisk(4096)), int64(8*4096))
	head := newMemDisk(34 * 512) // the first 34 sectors of a 64 MiB disk: primary only
	if _, err := CreateWith(headWriter{head}, 64<<20, testSpecs(), Options{Rand: rand.NewChaCha8([32]byte{})}); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(head), int64(64<<20))
	sentinels := []error{ErrNotGPT, ErrTruncated, ErrHeaderCRC, ErrEntriesCRC, ErrBadHeader, ErrPartitionOutOfRange, ErrOverlap}

	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		tab, err := Read(bytes.NewReader(data), size)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gpt: ") {
				t.Errorf("error without the gpt prefix: %v", err)
			}
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Errorf("error wraps no sentinel: %v", err)
			}
			return
		}
		checkInvariants(t, tab, size)

		// What Read accepts, Write can write (if the layout is one Write
		// produces) and Read reads back the same.
		if size > 1<<20 {
			return
		}
		d := newMemDisk(size)
		if err := tab.Write(d); err != nil {
			return
		}
		again, err := Read(d, size)
		if err != nil {
			t.Fatalf("re-reading a written table: %v\ntable %+v", err, tab)
		}
		if again.DiskGUID != tab.DiskGUID || !slices.Equal(again.Partitions, tab.Partitions) ||
			again.FirstUsableLBA != tab.FirstUsableLBA || again.LastUsableLBA != tab.LastUsableLBA {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, tab)
		}
	})
}

// headWriter keeps the writes that fall inside d and drops the others.
type headWriter struct{ d memDisk }

func (h headWriter) WriteAt(b []byte, off int64) (int, error) {
	if off < h.d.size() {
		copy(h.d[off:], b)
	}
	return len(b), nil
}

func checkInvariants(t *testing.T, tab *Table, size int64) {
	t.Helper()
	if tab.SectorSize != 512 && tab.SectorSize != 4096 {
		t.Fatalf("sector size %d", tab.SectorSize)
	}
	sectors := uint64(size / int64(tab.SectorSize))
	if tab.LastUsableLBA >= sectors || tab.FirstUsableLBA > tab.LastUsableLBA {
		t.Fatalf("usable area %d-%d on a disk of %d sectors", tab.FirstUsableLBA, tab.LastUsableLBA, sectors)
	}
	last := 0
	for _, p := range tab.Partitions {
		if p.Index <= last || p.Index > int(tab.EntryCount) {
			t.Fatalf("index %d after %d, %d entries", p.Index, last, tab.EntryCount)
		}
		last = p.Index
		if p.Type.IsZero() {
			t.Fatalf("unused entry listed: %v", p)
		}
		if p.FirstLBA < tab.FirstUsableLBA || p.LastLBA > tab.LastUsableLBA || p.FirstLBA > p.LastLBA {
			t.Fatalf("%v outside %d-%d", p, tab.FirstUsableLBA, tab.LastUsableLBA)
		}
		if p.Offset() < 0 || p.Size() <= 0 || p.Offset()+p.Size() > size {
			t.Fatalf("%v: offset %d size %d on a %d-byte disk", p, p.Offset(), p.Size(), size)
		}
		if !utf8.ValidString(p.Name) || len(utf16.Encode([]rune(p.Name))) > nameUnits {
			t.Fatalf("name %q", p.Name)
		}
		for _, q := range tab.Partitions {
			if q.Index != p.Index && q.FirstLBA <= p.LastLBA && p.FirstLBA <= q.LastLBA {
				t.Fatalf("%v overlaps %v", p, q)
			}
		}
	}
}
