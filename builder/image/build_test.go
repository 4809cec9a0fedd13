package image

import (
	"bytes"
	"context"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/image/imagetest"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

// TestBuild builds one disk for qemu-x86_64-uefi (slot a: erofs from a
// directory; slot b: ext4 from a directory, its kernel then corrupted in
// the image with imagetest) and checks it with independent tools where
// there are any.
func TestBuild(t *testing.T) {
	fx := newFixture(t)
	sb := fx.spec.Slots["b"]
	sb.RootFSType = FSExt4
	fx.spec.Slots["b"] = sb
	disk, tab := fx.build(t)
	img := fx.spec.Out
	if err := imagetest.CorruptEntry(img, layout.SlotPartition("b"), slotimg.EntryKernel); err != nil {
		t.Fatal(err)
	}
	board := fx.spec.Board

	t.Run("file", func(t *testing.T) {
		st, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != int64(board.DiskMB)<<20 || st.Mode().Perm() != 0o644 {
			t.Errorf("image is %d bytes, mode %v; want %d, 0644", st.Size(), st.Mode(), int64(board.DiskMB)<<20)
		}
		ents, _ := os.ReadDir(filepath.Dir(img))
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("the output directory holds %v: temporary files were left behind", names)
		}
	})

	t.Run("sgdisk", func(t *testing.T) {
		out := command(t, "sgdisk", "-v", img)
		if !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v:\n%s", out)
		}
		// sgdisk's own view of names, types and sizes.
		out = command(t, "sgdisk", "-p", img)
		row := regexp.MustCompile(`(?m)^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+[0-9A-F]{4}\s+(\S+)\s*$`)
		rows := row.FindAllStringSubmatch(out, -1)
		if len(rows) != len(board.Layout) {
			t.Fatalf("sgdisk -p shows %d partitions, the board has %d:\n%s", len(rows), len(board.Layout), out)
		}
		for i, r := range rows {
			l := board.Layout[i]
			first, _ := strconv.ParseUint(r[2], 10, 64)
			last, _ := strconv.ParseUint(r[3], 10, 64)
			if r[4] != l.Name {
				t.Errorf("sgdisk: partition %s is named %q, want %q", r[1], r[4], l.Name)
			}
			if l.SizeMB > 0 && (last-first+1)*512 != uint64(l.SizeMB)<<20 {
				t.Errorf("sgdisk: %s has %d sectors, want %d MiB", l.Name, last-first+1, l.SizeMB)
			}
			if first%2048 != 0 {
				t.Errorf("sgdisk: %s starts at sector %d, not 1 MiB aligned", l.Name, first)
			}
			info := command(t, "sgdisk", "-i", r[1], img)
			if !strings.Contains(info, "Partition GUID code: "+l.TypeID) {
				t.Errorf("sgdisk -i %s: want type %s:\n%s", r[1], l.TypeID, info)
			}
		}
	})

	t.Run("layout", func(t *testing.T) {
		if len(tab.Partitions) != len(board.Layout) {
			t.Fatalf("%d partitions, want %d", len(tab.Partitions), len(board.Layout))
		}
		for i, l := range board.Layout {
			p := tab.Partitions[i]
			if p.Name != l.Name || p.Type != gpt.MustParseGUID(l.TypeID) {
				t.Errorf("partition %d: %q %v, want %q %s", i+1, p.Name, p.Type, l.Name, l.TypeID)
			}
			if l.SizeMB > 0 && p.Size() != int64(l.SizeMB)<<20 {
				t.Errorf("%s: %d bytes, want %d MiB", l.Name, p.Size(), l.SizeMB)
			}
		}
		last := tab.Partitions[len(tab.Partitions)-1]
		if last.LastLBA != tab.LastUsableLBA {
			t.Errorf("data ends at LBA %d, the disk's last usable LBA is %d", last.LastLBA, tab.LastUsableLBA)
		}
	})

	t.Run("esp", func(t *testing.T) {
		p := find(t, tab, "esp")
		at := img + "@@" + strconv.FormatInt(p.Offset(), 10)
		out := command(t, "mdir", "-i", at, "::/EFI/BOOT")
		if !regexp.MustCompile(`BOOTX64\s+EFI\s+\d+`).MatchString(out) {
			t.Errorf("mdir ::/EFI/BOOT:\n%s", out)
		}
		espImg := extract(t, disk, p)
		command(t, "fsck.vfat", "-n", espImg) // exits non-zero on any error
		if bs := readPart(t, disk, p)[:512]; string(bs[0x52:0x5a]) != "FAT32   " || bs[510] != 0x55 || bs[511] != 0xaa {
			t.Errorf("the 64 MiB ESP has no FAT32 boot sector (type %q)", bs[0x52:0x5a])
		}
		uki := filepath.Join(t.TempDir(), "BOOTX64.EFI")
		command(t, "mcopy", "-i", at, "::/EFI/BOOT/BOOTX64.EFI", uki)
		checkUKI(t, uki, map[string][]byte{
			".osrel":   []byte(DefaultOSRelease),
			".cmdline": []byte("console=ttyS0 keel.store=efivars"),
			".initrd":  fx.keelInitrd,
			".linux":   fx.keelKernel,
		})
	})

	slot := func(t *testing.T, name string) (*manifest.Manifest, *slotimg.Header, io.ReaderAt) {
		p := find(t, tab, layout.SlotPartition(name))
		r := p.Section(disk)
		h, err := slotimg.ReadHeader(r, p.Size())
		if err != nil {
			t.Fatal(err)
		}
		ms, err := h.Section(r, slotimg.EntryManifest)
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := io.ReadAll(ms)
		ss, err := h.Section(r, manifest.SigEntry)
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := io.ReadAll(ss)
		m, err := manifest.VerifyFor(mb, sig, fx.trusted, manifest.Expect{Compatible: fx.spec.Board.Name, Role: manifest.RoleSlot})
		if err != nil {
			t.Fatalf("slot %s manifest: %v\n%s\n%s", name, err, mb, sig)
		}
		// Bound to the board and the role (issue 9 item 14): the same
		// manifest is refused for another board and as the seed's.
		if _, err := manifest.VerifyFor(mb, sig, fx.trusted, manifest.Expect{Compatible: "qemu-arm64-uboot", Role: manifest.RoleSlot}); !errors.Is(err, manifest.ErrWrongBoard) ||
			!strings.Contains(err.Error(), "manifest is for board "+fx.spec.Board.Name+", this is qemu-arm64-uboot") {
			t.Errorf("slot %s manifest for another board: %v, want ErrWrongBoard", name, err)
		}
		if _, err := manifest.VerifyFor(mb, sig, fx.trusted, manifest.Expect{Compatible: fx.spec.Board.Name, Role: manifest.RoleSeed}); !errors.Is(err, manifest.ErrWrongRole) {
			t.Errorf("slot %s manifest as a seed's: %v, want ErrWrongRole", name, err)
		}
		return m, h, r
	}

	t.Run("slot-a", func(t *testing.T) {
		m, h, r := slot(t, "a")
		want := fx.spec.Slots["a"]
		if m.Version != want.Version || m.SecurityVersion != want.SecurityVersion || m.Cmdline != want.Cmdline || m.Root.FSType != FSErofs {
			t.Errorf("manifest %+v, want version %q security %d cmdline %q fstype erofs", m, want.Version, want.SecurityVersion, want.Cmdline)
		}
		k, _ := manifest.DigestOf(bytes.NewReader(fx.kernel["a"]))
		i, _ := manifest.DigestOf(bytes.NewReader(fx.initrd["a"]))
		if m.Kernel != k || m.Initrd != i {
			t.Errorf("manifest digests %+v %+v, the inputs have %+v %+v", m.Kernel, m.Initrd, k, i)
		}
		ks, _ := h.Section(r, slotimg.EntryKernel)
		is, _ := h.Section(r, slotimg.EntryInitrd)
		if err := manifest.Check("kernel", ks, m.Kernel); err != nil {
			t.Error(err)
		}
		if err := manifest.Check("initrd", is, m.Initrd); err != nil {
			t.Error(err)
		}
		// The root file system passes fsck.erofs and holds the tree.
		root := extract(t, disk, find(t, tab, "root-a"))
		if got, _ := fsTypeOf(t, root); got != FSErofs {
			t.Fatalf("root-a holds %q, want erofs", got)
		}
		x := filepath.Join(t.TempDir(), "x")
		command(t, "fsck.erofs", "--extract="+x, root)
		compareTrees(t, want.RootDir, x)
	})

	t.Run("slot-b-corrupt-kernel", func(t *testing.T) {
		m, h, r := slot(t, "b")
		k, _ := manifest.DigestOf(bytes.NewReader(fx.kernel["b"]))
		if m.Kernel != k || m.Root.FSType != FSExt4 {
			t.Errorf("manifest kernel %+v fstype %s: want the digest of the input kernel %+v and ext4", m.Kernel, m.Root.FSType, k)
		}
		ks, _ := h.Section(r, slotimg.EntryKernel)
		err := manifest.Check("kernel", ks, m.Kernel)
		if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
			t.Errorf("corrupted kernel: manifest.Check = %v, want a digest mismatch", err)
		}
		ks, _ = h.Section(r, slotimg.EntryKernel)
		got, _ := io.ReadAll(ks)
		diff := 0
		for i := range got {
			if got[i] != fx.kernel["b"][i] {
				diff++
			}
		}
		if len(got) != len(fx.kernel["b"]) || diff != 1 {
			t.Errorf("corrupted kernel: %d bytes, %d differ; want %d bytes, 1 differing", len(got), diff, len(fx.kernel["b"]))
		}
		is, _ := h.Section(r, slotimg.EntryInitrd)
		if err := manifest.Check("initrd", is, m.Initrd); err != nil {
			t.Error(err)
		}
		root := extract(t, disk, find(t, tab, "root-b"))
		command(t, "e2fsck", "-fn", root)
		if got, _ := fsTypeOf(t, root); got != FSExt4 {
			t.Errorf("root-b holds %q, want ext4", got)
		}
	})

	// Last: it breaks root-a. A byte of a file under the verity tree
	// flipped with imagetest fails veritysetup verify; root-b still passes.
	t.Run("root-a-corrupt", func(t *testing.T) {
		m := readManifest(t, disk, tab, "a")
		p := find(t, tab, "root-a")
		before := readPart(t, disk, p)
		if err := verityVerify(t, before, m); err != nil {
			t.Fatalf("root-a before: %v", err)
		}
		if err := imagetest.CorruptRoot(img, "a", []byte("VERSION_ID=a")); err != nil {
			t.Fatal(err)
		}
		after := readPart(t, disk, p)
		n := 0
		for i := range after {
			if after[i] != before[i] {
				n++
				if int64(i) >= int64(m.Root.Verity.HashOffset) {
					t.Errorf("byte %d changed: in the verity tree, not the file system", i)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d bytes of root-a changed, want 1", n)
		}
		if err := verityVerify(t, after, m); err == nil {
			t.Error("veritysetup verify accepts root-a after CorruptRoot")
		}
		if err := verityVerify(t, readPart(t, disk, find(t, tab, "root-b")), readManifest(t, disk, tab, "b")); err != nil {
			t.Errorf("root-b: %v", err)
		}
	})

	t.Run("recovery-zero", func(t *testing.T) {
		if !allZero(readPart(t, disk, find(t, tab, "recovery"))) {
			t.Error("recovery is not all zeros")
		}
	})

	t.Run("data", func(t *testing.T) {
		p := find(t, tab, "data")
		data := extract(t, disk, p)
		command(t, "e2fsck", "-fn", data)
		out := command(t, "dumpe2fs", "-h", data)
		if !regexp.MustCompile(`(?m)^Filesystem volume name:\s+data$`).MatchString(out) {
			t.Errorf("data has no label \"data\":\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^Block count:\s+` + strconv.FormatInt(p.Size()/4096, 10) + `$`).MatchString(out) {
			t.Errorf("data does not fill its %d-byte partition:\n%s", p.Size(), out)
		}
	})
}

// TestBuildEmptySlot leaves slot b empty, takes slot a's root from a
// prebuilt image, and checks that a second build with the same seed gives
// the same bytes.
func TestBuildEmptySlot(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	pre := filepath.Join(t.TempDir(), "root.erofs")
	sa := fx.spec.Slots["a"]
	if _, err := Rootfs(context.Background(), pre, RootfsOptions{Dir: sa.RootDir, UUID: "6b65656c-0000-4000-8000-000000000001"}); err != nil {
		t.Fatal(err)
	}
	sa.RootDir, sa.RootImage = "", pre
	fx.spec.Slots["a"] = sa
	fx.spec.Slots["b"] = Slot{Empty: true, Kernel: "/does/not/matter"}
	disk, tab := fx.build(t)
	for _, n := range []string{"slot-b", "root-b"} {
		if !allZero(readPart(t, disk, find(t, tab, n))) {
			t.Errorf("%s of an empty slot is not all zeros", n)
		}
	}
	want, _ := os.ReadFile(pre)
	got := readPart(t, disk, find(t, tab, "root-a"))
	if !bytes.Equal(got[:len(want)], want) {
		t.Error("root-a does not start with the prebuilt image")
	}
	checkVerity(t, got, readManifest(t, disk, tab, "a"))

	first, err := os.ReadFile(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	// In another second: a time stamp left to a tool would differ.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	fx.spec.Out += ".2"
	fx.build(t)
	second, err := os.ReadFile(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		n := 0
		for n < len(first) && first[n] == second[n] {
			n++
		}
		t.Errorf("two builds with the same seed differ, first at byte %d (%#x)", n, n)
	}
}

// TestBuildTooLarge: a slot container larger than its partition names the
// partition and both sizes, and leaves no file behind.
func TestBuildTooLarge(t *testing.T) {
	fx := newFixture(t)
	fx.spec.Board.Layout = append([]boards.Partition(nil), fx.spec.Board.Layout...)
	for i := range fx.spec.Board.Layout {
		if fx.spec.Board.Layout[i].Name == "slot-b" {
			fx.spec.Board.Layout[i].SizeMB = 1
		}
	}
	sb := fx.spec.Slots["b"]
	randomFile(t, sb.Kernel, 2<<20)
	err := Build(context.Background(), fx.spec)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Build = %v, want ErrTooLarge", err)
	}
	for _, s := range []string{"partition slot-b", "1 MiB (1048576 bytes)", "the slot container", sb.Kernel} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(fx.spec.Out))
	if len(ents) != 0 {
		t.Errorf("a failed build left %d files in the output directory", len(ents))
	}
}

// TestBuildDiskTooSmall: a layout that does not fit the disk says so
// (the board's own check, boards.Board.Validate, run by Spec.Validate).
func TestBuildDiskTooSmall(t *testing.T) {
	fx := newFixture(t)
	fx.spec.Board.DiskMB = 100
	err := Build(context.Background(), fx.spec)
	var se *SpecError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "board qemu-x86_64-uefi: layout needs") || !strings.Contains(err.Error(), "the disk has 100") {
		t.Fatalf("Build = %v, want a spec problem naming the layout and the disk size", err)
	}
	if _, err := os.Stat(fx.spec.Out); err == nil {
		t.Error("a refused spec wrote an image")
	}
}

// TestSpecBoardErrors: Validate reports every problem of the board, each
// as a problem of its own, and refuses a board it cannot make disks for.
func TestSpecBoardErrors(t *testing.T) {
	fx := newFixture(t)
	b := &fx.spec.Board
	b.Layout = append([]boards.Partition(nil), b.Layout...)
	for i := range b.Layout {
		switch b.Layout[i].Name {
		case "root-b":
			b.Layout[i].Name = "root-c"
		case "slot-a":
			b.Layout[i].TypeID = "not-a-guid"
		}
	}
	b.Firmware = "coreboot"
	err := fx.spec.Validate()
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("Validate = %v, want a *SpecError", err)
	}
	for _, want := range []string{
		`board qemu-x86_64-uefi boots with "coreboot" firmware: the image builder makes UEFI and U-Boot disks`,
		`board qemu-x86_64-uefi: slot b has no partition "root-b"`,
		`board qemu-x86_64-uefi: partition slot-a: type "not-a-guid" is not an upper-case GUID`,
	} {
		found := false
		for _, e := range se.Errs {
			found = found || e.Error() == want
		}
		if !found {
			t.Errorf("no problem says %q:\n%v", want, err)
		}
	}

	fx.spec.Board = boards.Board{}
	fx.spec.Out = ""
	err = fx.spec.Validate()
	for _, want := range []string{"no board given (keel image build --board NAME)", "no output file given (keel image build --out DISK.img)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate without board and out = %v, want %q", err, want)
		}
	}
}

// checkUKI checks a UKI with objdump -h and debug/pe: the sections want
// holds are there with that content, after the stub's sections, in ukify's
// order, at increasing VMAs aligned to the stub's SectionAlignment.
func checkUKI(t *testing.T, path string, want map[string][]byte) {
	t.Helper()
	stub, err := pe.Open(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	oh := stub.OptionalHeader.(*pe.OptionalHeader64)
	align := uint64(oh.SectionAlignment)
	var stubEnd uint64
	for _, s := range stub.Sections {
		stubEnd = max(stubEnd, oh.ImageBase+uint64(s.VirtualAddress)+uint64(s.VirtualSize))
	}

	// objdump -h: an independent reading of the section table.
	out := command(t, "objdump", "-h", path)
	row := regexp.MustCompile(`(?m)^\s*\d+\s+(\.\w+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+\S+\n\s+(.*)$`)
	type sec struct {
		name      string
		size, vma uint64
		flags     string
	}
	var added []sec
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		if _, ok := want[m[1]]; !ok {
			continue
		}
		size, _ := strconv.ParseUint(m[2], 16, 64)
		vma, _ := strconv.ParseUint(m[3], 16, 64)
		added = append(added, sec{m[1], size, vma, m[4]})
	}
	order := []string{".osrel", ".cmdline", ".initrd", ".linux"}
	if len(added) != len(order) {
		t.Fatalf("objdump -h shows %d of the sections %v:\n%s", len(added), order, out)
	}
	prevEnd := stubEnd
	for i, s := range added {
		if s.name != order[i] {
			t.Errorf("section %d is %s, want %s (ukify's order)", i, s.name, order[i])
		}
		if s.vma%align != 0 || s.vma < prevEnd || s.vma >= prevEnd+align {
			t.Errorf("%s at VMA %#x: want the first %#x-aligned address at or after %#x", s.name, s.vma, align, prevEnd)
		}
		if s.size != uint64(len(want[s.name])) {
			t.Errorf("%s is %d bytes, want %d", s.name, s.size, len(want[s.name]))
		}
		if code := strings.Contains(s.flags, "CODE"); code != (s.name == ".linux") {
			t.Errorf("%s flags %q", s.name, s.flags)
		}
		prevEnd = s.vma + s.size
	}

	// debug/pe: the same addresses, and the contents.
	secs, data, err := ReadUKI(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secs {
		if i < len(added) && (s.Name != added[i].name || s.VMA != added[i].vma) {
			t.Errorf("debug/pe: %s at %#x, objdump: %s at %#x", s.Name, s.VMA, added[i].name, added[i].vma)
		}
		if !bytes.Equal(data[i], want[s.Name]) {
			t.Errorf("%s does not hold its input (%d bytes, want %d)", s.Name, len(data[i]), len(want[s.Name]))
		}
	}
	f, err := pe.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	uh := f.OptionalHeader.(*pe.OptionalHeader64)
	if uh.SectionAlignment != oh.SectionAlignment || f.TimeDateStamp != stub.TimeDateStamp {
		t.Errorf("UKI SectionAlignment %#x, time stamp %d; the stub's %#x, %d", uh.SectionAlignment, f.TimeDateStamp, oh.SectionAlignment, stub.TimeDateStamp)
	}
	last := secs[len(secs)-1]
	if img := uint64(uh.SizeOfImage); img < last.VMA-uh.ImageBase+uint64(last.Size) {
		t.Errorf("SizeOfImage %#x ends before .linux (%#x + %#x)", img, last.VMA, last.Size)
	}
	b, _ := os.ReadFile(path)
	ts, _ := peTimestampOffset(b)
	sumOff := ts - 8 + 24 + 64
	if got := binaryLE32(b[sumOff:]); got != peChecksum(b, sumOff) {
		t.Errorf("PE checksum %#x, computed %#x", got, peChecksum(b, sumOff))
	}
}

func binaryLE32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func fsTypeOf(t *testing.T, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return FSType(f)
}

// compareTrees checks that every regular file and symlink under want is in
// got with the same content.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.Walk(want, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		g := filepath.Join(got, rel)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, err := os.Readlink(g)
			if err != nil || a != b {
				t.Errorf("%s: symlink %q, extracted %q (%v)", rel, a, b, err)
			}
			n++
		case info.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(g)
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("%s differs after extraction (%v)", rel, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Errorf("only %d files compared", n)
	}
}

// readManifest returns a slot's manifest from the disk image.
func readManifest(t *testing.T, disk io.ReaderAt, tab *gpt.Table, slot string) *manifest.Manifest {
	t.Helper()
	c := readPart(t, disk, find(t, tab, "slot-"+slot))
	h, err := slotimg.ParseHeader(c, int64(len(c)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.Find(slotimg.EntryManifest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(c[e.Offset : e.Offset+e.Size])
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkVerity runs veritysetup verify on a root partition with the
// manifest's parameters, and checks that a flipped data byte fails it.
func checkVerity(t *testing.T, part []byte, m *manifest.Manifest) {
	t.Helper()
	if err := verityVerify(t, part, m); err != nil {
		t.Fatalf("veritysetup verify refuses the root: %v", err)
	}
	bad := bytes.Clone(part)
	bad[4096*int(m.Root.Verity.DataBlocks/2)] ^= 1
	if verityVerify(t, bad, m) == nil {
		t.Fatal("veritysetup verify accepts a root with a flipped byte")
	}
}

// verityVerify runs veritysetup verify on a root partition's bytes with
// the manifest's verity parameters.
func verityVerify(t *testing.T, part []byte, m *manifest.Manifest) error {
	t.Helper()
	v := m.Root.Verity
	if v == nil {
		t.Fatal("the manifest has no verity parameters")
	}
	img := filepath.Join(t.TempDir(), "root.img")
	if err := os.WriteFile(img, part, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("veritysetup", "verify", img, img, v.RootHash, "--no-superblock",
		fmt.Sprintf("--hash-offset=%d", v.HashOffset), fmt.Sprintf("--data-blocks=%d", v.DataBlocks),
		"--salt="+v.Salt).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
