package gpt

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
)

// sectorSizes returns the logical block sizes Read recognises, in the order
// it tries them.
func sectorSizes() [2]int { return [2]int{512, 4096} }

// Read reads and validates the GPT of a disk or disk image of size bytes.
//
// It checks the protective MBR (UEFI 2.10 section 5.2.3), the primary header
// at LBA 1 (section 5.3.2: signature, HeaderCRC32, MyLBA, sizes), the CRC32
// of its partition entry array, and that every partition (section 5.3.3)
// lies inside the usable area without overlapping another. When the primary
// copy fails any check, Read uses the backup header at the last LBA, sets
// Table.FromBackup and records the primary's problem in Table.Warnings. With
// a good primary, a damaged or different backup is also only a warning.
//
// Errors start with "gpt: " and wrap ErrNotGPT, ErrTruncated, ErrHeaderCRC,
// ErrEntriesCRC, ErrBadHeader, ErrPartitionOutOfRange or ErrOverlap; when
// both copies are unusable the error describes (and wraps) both problems.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	t, err := read(r, size)
	if err != nil {
		return nil, fmt.Errorf("gpt: %w", err)
	}
	return t, nil
}

// read is Read without the "gpt: " prefix on errors.
func read(r io.ReaderAt, size int64) (*Table, error) {
	if size < 1024 {
		return nil, fmt.Errorf("%w: the image is only %d bytes, too small to hold a protective MBR and a GPT header", ErrNotGPT, size)
	}
	lba0 := make([]byte, 512)
	if err := readAt(r, lba0, 0, size); err != nil {
		return nil, fmt.Errorf("reading the MBR: %w", err)
	}
	mbr := classifyMBR(lba0)

	// The primary header is at LBA 1; its signature tells the sector size.
	ss := 0
	var hdr []byte
	for _, n := range sectorSizes() {
		if size < 2*int64(n) {
			break
		}
		b := make([]byte, n)
		if err := readAt(r, b, int64(n), size); err != nil {
			if n != 512 && errors.Is(err, ErrTruncated) {
				break // too short for a 4Kn GPT: judged as a 512-byte one below
			}
			return nil, fmt.Errorf("reading LBA 1: %w", err)
		}
		if string(b[:8]) == signature {
			ss, hdr = n, b
			break
		}
	}

	if ss == 0 {
		// No primary header. Without a protective MBR this is not a GPT
		// disk, whatever the last sector holds (a backup left over from an
		// earlier GPT on a disk now partitioned with an MBR, for example).
		ss, hdr = findBackup(r, size)
		if mbr != mbrProtective {
			msg := "no GPT header at LBA 1"
			switch mbr {
			case mbrLegacy:
				msg += " and LBA 0 holds an MBR without a protective (0xEE) partition: an MBR-partitioned disk?"
			case mbrNone:
				msg += " and no MBR signature at LBA 0"
			}
			if ss != 0 {
				msg += " (a GPT header at the last LBA was ignored: without a protective MBR it is stale)"
			}
			return nil, fmt.Errorf("%w: %s", ErrNotGPT, msg)
		}
		if ss == 0 {
			return nil, fmt.Errorf("%w: LBA 0 holds a protective MBR but there is no GPT header at LBA 1 nor at the last LBA", ErrNotGPT)
		}
		last := uint64(size/int64(ss)) - 1
		t, err := loadCopy(r, size, ss, last, hdr)
		if err != nil {
			return nil, fmt.Errorf("no GPT header at LBA 1, and the backup GPT (LBA %d) is unusable: %w", last, err)
		}
		t.FromBackup = true
		t.Warnings = append(t.Warnings, fmt.Errorf("primary GPT (LBA 1): no GPT header signature; using the backup GPT at LBA %d", last))
		return t, nil
	}

	t, errPrimary := loadCopy(r, size, ss, 1, hdr)
	if errPrimary == nil {
		if mbr != mbrProtective {
			t.Warnings = append(t.Warnings, errors.New("LBA 0 holds no protective MBR (UEFI 2.10 section 5.2.3): legacy tools may see an unpartitioned disk"))
		}
		checkBackup(r, size, t)
		return t, nil
	}
	errPrimary = fmt.Errorf("primary GPT (LBA 1): %w", errPrimary)

	// Fall back to the backup header at the last LBA.
	last := uint64(size/int64(ss)) - 1
	b := make([]byte, ss)
	if err := readAt(r, b, int64(last)*int64(ss), size); err != nil {
		return nil, fmt.Errorf("%w; reading the backup GPT at LBA %d: %w", errPrimary, last, err)
	}
	if string(b[:8]) != signature {
		return nil, fmt.Errorf("%w; no backup GPT header at the last LBA %d either", errPrimary, last)
	}
	t, errBackup := loadCopy(r, size, ss, last, b)
	if errBackup != nil {
		if errors.Unwrap(errPrimary).Error() == errBackup.Error() { // the same problem in both copies: say it once
			return nil, fmt.Errorf("both GPT copies (LBA 1 and LBA %d) are unusable: %w", last, errBackup)
		}
		return nil, fmt.Errorf("both GPT copies are unusable: %w; backup GPT (LBA %d): %w", errPrimary, last, errBackup)
	}
	t.FromBackup = true
	t.Warnings = append(t.Warnings, fmt.Errorf("%w; using the backup GPT at LBA %d", errPrimary, last))
	if mbr != mbrProtective {
		t.Warnings = append(t.Warnings, errors.New("LBA 0 holds no protective MBR (UEFI 2.10 section 5.2.3)"))
	}
	return t, nil
}

// ReadFile reads the GPT of an open disk image or block device. Its size is
// found by seeking to the end, which works for block devices too (their
// Stat size is 0); the file offset is restored.
func ReadFile(f *os.File) (*Table, error) {
	size, err := fileSize(f)
	if err != nil {
		return nil, fmt.Errorf("gpt: size of %s: %w", f.Name(), err)
	}
	t, err := read(f, size)
	if err != nil {
		return nil, fmt.Errorf("gpt: %s: %w", f.Name(), err)
	}
	return t, nil
}

func fileSize(f *os.File) (int64, error) {
	cur, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(cur, io.SeekStart); err != nil {
		return 0, err
	}
	return end, nil
}

// findBackup looks for a GPT header signature in the last sector for each
// known sector size.
func findBackup(r io.ReaderAt, size int64) (int, []byte) {
	for _, n := range sectorSizes() {
		if size < 2*int64(n) {
			break
		}
		b := make([]byte, n)
		last := size/int64(n) - 1
		if readAt(r, b, last*int64(n), size) == nil && string(b[:8]) == signature {
			return n, b
		}
	}
	return 0, nil
}

// checkBackup validates the backup copy of a table read from the primary and
// records any problem as a warning: it is what firmware and tools fall back
// to, so a damaged one is worth repairing.
func checkBackup(r io.ReaderAt, size int64, t *Table) {
	ss := int64(t.SectorSize)
	last := uint64(size/ss) - 1
	if t.BackupLBA != last {
		t.Warnings = append(t.Warnings, fmt.Errorf("the primary GPT puts the backup header at LBA %d, not at the last LBA %d: was the image written to a larger disk?", t.BackupLBA, last))
	}
	b := make([]byte, ss)
	if err := readAt(r, b, int64(t.BackupLBA)*ss, size); err != nil {
		t.Warnings = append(t.Warnings, fmt.Errorf("backup GPT (LBA %d): %w", t.BackupLBA, err))
		return
	}
	if string(b[:8]) != signature {
		t.Warnings = append(t.Warnings, fmt.Errorf("backup GPT (LBA %d): no GPT header signature", t.BackupLBA))
		return
	}
	bt, err := loadCopy(r, size, int(ss), t.BackupLBA, b)
	if err != nil {
		t.Warnings = append(t.Warnings, fmt.Errorf("backup GPT (LBA %d): %w", t.BackupLBA, err))
		return
	}
	if bt.DiskGUID != t.DiskGUID || bt.FirstUsableLBA != t.FirstUsableLBA || bt.LastUsableLBA != t.LastUsableLBA ||
		!slices.Equal(bt.Partitions, t.Partitions) {
		t.Warnings = append(t.Warnings, fmt.Errorf("backup GPT (LBA %d) differs from the primary", t.BackupLBA))
	}
}

// loadCopy validates the header in hdr, read from LBA lba, then reads and
// validates its partition entry array and partitions (UEFI 2.10 section
// 5.3.2, "GPT Header" validation rules, and 5.3.3). Errors carry no "gpt: "
// prefix; the caller says which copy failed.
func loadCopy(r io.ReaderAt, size int64, ss int, lba uint64, hdr []byte) (*Table, error) {
	h := parseHeader(hdr)
	if h.size < headerSize || h.size > uint32(ss) {
		return nil, fmt.Errorf("%w: HeaderSize %d is outside %d..%d", ErrBadHeader, h.size, headerSize, ss)
	}
	if got := headerCRC(hdr, h.size); got != h.crc {
		return nil, fmt.Errorf("%w (stored %#08x, computed %#08x)", ErrHeaderCRC, h.crc, got)
	}
	if h.myLBA != lba {
		return nil, fmt.Errorf("%w: the header at LBA %d says it is at LBA %d (MyLBA)", ErrBadHeader, lba, h.myLBA)
	}
	if h.alternateLBA == h.myLBA {
		return nil, fmt.Errorf("%w: AlternateLBA is the header's own LBA %d", ErrBadHeader, lba)
	}
	if h.entrySize < entrySize || h.entrySize&(h.entrySize-1) != 0 {
		return nil, fmt.Errorf("%w: SizeOfPartitionEntry %d is not 128 times a power of 2", ErrBadHeader, h.entrySize)
	}
	arrayBytes := uint64(h.entryCount) * uint64(h.entrySize)
	if arrayBytes > maxEntryBytes {
		return nil, fmt.Errorf("%w: a partition entry array of %d entries of %d bytes is larger than %d bytes", ErrBadHeader, h.entryCount, h.entrySize, maxEntryBytes)
	}
	if h.firstUsable > h.lastUsable {
		return nil, fmt.Errorf("%w: FirstUsableLBA %d is after LastUsableLBA %d", ErrBadHeader, h.firstUsable, h.lastUsable)
	}
	arraySectors := (arrayBytes + uint64(ss) - 1) / uint64(ss)
	if h.entriesLBA > 1<<48 { // keeps the sums below from overflowing
		return nil, fmt.Errorf("%w: PartitionEntryLBA %d is absurd", ErrBadHeader, h.entriesLBA)
	}
	arrayEnd := h.entriesLBA + arraySectors // exclusive
	inUsable := func(x uint64) bool { return x >= h.firstUsable && x <= h.lastUsable }
	switch {
	case inUsable(0) || inUsable(h.myLBA) || inUsable(h.alternateLBA):
		return nil, fmt.Errorf("%w: the usable area LBA %d-%d includes LBA 0 or a header (LBA %d, %d)", ErrBadHeader, h.firstUsable, h.lastUsable, h.myLBA, h.alternateLBA)
	case arraySectors > 0 && (h.entriesLBA == 0 || h.entriesLBA <= h.myLBA && h.myLBA < arrayEnd ||
		h.entriesLBA <= h.lastUsable && h.firstUsable < arrayEnd):
		return nil, fmt.Errorf("%w: the partition entry array (LBA %d-%d) overlaps LBA 0, the header or the usable area LBA %d-%d",
			ErrBadHeader, h.entriesLBA, arrayEnd-1, h.firstUsable, h.lastUsable)
	}

	// Everything the header describes must be inside the image.
	sectors := uint64(size / int64(ss))
	need, what := h.lastUsable, "its last usable LBA"
	if h.alternateLBA > need {
		need, what = h.alternateLBA, "its alternate header"
	}
	if arrayEnd > 0 && arrayEnd-1 > need {
		need, what = arrayEnd-1, "the end of its partition entry array"
	}
	if need >= sectors {
		return nil, fmt.Errorf("%w: the image is %d bytes (%d sectors of %d bytes) but the header says the disk reaches at least LBA %d (%s)",
			ErrTruncated, size, sectors, ss, need, what)
	}

	array := make([]byte, arraySectors*uint64(ss))
	if err := readAt(r, array, int64(h.entriesLBA)*int64(ss), size); err != nil {
		return nil, fmt.Errorf("reading the partition entry array at LBA %d: %w", h.entriesLBA, err)
	}
	array = array[:arrayBytes]
	if got := crc32.ChecksumIEEE(array); got != h.entriesCRC {
		return nil, fmt.Errorf("%w: the array at LBA %d (stored %#08x, computed %#08x)", ErrEntriesCRC, h.entriesLBA, h.entriesCRC, got)
	}

	t := &Table{
		SectorSize:     ss,
		DiskGUID:       h.diskGUID,
		FirstUsableLBA: h.firstUsable,
		LastUsableLBA:  h.lastUsable,
		BackupLBA:      h.alternateLBA,
		EntryCount:     h.entryCount,
		EntrySize:      h.entrySize,
	}
	if lba != 1 { // read from the backup: its alternate is the primary
		t.BackupLBA = lba
	}
	for i := 0; i < int(h.entryCount); i++ {
		e := array[i*int(h.entrySize):]
		if GUID(e[:16]).IsZero() {
			continue // unused entry (5.3.3)
		}
		p := parseEntry(e)
		p.Index = i + 1
		if ss != 512 {
			p.sectorSize = ss
		}
		t.Partitions = append(t.Partitions, p)
	}
	if err := t.checkPartitions(sectors); err != nil {
		return nil, err
	}
	return t, nil
}

// checkPartitions checks that every partition lies within the usable area
// (and so within a disk of the given number of sectors) and that no two
// overlap (UEFI 2.10 section 5.3.3).
func (t *Table) checkPartitions(sectors uint64) error {
	for _, p := range t.Partitions {
		switch {
		case p.LastLBA < p.FirstLBA:
			return fmt.Errorf("%w: partition %d %q ends (LBA %d) before it starts (LBA %d)", ErrPartitionOutOfRange, p.Index, p.Name, p.LastLBA, p.FirstLBA)
		case p.LastLBA >= sectors:
			return fmt.Errorf("%w: partition %d %q (LBA %d-%d) ends beyond the last LBA %d of the disk", ErrPartitionOutOfRange, p.Index, p.Name, p.FirstLBA, p.LastLBA, sectors-1)
		case p.FirstLBA < t.FirstUsableLBA || p.LastLBA > t.LastUsableLBA:
			return fmt.Errorf("%w: partition %d %q (LBA %d-%d) is outside the usable area LBA %d-%d", ErrPartitionOutOfRange, p.Index, p.Name, p.FirstLBA, p.LastLBA, t.FirstUsableLBA, t.LastUsableLBA)
		}
	}
	sorted := slices.Clone(t.Partitions)
	slices.SortFunc(sorted, func(a, b Partition) int {
		switch {
		case a.FirstLBA < b.FirstLBA:
			return -1
		case a.FirstLBA > b.FirstLBA:
			return 1
		}
		return 0
	})
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if b.FirstLBA <= a.LastLBA {
			return fmt.Errorf("%w: partition %d %q (LBA %d-%d) and partition %d %q (LBA %d-%d)", ErrOverlap,
				a.Index, a.Name, a.FirstLBA, a.LastLBA, b.Index, b.Name, b.FirstLBA, b.LastLBA)
		}
	}
	return nil
}

// readAt fills b from offset off, failing with ErrTruncated when the image
// (of size bytes) or the reader ends first.
func readAt(r io.ReaderAt, b []byte, off, size int64) error {
	if off < 0 || off > size || int64(len(b)) > size-off {
		return fmt.Errorf("%w: %d bytes at offset %d are past the end of the %d-byte image", ErrTruncated, len(b), off, size)
	}
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: only %d of the %d bytes at offset %d could be read: the image ends before the %d bytes it was said to have", ErrTruncated, n, len(b), off, size)
	}
	return err
}
