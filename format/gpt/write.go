package gpt

import (
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf8"
)

// Spec describes a partition for Create.
type Spec struct {
	// Name is the GPT partition name: required, unique on the disk, at
	// most 36 UTF-16 code units (36 ASCII characters).
	Name string
	// Type is the partition type GUID; it must not be zero.
	Type GUID
	// Size is the size in bytes, rounded up to whole sectors. 0 gives the
	// last partition the rest of the disk.
	Size int64
	// UUID is the unique partition GUID; zero means a random one.
	UUID GUID
	// Attributes are the entry's attribute bits (UEFI 2.10 table 5.8; the
	// DPS read-only flag is bit 60).
	Attributes uint64
}

// Options adjusts CreateWith. The zero value is what Create uses.
type Options struct {
	// SectorSize is the logical block size, 512 (the default) or 4096.
	SectorSize int
	// DiskGUID is the disk's GUID; zero means a random one.
	DiskGUID GUID
	// Rand is the source of random GUIDs; nil means crypto/rand. A fixed
	// stream (or explicit GUIDs) makes images byte-for-byte reproducible.
	Rand io.Reader
}

// Create lays out a new GPT on a disk (or image) of diskSize bytes and writes
// it to w: a protective MBR (UEFI 2.10 section 5.2.3), the primary header at
// LBA 1 (5.3.2) with 128 partition entries of 128 bytes (5.3.3) from LBA 2,
// and the backup entries and header ending at the last LBA. Partitions are
// placed in order, each starting on a 1 MiB boundary. Sector size is 512.
//
// Create writes only those metadata sectors; partition contents are left as
// they are. It writes the last sector of the disk, so a shorter image file
// grows to diskSize (sparse where the file system allows).
//
// Errors wrap ErrInvalidSpec, ErrDuplicateName or ErrNoSpace (which says how
// much room there is), or are write errors.
func Create(w io.WriterAt, diskSize int64, parts []Spec) (*Table, error) {
	return CreateWith(w, diskSize, parts, Options{})
}

// CreateWith is Create with options: sector size, disk GUID, random source.
func CreateWith(w io.WriterAt, diskSize int64, parts []Spec, opts Options) (*Table, error) {
	t, err := layout(diskSize, parts, opts)
	if err != nil {
		return nil, err
	}
	if err := t.Write(w); err != nil {
		return nil, err
	}
	return t, nil
}

func layout(diskSize int64, parts []Spec, opts Options) (*Table, error) {
	ss := opts.SectorSize
	if ss == 0 {
		ss = 512
	}
	if ss != 512 && ss != 4096 {
		return nil, fmt.Errorf("gpt: sector size %d: want 512 or 4096", ss)
	}
	if len(parts) > entryCount {
		return nil, fmt.Errorf("gpt: %w: %d partitions, but the table has room for %d", ErrInvalidSpec, len(parts), entryCount)
	}
	arraySectors := uint64(entryCount * entrySize / ss)
	align := uint64(alignment / ss)
	firstUsable := 2 + arraySectors
	firstAligned := alignUp(firstUsable, align)
	// The smallest disk: the first aligned sector, one sector of partition
	// space, the backup entries and the backup header.
	minSize := int64(firstAligned+1+arraySectors+1) * int64(ss)
	if diskSize < minSize {
		need := minDiskSize(parts, ss)
		return nil, fmt.Errorf("gpt: %w: a disk of %d bytes is too small for a GPT with 1 MiB-aligned partitions: these partitions need at least %d bytes (%s)", ErrNoSpace, diskSize, need, human(uint64(need)))
	}
	sectors := uint64(diskSize / int64(ss))
	lastLBA := sectors - 1
	lastUsable := lastLBA - arraySectors - 1

	names := map[string]int{}
	uuids := map[GUID]int{}
	for i, s := range parts {
		n := i + 1
		if err := checkName(s.Name); err != nil {
			return nil, fmt.Errorf("gpt: %w: partition %d: %w", ErrInvalidSpec, n, err)
		}
		if j, dup := names[s.Name]; dup {
			return nil, fmt.Errorf("gpt: %w: partitions %d and %d are both named %q", ErrDuplicateName, j, n, s.Name)
		}
		names[s.Name] = n
		if s.Type.IsZero() {
			return nil, fmt.Errorf("gpt: %w: partition %d %q has no type GUID (a zero type marks an unused entry)", ErrInvalidSpec, n, s.Name)
		}
		if s.Size < 0 || s.Size == 0 && i != len(parts)-1 {
			return nil, fmt.Errorf("gpt: %w: partition %d %q has size %d: want bytes > 0, or 0 for the rest of the disk on the last partition only", ErrInvalidSpec, n, s.Name, s.Size)
		}
		if !s.UUID.IsZero() {
			if j, dup := uuids[s.UUID]; dup {
				return nil, fmt.Errorf("gpt: %w: partitions %d and %d have the same UUID %v", ErrInvalidSpec, j, n, s.UUID)
			}
			uuids[s.UUID] = n
		}
	}

	t := &Table{
		SectorSize:     ss,
		DiskGUID:       opts.DiskGUID,
		FirstUsableLBA: firstUsable,
		LastUsableLBA:  lastUsable,
		BackupLBA:      lastLBA,
		EntryCount:     entryCount,
		EntrySize:      entrySize,
	}
	if t.DiskGUID.IsZero() {
		g, err := NewGUID(opts.Rand)
		if err != nil {
			return nil, err
		}
		t.DiskGUID = g
	}
	next := firstUsable
	for i, s := range parts {
		p := Partition{Index: i + 1, Name: s.Name, Type: s.Type, UUID: s.UUID, Attributes: s.Attributes}
		if ss != 512 {
			p.sectorSize = ss
		}
		p.FirstLBA = alignUp(next, align)
		var room uint64 // sectors from FirstLBA to the last usable LBA
		if p.FirstLBA <= lastUsable {
			room = lastUsable - p.FirstLBA + 1
		}
		want := (uint64(s.Size) + uint64(ss) - 1) / uint64(ss)
		if s.Size == 0 {
			want = room
		}
		if want == 0 || want > room {
			need := "at least one sector"
			if s.Size > 0 {
				need = fmt.Sprintf("%d bytes (%s)", want*uint64(ss), human(want*uint64(ss)))
			}
			min := minDiskSize(parts, ss)
			return nil, fmt.Errorf("gpt: %w: partition %d %q needs %s, but only %d bytes (%s) are left from LBA %d to the last usable LBA %d of the %d-byte disk; these partitions need a disk of at least %d bytes (%s)",
				ErrNoSpace, p.Index, p.Name, need, room*uint64(ss), human(room*uint64(ss)), p.FirstLBA, lastUsable, diskSize, min, human(uint64(min)))
		}
		p.LastLBA = p.FirstLBA + want - 1
		next = p.LastLBA + 1
		if p.UUID.IsZero() {
			g, err := NewGUID(opts.Rand)
			if err != nil {
				return nil, err
			}
			if j, dup := uuids[g]; dup { // only a broken random source repeats itself
				return nil, fmt.Errorf("gpt: random UUID %v for partition %d %q is already used by partition %d: is Options.Rand random?", g, p.Index, p.Name, j)
			}
			p.UUID = g
			uuids[g] = p.Index
		}
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}

// minDiskSize returns the size of the smallest disk that holds parts as
// layout places them (a rest-of-disk partition gets one sector).
func minDiskSize(parts []Spec, ss int) int64 {
	arraySectors := uint64(entryCount * entrySize / ss)
	align := uint64(alignment / ss)
	next := 2 + arraySectors
	for _, s := range parts {
		n := (uint64(max(s.Size, 1)) + uint64(ss) - 1) / uint64(ss)
		next = alignUp(next, align) + n
	}
	next = max(next, alignUp(2+arraySectors, align)+1)
	return int64(next+arraySectors+1) * int64(ss)
}

// checkName checks that name can be stored as a PartitionName (UEFI 2.10
// table 5.6: 36 UTF-16 code units, NUL-terminated when shorter).
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("no name (keel finds partitions by name)")
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("name %q contains a NUL character", name)
	}
	if n := len(encodeName(name)); n > nameUnits {
		return fmt.Errorf("name %q is %d UTF-16 code units long; the GPT holds %d", name, n, nameUnits)
	}
	return nil
}

// Write writes the whole table to w: the protective MBR at LBA 0 (UEFI 2.10
// section 5.2.3), then the backup entry array and header at BackupLBA, then
// the primary entry array from LBA 2 and header at LBA 1 (section 5.3). Each
// copy's entries go before its header, and the backup before the primary, so
// that after an interrupted Write one copy is still whole and Read can use it.
//
// Write checks the table first: sector and entry sizes, names, that the
// entry arrays fit between the headers and the usable area, and that the
// partitions lie in the usable area without overlapping. Writing a table that
// Read took from the backup repairs the primary copy.
func (t *Table) Write(w io.WriterAt) error {
	if err := t.check(); err != nil {
		return fmt.Errorf("gpt: not writing the table: %w", err)
	}
	ss := t.SectorSize
	arrayBytes := int(t.EntryCount) * int(t.EntrySize)
	arraySectors := uint64((arrayBytes + ss - 1) / ss)
	array := make([]byte, int(arraySectors)*ss)
	for _, p := range t.Partitions {
		marshalEntry(array[(p.Index-1)*int(t.EntrySize):], p)
	}
	h := header{
		firstUsable: t.FirstUsableLBA,
		lastUsable:  t.LastUsableLBA,
		diskGUID:    t.DiskGUID,
		entryCount:  t.EntryCount,
		entrySize:   t.EntrySize,
		entriesCRC:  crc32.ChecksumIEEE(array[:arrayBytes]),
	}
	primary, backup := h, h
	primary.myLBA, primary.alternateLBA, primary.entriesLBA = 1, t.BackupLBA, 2
	backup.myLBA, backup.alternateLBA, backup.entriesLBA = t.BackupLBA, 1, t.BackupLBA-arraySectors

	writes := []struct {
		what string
		lba  uint64
		b    []byte
	}{
		{"protective MBR", 0, protectiveMBR(ss, t.BackupLBA)},
		{"backup partition entries", backup.entriesLBA, array},
		{"backup GPT header", backup.myLBA, backup.marshal(ss)},
		{"primary partition entries", primary.entriesLBA, array},
		{"primary GPT header", primary.myLBA, primary.marshal(ss)},
	}
	for _, x := range writes {
		if _, err := w.WriteAt(x.b, int64(x.lba)*int64(ss)); err != nil {
			return fmt.Errorf("gpt: writing the %s at LBA %d: %w", x.what, x.lba, err)
		}
	}
	return nil
}

// check validates a table before Write.
func (t *Table) check() error {
	ss := t.SectorSize
	if ss != 512 && ss != 4096 {
		return fmt.Errorf("sector size %d: want 512 or 4096", ss)
	}
	if t.EntrySize < entrySize || t.EntrySize&(t.EntrySize-1) != 0 {
		return fmt.Errorf("%w: entry size %d is not 128 times a power of 2", ErrBadHeader, t.EntrySize)
	}
	arrayBytes := uint64(t.EntryCount) * uint64(t.EntrySize)
	if arrayBytes > maxEntryBytes {
		return fmt.Errorf("%w: an entry array of %d bytes is larger than %d bytes", ErrBadHeader, arrayBytes, maxEntryBytes)
	}
	arraySectors := (arrayBytes + uint64(ss) - 1) / uint64(ss)
	if t.BackupLBA > 1<<48 {
		return fmt.Errorf("%w: backup header LBA %d is absurd", ErrBadHeader, t.BackupLBA)
	}
	switch {
	case t.FirstUsableLBA < 2+arraySectors:
		return fmt.Errorf("%w: first usable LBA %d is inside the primary entry array (LBA 2-%d)", ErrBadHeader, t.FirstUsableLBA, 1+arraySectors)
	case t.LastUsableLBA < t.FirstUsableLBA:
		return fmt.Errorf("%w: last usable LBA %d is before the first usable LBA %d", ErrBadHeader, t.LastUsableLBA, t.FirstUsableLBA)
	case t.BackupLBA < t.LastUsableLBA+1+arraySectors:
		return fmt.Errorf("%w: the backup entry array (%d sectors before LBA %d) would overlap the usable area ending at LBA %d", ErrBadHeader, arraySectors, t.BackupLBA, t.LastUsableLBA)
	}
	seen := map[int]bool{}
	for _, p := range t.Partitions {
		if p.Index < 1 || p.Index > int(t.EntryCount) || seen[p.Index] {
			return fmt.Errorf("%w: partition %q has index %d: want a unique index in 1..%d", ErrInvalidSpec, p.Name, p.Index, t.EntryCount)
		}
		seen[p.Index] = true
		if p.Type.IsZero() {
			return fmt.Errorf("%w: partition %d %q has no type GUID", ErrInvalidSpec, p.Index, p.Name)
		}
		if n := len(encodeName(p.Name)); n > nameUnits {
			return fmt.Errorf("%w: partition %d: name %q is %d UTF-16 code units long; the GPT holds %d", ErrInvalidSpec, p.Index, p.Name, n, nameUnits)
		}
	}
	return t.checkPartitions(t.BackupLBA + 1)
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

// human formats a byte count for messages: "12 MiB", "1.5 GiB", "512 bytes".
func human(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[exp]) + "iB"
}
