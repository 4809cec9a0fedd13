package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestCreateReadRoundTrip(t *testing.T) {
	d, created := mustCreate(t, 64<<20, testSpecs())
	got := mustRead(t, d)
	if got.FromBackup || len(got.Warnings) != 0 {
		t.Errorf("fresh table: FromBackup=%v Warnings=%v", got.FromBackup, got.Warnings)
	}
	if !reflect.DeepEqual(got, created) {
		t.Errorf("Read after Create:\n got %+v\nwant %+v", got, created)
	}
	// Layout: 1 MiB aligned starts, sizes rounded up to sectors, the last
	// partition up to the last usable LBA.
	wantLBAs := [][2]uint64{{2048, 22527}, {22528, 24575}, {24576, 65536}, {67584, 108543}, {108544, 131038}}
	for i, p := range got.Partitions {
		if p.FirstLBA != wantLBAs[i][0] || p.LastLBA != wantLBAs[i][1] {
			t.Errorf("%v: want LBA %d-%d", p, wantLBAs[i][0], wantLBAs[i][1])
		}
		if p.Index != i+1 {
			t.Errorf("%v: want index %d", p, i+1)
		}
	}
	if got.FirstUsableLBA != 34 || got.LastUsableLBA != 131038 || got.BackupLBA != 131071 {
		t.Errorf("usable %d-%d backup %d, want 34-131038 backup 131071", got.FirstUsableLBA, got.LastUsableLBA, got.BackupLBA)
	}
	p, err := got.Find("slot-a")
	if err != nil {
		t.Fatal(err)
	}
	if p.Offset() != 24576*512 || p.Size() != 20<<20+512 || p.Attributes != 1<<60 {
		t.Errorf("slot-a: offset %d size %d attributes %#x", p.Offset(), p.Size(), p.Attributes)
	}
	if b, _ := got.Find("slot-b"); b.UUID.String() != "01234567-89AB-CDEF-0123-456789ABCDEF" {
		t.Errorf("slot-b UUID %v, want the one given", b.UUID)
	}
	if u, _ := got.Find("données-ü"); u.Index != 5 {
		t.Errorf("non-ASCII name not found: %v", u)
	}
	// Random UUIDs differ.
	seen := map[GUID]bool{got.DiskGUID: true}
	for _, p := range got.Partitions {
		if seen[p.UUID] {
			t.Errorf("UUID %v used twice", p.UUID)
		}
		seen[p.UUID] = true
	}
}

func TestOnDiskBytes(t *testing.T) {
	d, tab := mustCreate(t, 8<<20, []Spec{{Name: "esp", Type: TypeEFISystem(), Size: 1 << 20}})
	// Protective MBR, UEFI 2.10 section 5.2.3.
	rec := d[446:462]
	if rec[4] != 0xEE || binary.LittleEndian.Uint32(rec[8:]) != 1 ||
		binary.LittleEndian.Uint32(rec[12:]) != uint32(8<<20/512-1) || d[510] != 0x55 || d[511] != 0xAA {
		t.Errorf("protective MBR record % x, signature % x", rec, d[510:512])
	}
	if !bytes.Equal(rec[1:4], []byte{0, 2, 0}) {
		t.Errorf("StartingCHS % x, want 00 02 00", rec[1:4])
	}
	// Header, 5.3.2.
	h := d[512:1024]
	if string(h[:8]) != "EFI PART" || binary.LittleEndian.Uint32(h[8:]) != 0x00010000 || binary.LittleEndian.Uint32(h[12:]) != 92 {
		t.Errorf("header start % x", h[:16])
	}
	if got := binary.LittleEndian.Uint64(h[72:]); got != 2 {
		t.Errorf("PartitionEntryLBA %d, want 2", got)
	}
	if n, sz := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:]); n != 128 || sz != 128 {
		t.Errorf("%d entries of %d bytes, want 128 of 128", n, sz)
	}
	if !allZero(h[92:]) {
		t.Error("reserved bytes after the header are not zero")
	}
	// Entry, 5.3.3: the ESP type GUID in its mixed-endian on-disk form and
	// the name in UTF-16LE.
	e := d[1024:1152]
	wantType := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}
	if !bytes.Equal(e[:16], wantType) {
		t.Errorf("type GUID on disk % x, want % x", e[:16], wantType)
	}
	if !bytes.Equal(e[56:64], []byte{'e', 0, 's', 0, 'p', 0, 0, 0}) {
		t.Errorf("name on disk % x", e[56:64])
	}
	// Backup header at the last LBA points back at LBA 1 and at its own
	// entries just before it.
	last := int64(len(d)) - 512
	bh := d[last:]
	if binary.LittleEndian.Uint64(bh[24:]) != tab.BackupLBA || binary.LittleEndian.Uint64(bh[32:]) != 1 ||
		binary.LittleEndian.Uint64(bh[72:]) != tab.BackupLBA-32 {
		t.Errorf("backup header MyLBA %d AlternateLBA %d PartitionEntryLBA %d", binary.LittleEndian.Uint64(bh[24:]),
			binary.LittleEndian.Uint64(bh[32:]), binary.LittleEndian.Uint64(bh[72:]))
	}
	if !bytes.Equal(d[1024:1024+16384], d[last-16384:last]) {
		t.Error("backup entry array differs from the primary")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestFallbackToBackup(t *testing.T) {
	d, want := mustCreate(t, 16<<20, smallSpecs())

	t.Run("header CRC", func(t *testing.T) {
		c := bytes.Clone(d)
		c[512+60] ^= 0xFF // inside DiskGUID of the primary header
		got := mustRead(t, memDisk(c))
		checkFromBackup(t, got, want, ErrHeaderCRC)
	})
	t.Run("entries CRC", func(t *testing.T) {
		c := bytes.Clone(d)
		c[1024+56] = 'E' // first partition's name in the primary entries
		got := mustRead(t, memDisk(c))
		checkFromBackup(t, got, want, ErrEntriesCRC)
	})
	t.Run("primary zeroed", func(t *testing.T) {
		c := bytes.Clone(d)
		clear(c[512:1024])
		got := mustRead(t, memDisk(c))
		checkFromBackup(t, got, want, nil)
	})
	t.Run("backup damaged", func(t *testing.T) {
		c := bytes.Clone(d)
		c[len(c)-512+60] ^= 0xFF
		got := mustRead(t, memDisk(c))
		if got.FromBackup || !reflect.DeepEqual(got.Partitions, want.Partitions) {
			t.Fatalf("FromBackup=%v partitions %v", got.FromBackup, got.Partitions)
		}
		if len(got.Warnings) != 1 || !errors.Is(got.Warnings[0], ErrHeaderCRC) || !strings.Contains(got.Warnings[0].Error(), "backup") {
			t.Errorf("warnings %v, want one about the backup header CRC", got.Warnings)
		}
	})
	t.Run("both headers", func(t *testing.T) {
		c := bytes.Clone(d)
		c[512+60] ^= 0xFF
		c[len(c)-512+60] ^= 0xFF
		_, err := Read(memDisk(c), int64(len(c)))
		wantErr(t, err, ErrHeaderCRC, "both GPT copies are unusable", "primary GPT (LBA 1)", "backup GPT (LBA 32767)", "computed")
	})
	t.Run("both entry arrays", func(t *testing.T) {
		c := bytes.Clone(d)
		c[1024+56] = 'E'
		c[len(c)-512-16384+56] = 'E'
		_, err := Read(memDisk(c), int64(len(c)))
		wantErr(t, err, ErrEntriesCRC, "primary", "backup")
	})
	t.Run("primary bad, no backup", func(t *testing.T) {
		c := bytes.Clone(d)
		c[512+60] ^= 0xFF
		clear(c[len(c)-512:])
		_, err := Read(memDisk(c), int64(len(c)))
		wantErr(t, err, ErrHeaderCRC, "no backup GPT header at the last LBA 32767")
	})
}

func checkFromBackup(t *testing.T, got, want *Table, warning error) {
	t.Helper()
	if !got.FromBackup {
		t.Error("FromBackup is false")
	}
	if len(got.Warnings) == 0 || !strings.Contains(got.Warnings[0].Error(), "using the backup GPT at LBA") {
		t.Errorf("warnings %v do not say the backup was used", got.Warnings)
	} else if warning != nil && !errors.Is(got.Warnings[0], warning) {
		t.Errorf("warning %q does not wrap %q", got.Warnings[0], warning)
	}
	w := *want
	g := *got
	g.FromBackup, g.Warnings = false, nil
	if !reflect.DeepEqual(&g, &w) {
		t.Errorf("table from backup:\n got %+v\nwant %+v", g, w)
	}
}

func TestReadErrors(t *testing.T) {
	d, _ := mustCreate(t, 16<<20, smallSpecs())

	t.Run("zeros", func(t *testing.T) {
		_, err := Read(newMemDisk(1<<20), 1<<20)
		wantErr(t, err, ErrNotGPT, "no GPT header at LBA 1", "no MBR signature")
	})
	t.Run("tiny", func(t *testing.T) {
		_, err := Read(newMemDisk(100), 100)
		wantErr(t, err, ErrNotGPT, "only 100 bytes")
	})
	t.Run("MBR disk", func(t *testing.T) {
		c := newMemDisk(1 << 20)
		c[446+4] = 0x83 // one Linux partition
		binary.LittleEndian.PutUint32(c[446+8:], 2048)
		binary.LittleEndian.PutUint32(c[446+12:], 100)
		c[510], c[511] = 0x55, 0xAA
		_, err := Read(c, c.size())
		wantErr(t, err, ErrNotGPT, "MBR-partitioned")
	})
	t.Run("stale backup on an MBR disk", func(t *testing.T) {
		c := bytes.Clone(d)
		clear(c[:1024]) // MBR tool wiped LBA 0-1 and wrote a legacy MBR
		c[446+4] = 0x0C
		c[510], c[511] = 0x55, 0xAA
		_, err := Read(memDisk(c), int64(len(c)))
		wantErr(t, err, ErrNotGPT, "stale")
	})
	t.Run("protective MBR only", func(t *testing.T) {
		c := bytes.Clone(d)
		clear(c[512:1024])
		clear(c[len(c)-512:])
		_, err := Read(memDisk(c), int64(len(c)))
		wantErr(t, err, ErrNotGPT, "protective MBR but there is no GPT header")
	})
	t.Run("truncated", func(t *testing.T) {
		c := d[:8<<20]
		_, err := Read(c, c.size())
		wantErr(t, err, ErrTruncated, "the image is 8388608 bytes", "LBA 32767")
	})
	t.Run("reader shorter than the size", func(t *testing.T) {
		// The header fits the given size, so Read trusts it; only the
		// backup cannot be read, which is a warning.
		got, err := Read(d[:8<<20], 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Warnings) != 1 || !errors.Is(got.Warnings[0], ErrTruncated) {
			t.Errorf("warnings %v", got.Warnings)
		}
		// Without a usable backup, a damaged primary is an error.
		c := bytes.Clone(d[:8<<20])
		c[512+60] ^= 1
		_, err = Read(memDisk(c), 16<<20)
		wantErr(t, err, ErrHeaderCRC, "primary GPT (LBA 1)", "only 0 of the 512 bytes at offset 16776704 could be read")
	})
	t.Run("no protective MBR is a warning", func(t *testing.T) {
		c := bytes.Clone(d)
		clear(c[:512])
		got := mustRead(t, memDisk(c))
		if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0].Error(), "protective MBR") {
			t.Errorf("warnings %v", got.Warnings)
		}
	})
	t.Run("grown disk is a warning", func(t *testing.T) {
		c := append(bytes.Clone(d), make([]byte, 1<<20)...)
		got := mustRead(t, memDisk(c))
		if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0].Error(), "not at the last LBA") {
			t.Errorf("warnings %v", got.Warnings)
		}
	})
	t.Run("partition outside the disk", func(t *testing.T) {
		c := memDisk(bytes.Clone(d))
		patchEntries(t, c, func(e []byte) { binary.LittleEndian.PutUint64(e[128*2+40:], 40000) }) // slot-a ends past LBA 32767
		_, err := Read(c, c.size())
		wantErr(t, err, ErrPartitionOutOfRange, "both GPT copies (LBA 1 and LBA 32767) are unusable", `partition 3 "slot-a"`, "beyond the last LBA 32767")
	})
	t.Run("partition outside the usable area", func(t *testing.T) {
		c := memDisk(bytes.Clone(d))
		patchEntries(t, c, func(e []byte) { binary.LittleEndian.PutUint64(e[32:], 20) }) // esp starts in the entry array
		_, err := Read(c, c.size())
		wantErr(t, err, ErrPartitionOutOfRange, `partition 1 "esp"`, "usable area LBA 34-32734")
	})
	t.Run("overlap", func(t *testing.T) {
		c := memDisk(bytes.Clone(d))
		patchEntries(t, c, func(e []byte) { binary.LittleEndian.PutUint64(e[128+32:], 5000) }) // bootstate starts inside esp
		_, err := Read(c, c.size())
		wantErr(t, err, ErrOverlap, `"esp"`, `"bootstate"`)
	})
	t.Run("bad MyLBA", func(t *testing.T) {
		c := memDisk(bytes.Clone(d))
		binary.LittleEndian.PutUint64(c[512+24:], 7)
		fixHeaderCRC(c[512:1024])
		got := mustRead(t, c) // falls back to the backup
		if !got.FromBackup || !errors.Is(got.Warnings[0], ErrBadHeader) {
			t.Errorf("FromBackup=%v warnings %v", got.FromBackup, got.Warnings)
		}
	})
}

// patchEntries edits both partition entry arrays of a 512-byte-sector image
// made by Create and fixes both headers' CRCs, so that the edit is seen as
// valid data.
func patchEntries(t *testing.T, d memDisk, edit func(entries []byte)) {
	t.Helper()
	last := len(d) - 512
	for _, hdrOff := range []int{512, last} {
		h := d[hdrOff : hdrOff+512]
		arr := d[binary.LittleEndian.Uint64(h[72:])*512:][:128*128]
		edit(arr)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(arr))
		fixHeaderCRC(h)
	}
}

func fixHeaderCRC(h []byte) {
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
}

func TestFind(t *testing.T) {
	d, _ := mustCreate(t, 64<<20, testSpecs())
	tab := mustRead(t, d)
	_, err := tab.Find("slot-c")
	wantErr(t, err, ErrPartitionNotFound, `"slot-c"`, `"esp"`, `"bootstate"`, `"slot-a"`, `"slot-b"`, `"données-ü"`)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not match fs.ErrNotExist", err)
	}
	if errors.Is(fs.ErrNotExist, ErrPartitionNotFound) {
		t.Error("fs.ErrNotExist matches ErrPartitionNotFound: the sentinel is too broad")
	}
	if _, err := (&Table{}).Find("x"); err == nil || !strings.Contains(err.Error(), "no partitions") {
		t.Errorf("empty table: %v", err)
	}

	// Duplicate names (not made by Create, but possible on disk).
	tab.Partitions[3].Name = "slot-a"
	if err := tab.Write(d); err != nil {
		t.Fatal(err)
	}
	_, err = mustRead(t, d).Find("slot-a")
	wantErr(t, err, ErrDuplicateName, "numbers 3, 4")
}

func TestCreateErrors(t *testing.T) {
	esp := Spec{Name: "esp", Type: TypeEFISystem(), Size: 10 << 20}
	for _, tc := range []struct {
		name   string
		size   int64
		specs  []Spec
		target error
		want   []string
	}{
		{"duplicate name", 64 << 20, []Spec{esp, {Name: "slot-a", Type: TypeRootAMD64(), Size: 1 << 20}, esp},
			ErrDuplicateName, []string{`partitions 1 and 3 are both named "esp"`}},
		{"too big", 64 << 20, []Spec{esp, {Name: "slot-a", Type: TypeRootAMD64(), Size: 60 << 20}},
			ErrNoSpace, []string{`partition 2 "slot-a" needs 62914560 bytes (60 MiB)`, "only 55557632 bytes (53 MiB) are left", "from LBA 22528",
				"need a disk of at least 74465792 bytes (71 MiB)"}},
		{"nothing left for the rest", (22528 + 33) * 512, []Spec{esp, {Name: "data", Type: TypeLinuxGeneric()}},
			ErrNoSpace, []string{`partition 2 "data" needs at least one sector`, "only 0 bytes"}},
		{"disk too small", 1 << 20, nil, ErrNoSpace, []string{"a disk of 1048576 bytes is too small", "1065984"}},
		{"no name", 64 << 20, []Spec{{Type: TypeEFISystem(), Size: 1 << 20}}, ErrInvalidSpec, []string{"no name"}},
		{"long name", 64 << 20, []Spec{{Name: strings.Repeat("x", 37), Type: TypeEFISystem(), Size: 1 << 20}},
			ErrInvalidSpec, []string{"37 UTF-16 code units", "holds 36"}},
		{"NUL in name", 64 << 20, []Spec{{Name: "a\x00b", Type: TypeEFISystem(), Size: 1 << 20}}, ErrInvalidSpec, []string{"NUL"}},
		{"bad UTF-8", 64 << 20, []Spec{{Name: "a\xffb", Type: TypeEFISystem(), Size: 1 << 20}}, ErrInvalidSpec, []string{"UTF-8"}},
		{"zero type", 64 << 20, []Spec{{Name: "x", Size: 1 << 20}}, ErrInvalidSpec, []string{"no type GUID"}},
		{"rest of disk not last", 64 << 20, []Spec{{Name: "x", Type: TypeEFISystem()}, esp}, ErrInvalidSpec, []string{"last partition only"}},
		{"negative size", 64 << 20, []Spec{{Name: "x", Type: TypeEFISystem(), Size: -1}}, ErrInvalidSpec, []string{"size -1"}},
		{"same UUID", 64 << 20, []Spec{
			{Name: "a", Type: TypeEFISystem(), Size: 1 << 20, UUID: TypeHome()},
			{Name: "b", Type: TypeEFISystem(), Size: 1 << 20, UUID: TypeHome()}}, ErrInvalidSpec, []string{"same UUID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(discard{}, tc.size, tc.specs)
			wantErr(t, err, tc.target, tc.want...)
		})
	}
	many := make([]Spec, 129)
	for i := range many {
		many[i] = Spec{Name: fmt.Sprint(i), Type: TypeLinuxGeneric(), Size: 512}
	}
	_, err := Create(discard{}, 1<<30, many)
	wantErr(t, err, ErrInvalidSpec, "129 partitions")
	_, err = CreateWith(discard{}, 64<<20, testSpecs(), Options{Rand: bytes.NewReader(make([]byte, 64))})
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("a random source of zeros: %v", err)
	}
	if _, err := CreateWith(discard{}, 64<<20, nil, Options{SectorSize: 1024}); err == nil {
		t.Error("sector size 1024 accepted")
	}
}

func TestMinDiskSize(t *testing.T) {
	for _, specs := range [][]Spec{nil, testSpecs(), smallSpecs(), {{Name: "x", Type: TypeHome(), Size: 1}}} {
		for _, ss := range []int{512, 4096} {
			min := minDiskSize(specs, ss)
			if _, err := CreateWith(discard{}, min, specs, Options{SectorSize: ss}); err != nil {
				t.Errorf("%d-byte sectors, %d partitions: the minimum size %d fails: %v", ss, len(specs), min, err)
			}
			if _, err := CreateWith(discard{}, min-int64(ss), specs, Options{SectorSize: ss}); !errors.Is(err, ErrNoSpace) {
				t.Errorf("%d-byte sectors, %d partitions: one sector less than the minimum %d: %v", ss, len(specs), min, err)
			}
		}
	}
}

func TestCreateExactFit(t *testing.T) {
	// 1 MiB of metadata and alignment, then exactly the rest: 64 MiB - 1 MiB
	// - 33 sectors of backup.
	size := int64(64 << 20)
	room := size - 1<<20 - 33*512
	d := newMemDisk(size)
	if _, err := Create(d, size, []Spec{{Name: "all", Type: TypeLinuxGeneric(), Size: room}}); err != nil {
		t.Fatalf("exact fit: %v", err)
	}
	_, err := Create(d, size, []Spec{{Name: "all", Type: TypeLinuxGeneric(), Size: room + 1}})
	wantErr(t, err, ErrNoSpace, fmt.Sprintf("only %d bytes", room))
}

func TestSectorSize4096(t *testing.T) {
	d := newMemDisk(32 << 20)
	created, err := CreateWith(d, d.size(), smallSpecs(), Options{SectorSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	got := mustRead(t, d)
	if !reflect.DeepEqual(got, created) {
		t.Fatalf("4Kn round trip:\n got %+v\nwant %+v", got, created)
	}
	if got.SectorSize != 4096 || got.FirstUsableLBA != 6 || got.BackupLBA != 8191 {
		t.Errorf("sector size %d, first usable %d, backup %d", got.SectorSize, got.FirstUsableLBA, got.BackupLBA)
	}
	esp, _ := got.Find("esp")
	if esp.FirstLBA != 256 || esp.Offset() != 1<<20 || esp.Size() != 4<<20 {
		t.Errorf("esp on 4Kn: %v offset %d size %d", esp, esp.Offset(), esp.Size())
	}
	// Primary damaged: the backup is found at the last 4 KiB sector.
	d[4096+60] ^= 1
	got = mustRead(t, d)
	if !got.FromBackup || got.SectorSize != 4096 {
		t.Errorf("FromBackup %v sector size %d", got.FromBackup, got.SectorSize)
	}
}

func TestReproducible(t *testing.T) {
	mk := func() memDisk {
		d := newMemDisk(16 << 20)
		_, err := CreateWith(d, d.size(), smallSpecs(), Options{Rand: rand.NewChaCha8([32]byte{1})})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if !bytes.Equal(mk(), mk()) {
		t.Error("same options and random stream gave different images")
	}
}

// TestWriteInterrupted cuts the power after each of Write's writes while it
// replaces one table with another: Read must always find one whole table.
func TestWriteInterrupted(t *testing.T) {
	old, oldTab := mustCreate(t, 16<<20, smallSpecs())
	newTab := *oldTab
	newTab.Partitions = append([]Partition(nil), oldTab.Partitions...)
	newTab.Partitions[2].Name = "slot-a-new"
	newTab.Partitions[2].Attributes = 1 << 63
	for n := 0; n <= 5; n++ {
		d := bytes.Clone(old)
		err := newTab.Write(&failingWriter{w: memDisk(d), n: n})
		if (err != nil) != (n < 5) {
			t.Fatalf("after %d writes: Write error %v", n, err)
		}
		got := mustRead(t, d)
		name := got.Partitions[2].Name
		if name != "slot-a" && name != "slot-a-new" {
			t.Errorf("after %d writes: partition 3 is %q", n, name)
		}
		if n == 5 && (name != "slot-a-new" || got.FromBackup || len(got.Warnings) != 0) {
			t.Errorf("complete write: %q FromBackup=%v warnings %v", name, got.FromBackup, got.Warnings)
		}
	}
}

func TestWriteChecks(t *testing.T) {
	_, tab := mustCreate(t, 16<<20, smallSpecs())
	for _, tc := range []struct {
		name   string
		edit   func(*Table)
		target error
	}{
		{"overlap", func(t *Table) { t.Partitions[1].FirstLBA = t.Partitions[0].LastLBA }, ErrOverlap},
		{"past usable", func(t *Table) { t.Partitions[2].LastLBA = t.LastUsableLBA + 1 }, ErrPartitionOutOfRange},
		{"index", func(t *Table) { t.Partitions[1].Index = 1 }, ErrInvalidSpec},
		{"zero type", func(t *Table) { t.Partitions[1].Type = GUID{} }, ErrInvalidSpec},
		{"entry size", func(t *Table) { t.EntrySize = 100 }, ErrBadHeader},
		{"usable over entries", func(t *Table) { t.FirstUsableLBA = 10 }, ErrBadHeader},
		{"usable over backup", func(t *Table) { t.LastUsableLBA = t.BackupLBA - 1 }, ErrBadHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *tab
			c.Partitions = append([]Partition(nil), tab.Partitions...)
			tc.edit(&c)
			d := newMemDisk(16 << 20)
			err := c.Write(d)
			wantErr(t, err, tc.target, "not writing")
			if !allZero(d) {
				t.Error("a rejected Write wrote something")
			}
		})
	}
}

func TestSection(t *testing.T) {
	d, tab := mustCreate(t, 16<<20, smallSpecs()[:2])
	p, _ := tab.Find("bootstate")
	w := p.SectionWriter(d)
	if w.Size() != p.Size() || p.Sectors() != 2048 || p.Size() != 1<<20 {
		t.Errorf("writer size %d, partition %d sectors, %d bytes", w.Size(), p.Sectors(), p.Size())
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Seek(-3, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write([]byte("x")); n != 0 || !errors.Is(err, io.ErrShortWrite) || !strings.Contains(err.Error(), `"bootstate"`) {
		t.Errorf("write past the end: %d, %v", n, err)
	}
	if _, err := w.WriteAt(make([]byte, 10), p.Size()-5); err == nil {
		t.Error("WriteAt across the end succeeded")
	}
	if next := d[p.Offset()+p.Size()]; next != 0 {
		t.Error("wrote into the next sector")
	}
	all, err := io.ReadAll(p.Section(d))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(all)) != p.Size() || string(all[:5]) != "hello" || string(all[len(all)-3:]) != "end" {
		t.Errorf("section read %d bytes: %q...%q", len(all), all[:5], all[len(all)-3:])
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 bytes", 1023: "1023 bytes", 1024: "1 KiB", 1536: "1.5 KiB", 60 << 20: "60 MiB", 3 << 30: "3 GiB"} {
		if got := human(n); got != want {
			t.Errorf("human(%d) = %q, want %q", n, got, want)
		}
	}
}

type eioReader struct{ after int64 }

var errEIO = errors.New("input/output error")

func (e eioReader) ReadAt(b []byte, off int64) (int, error) {
	if off >= e.after {
		return 0, errEIO
	}
	return len(b), nil // zeros are fine: the test only needs the error
}

// An I/O error is reported as such, not as "not a GPT disk".
func TestReadIOError(t *testing.T) {
	_, err := Read(eioReader{after: 512}, 1<<20)
	if !errors.Is(err, errEIO) || errors.Is(err, ErrNotGPT) || !strings.Contains(err.Error(), "LBA 1") {
		t.Errorf("got %v, want the I/O error at LBA 1", err)
	}
}
