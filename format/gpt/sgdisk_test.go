package gpt

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// These tests check keel's GPT against sgdisk (package gdisk), an
// independent implementation. They fail, not skip, when sgdisk is missing.

func sgdisk(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("sgdisk")
	if err != nil {
		t.Fatalf("sgdisk is needed to check the GPT against an independent implementation (apt-get install gdisk): %v", err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sgdiskPart is what `sgdisk -i N` prints about one partition.
type sgdiskPart struct {
	Type, UUID  GUID
	First, Last uint64
	Attributes  uint64
	Name        string
}

var (
	reInfoType  = regexp.MustCompile(`(?m)^Partition GUID code: ([0-9A-F-]{36})`)
	reInfoUUID  = regexp.MustCompile(`(?m)^Partition unique GUID: ([0-9A-F-]{36})`)
	reInfoFirst = regexp.MustCompile(`(?m)^First sector: (\d+)`)
	reInfoLast  = regexp.MustCompile(`(?m)^Last sector: (\d+)`)
	reInfoAttr  = regexp.MustCompile(`(?m)^Attribute flags: ([0-9A-F]{16})`)
	reInfoName  = regexp.MustCompile(`(?m)^Partition name: '(.*)'$`)
	reDiskGUID  = regexp.MustCompile(`(?m)^Disk identifier \(GUID\): ([0-9A-F-]{36})`)
	rePrintRow  = regexp.MustCompile(`^\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+ \S+\s+([0-9A-F]{4})  (.*)$`)
)

func sgdiskInfo(t *testing.T, img string, n int) sgdiskPart {
	t.Helper()
	out := sgdisk(t, "-i", strconv.Itoa(n), img)
	field := func(re *regexp.Regexp) string {
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("sgdisk -i %d: no %v in:\n%s", n, re, out)
		}
		return m[1]
	}
	num := func(s string, base int) uint64 {
		v, err := strconv.ParseUint(s, base, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return sgdiskPart{
		Type:       MustParseGUID(field(reInfoType)),
		UUID:       MustParseGUID(field(reInfoUUID)),
		First:      num(field(reInfoFirst), 10),
		Last:       num(field(reInfoLast), 10),
		Attributes: num(field(reInfoAttr), 16),
		Name:       field(reInfoName),
	}
}

// sgdiskPrint parses `sgdisk -p`: the disk GUID and, per partition number,
// start, end and name.
func sgdiskPrint(t *testing.T, img string) (GUID, map[int]sgdiskPart) {
	t.Helper()
	out := sgdisk(t, "-p", img)
	m := reDiskGUID.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("sgdisk -p: no disk GUID in:\n%s", out)
	}
	rows := map[int]sgdiskPart{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		r := rePrintRow.FindStringSubmatch(sc.Text())
		if r == nil {
			continue
		}
		n, _ := strconv.Atoi(r[1])
		first, _ := strconv.ParseUint(r[2], 10, 64)
		last, _ := strconv.ParseUint(r[3], 10, 64)
		rows[n] = sgdiskPart{First: first, Last: last, Name: r[5]}
	}
	return MustParseGUID(m[1]), rows
}

func sgdiskVerify(t *testing.T, img string) {
	t.Helper()
	out := sgdisk(t, "-v", img)
	if !strings.Contains(out, "No problems found.") {
		t.Errorf("sgdisk -v %s reports problems:\n%s", img, out)
	}
}

// checkAgainstSgdisk compares every partition of tab with sgdisk's view of
// img, both `-p` and `-i N`.
func checkAgainstSgdisk(t *testing.T, img string, tab *Table) {
	t.Helper()
	disk, rows := sgdiskPrint(t, img)
	if disk != tab.DiskGUID {
		t.Errorf("disk GUID: sgdisk %v, keel %v", disk, tab.DiskGUID)
	}
	if len(rows) != len(tab.Partitions) {
		t.Errorf("sgdisk -p lists %d partitions, keel %d: %v", len(rows), len(tab.Partitions), rows)
	}
	for _, p := range tab.Partitions {
		row, ok := rows[p.Index]
		if !ok {
			t.Errorf("sgdisk -p does not list partition %d", p.Index)
			continue
		}
		if row.First != p.FirstLBA || row.Last != p.LastLBA || row.Name != p.Name {
			t.Errorf("sgdisk -p: partition %d %q LBA %d-%d; keel %v", p.Index, row.Name, row.First, row.Last, p)
		}
		info := sgdiskInfo(t, img, p.Index)
		want := sgdiskPart{Type: p.Type, UUID: p.UUID, First: p.FirstLBA, Last: p.LastLBA, Attributes: p.Attributes, Name: p.Name}
		if info != want {
			t.Errorf("partition %d:\nsgdisk -i %+v\nkeel      %+v", p.Index, info, want)
		}
	}
}

// TestCreateSgdisk: an image made by Create passes `sgdisk -v`, and sgdisk
// sees the same disk GUID, names, types, unique GUIDs, LBAs and attributes.
func TestCreateSgdisk(t *testing.T) {
	t.Parallel()
	img := filepath.Join(t.TempDir(), "keel.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	specs := append(testSpecs()[:4:4],
		Spec{Name: "slot-a-verity", Type: TypeRootVerityAMD64(), Size: 1 << 20, Attributes: 1 << 60},
		Spec{Name: "données-ü", Type: TypeLinuxGeneric()})
	tab, err := Create(f, 64<<20, specs)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(img); fi.Size() != 64<<20 {
		t.Errorf("image is %d bytes, want %d", fi.Size(), 64<<20)
	}
	sgdiskVerify(t, img)
	checkAgainstSgdisk(t, img, tab)

	// ReadFile gets the same table back.
	f, err = os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(tab) {
		t.Errorf("ReadFile:\n got %+v\nwant %+v", got, tab)
	}
}

// TestReadSgdisk: an image partitioned by sgdisk reads back with the names,
// types, unique GUIDs, LBAs and attributes sgdisk reports; the sgdisk type
// codes also pin keel's well-known type GUIDs.
func TestReadSgdisk(t *testing.T) {
	t.Parallel()
	img := filepath.Join(t.TempDir(), "sgdisk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	parts := []struct {
		size, name, code string
		typ              GUID
	}{
		{"+10M", "esp", "ef00", TypeEFISystem()},
		{"+4M", "xbootldr", "ea00", TypeXBOOTLDR()},
		{"+8M", "slot-a", "8304", TypeRootAMD64()},
		{"+1M", "slot-a-verity", "830c", TypeRootVerityAMD64()},
		{"+8M", "slot-b", "8305", TypeRootARM64()},
		{"+1M", "slot-b-verity", "830e", TypeRootVerityARM64()},
		{"+4M", "home", "8302", TypeHome()},
		{"0", "data", "8300", TypeLinuxGeneric()},
	}
	args := []string{"-o"}
	for i, p := range parts {
		n := i + 1
		args = append(args, fmt.Sprintf("-n%d:0:%s", n, p.size), fmt.Sprintf("-c%d:%s", n, p.name), fmt.Sprintf("-t%d:%s", n, p.code))
	}
	args = append(args, "-A3:set:60", "-A3:set:63", "-A1:set:0", img)
	sgdisk(t, args...)

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if tab.FromBackup || len(tab.Warnings) != 0 {
		t.Errorf("FromBackup=%v warnings %v", tab.FromBackup, tab.Warnings)
	}
	if len(tab.Partitions) != len(parts) {
		t.Fatalf("keel reads %d partitions, sgdisk made %d", len(tab.Partitions), len(parts))
	}
	for i, p := range parts {
		got := tab.Partitions[i]
		if got.Name != p.name || got.Type != p.typ {
			t.Errorf("partition %d: keel reads %q type %v; sgdisk made %q with code %s = %v", i+1, got.Name, got.Type, p.name, p.code, p.typ)
		}
	}
	if a := tab.Partitions[2].Attributes; a != 1<<60|1<<63 {
		t.Errorf("slot-a attributes %#x", a)
	}
	checkAgainstSgdisk(t, img, tab)

	// Write keel's table back after a change: sgdisk still approves and sees it.
	tab.Partitions[2].Attributes = 1 << 48
	tab.Partitions[4].Name = "slot-b-renamed"
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := tab.Write(w); err != nil {
		t.Fatal(err)
	}
	sgdiskVerify(t, img)
	checkAgainstSgdisk(t, img, tab)
}

// TestCorruptSgdisk damages an image made by Create the way a failing disk
// would, and checks Read against sgdisk's own diagnosis.
func TestCorruptSgdisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img := filepath.Join(dir, "keel.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := Create(f, 16<<20, smallSpecs())
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the primary header's DiskGUID (writing a fixed value
	// changed nothing when the random GUID already held it: 1 run in 256).
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 512+60); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b[0] ^ 0xFF}, 512+60); err != nil {
		t.Fatal(err)
	}
	// sgdisk notices the damage ...
	out, _ := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if !strings.Contains(string(out), "Main header: ERROR") || !strings.Contains(string(out), "Backup header: OK") {
		t.Errorf("sgdisk -v does not see the damaged primary header:\n%s", out)
	}
	// ... and keel reads the backup.
	got, err := ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	checkFromBackup(t, got, want, ErrHeaderCRC)
	// Rewriting the table repairs the disk for sgdisk too.
	if err := got.Write(f); err != nil {
		t.Fatal(err)
	}
	sgdiskVerify(t, img)
	checkAgainstSgdisk(t, img, want)

	// A truncated copy is an error that says so.
	if err := os.Truncate(img, 12<<20); err != nil {
		t.Fatal(err)
	}
	_, err = ReadFile(f)
	wantErr(t, err, ErrTruncated, "gpt: "+img+": ", "the image is 12582912 bytes", "LBA 32767")
}

// TestProtectiveMBRSgdisk: keel's protective MBR (partition records and
// signature, bytes 446-511) is byte for byte the one sgdisk writes, for a
// disk whose end has a CHS address and one too big for CHS (0xFFFFFF).
func TestProtectiveMBRSgdisk(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{64 << 20, 20 << 30} {
		dir := t.TempDir()
		theirs, ours := filepath.Join(dir, "sgdisk.img"), filepath.Join(dir, "keel.img")
		for _, p := range []string{theirs, ours} {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, size); err != nil {
				t.Fatal(err)
			}
		}
		sgdisk(t, "-o", theirs)
		f, err := os.OpenFile(ours, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Create(f, size, nil)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		a, b := firstSector(t, theirs), firstSector(t, ours)
		if !bytes.Equal(a[446:512], b[446:512]) {
			t.Errorf("%d-byte disk: protective MBR\nsgdisk % x\nkeel   % x", size, a[446:512], b[446:512])
		}
	}
}

func firstSector(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
