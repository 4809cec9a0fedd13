package image

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// optionalHeaderOffset returns the file offset of the PE optional header.
func optionalHeaderOffset(t *testing.T, b []byte) int {
	t.Helper()
	ts, ok := peTimestampOffset(b)
	if !ok {
		t.Fatal("no PE header")
	}
	return ts - 8 + 24
}

func TestPEChecksumMatchesStub(t *testing.T) {
	b, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatalf("%v (install systemd-boot-efi)", err)
	}
	off := optionalHeaderOffset(t, b) + 64
	want := binary.LittleEndian.Uint32(b[off:])
	if want == 0 {
		t.Fatal("the stub carries no checksum to compare with")
	}
	if got := peChecksum(b, off); got != want {
		t.Errorf("peChecksum(stub) = %#x, the linker wrote %#x", got, want)
	}
}

// TestPlanUKIAlignment: the VMAs follow the stub's SectionAlignment, read
// from its header: patch it to 64 KiB and the plan follows.
func TestPlanUKIAlignment(t *testing.T) {
	stub, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		t.Fatal(err)
	}
	var end uint64
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(s.VirtualSize))
	}
	f.Close()
	for _, align := range []uint32{0, 0x1000, 0x10000} {
		b := bytes.Clone(stub)
		if align != 0 {
			binary.LittleEndian.PutUint32(b[optionalHeaderOffset(t, b)+32:], align) // SectionAlignment
		} else {
			align = f.OptionalHeader.(*pe.OptionalHeader64).SectionAlignment
		}
		secs := []UKISection{{Name: ".osrel", Size: 10}, {Name: ".cmdline", Size: 1}, {Name: ".initrd", Size: 70001}, {Name: ".linux", Size: 300000}}
		if err := planUKI(b, "stub", secs); err != nil {
			t.Fatal(err)
		}
		prev := end
		for _, s := range secs {
			if want := alignUp(prev, uint64(align)); s.VMA != want {
				t.Errorf("align %#x: %s at %#x, want %#x", align, s.Name, s.VMA, want)
			}
			prev = s.VMA + uint64(s.Size)
		}
	}
}

func TestPlanUKIRefuses(t *testing.T) {
	stub, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	signed := bytes.Clone(stub)
	// Data directory 4 (certificate table) of a PE32+ optional header.
	binary.LittleEndian.PutUint32(signed[optionalHeaderOffset(t, signed)+112+4*8:], 0x1000)
	if err := planUKI(signed, "signed", []UKISection{{Name: ".linux", Size: 1}}); err == nil || !strings.Contains(err.Error(), "is signed") {
		t.Errorf("signed stub: %v", err)
	}
	if err := planUKI(stub, "stub", []UKISection{{Name: ".sdmagic", Size: 1}}); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Errorf("existing section: %v", err)
	}
	if err := planUKI([]byte("MZ not a PE"), "junk", nil); err == nil || !strings.Contains(err.Error(), "not a PE file") {
		t.Errorf("junk stub: %v", err)
	}
}

// TestUKIReproducible: objcopy stamps the time; UKI puts the stub's back.
func TestUKIReproducible(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	randomFile(t, filepath.Join(dir, "k"), 123457)
	var prev []byte
	for i := range 2 {
		out := filepath.Join(dir, "uki"+string(rune('0'+i)))
		secs, err := UKI(context.Background(), out, UKIOptions{Kernel: filepath.Join(dir, "k"), Cmdline: "quiet"})
		if err != nil {
			t.Fatal(err)
		}
		if len(secs) != 3 || secs[0].Name != ".osrel" || secs[1].Name != ".cmdline" || secs[2].Name != ".linux" {
			t.Errorf("sections %+v: want .osrel .cmdline .linux (no initrd given)", secs)
		}
		b, _ := os.ReadFile(out)
		if prev != nil && !bytes.Equal(prev, b) {
			t.Error("two UKIs from the same inputs differ")
		}
		prev = b
		if i == 0 {
			time.Sleep(1050 * time.Millisecond) // the second objcopy runs in another second
		}
	}
}

func TestUKIErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := UKI(ctx, filepath.Join(dir, "x"), UKIOptions{Kernel: filepath.Join(dir, "none")}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), ".linux") {
		t.Errorf("missing kernel: %v", err)
	}
	writeFile(t, filepath.Join(dir, "k"), []byte("k"))
	if _, err := UKI(ctx, filepath.Join(dir, "x"), UKIOptions{Kernel: filepath.Join(dir, "k"), Stub: filepath.Join(dir, "nostub")}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "systemd-boot-efi") {
		t.Errorf("missing stub: %v", err)
	}
}

func TestESP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	big := filepath.Join(dir, "big")
	randomFile(t, big, 3<<20)
	randomFile(t, filepath.Join(dir, "small"), 1000)
	// A 2 MiB ESP (FAT12) cannot hold a 3 MiB file.
	err := ESP(ctx, filepath.Join(dir, "esp1.img"), ESPOptions{Size: 2 << 20, Files: map[string]string{"a/b/BIG": big}})
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	// Nested directories, two files, byte-for-byte reproducible.
	var prev []byte
	for i := range 2 {
		out := filepath.Join(dir, "esp"+string(rune('a'+i))+".img")
		err := ESP(ctx, out, ESPOptions{Size: 8 << 20, VolumeID: 0x1234abcd, Label: "KEEL",
			Files: map[string]string{"EFI/BOOT/BOOTX64.EFI": big, "/loader/entries/x.conf": filepath.Join(dir, "small")}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		if prev != nil && !bytes.Equal(prev, b) {
			t.Error("two ESPs from the same inputs differ")
		}
		prev = b
		if i == 0 {
			out := command(t, "mdir", "-/", "-b", "-i", out, "::/")
			for _, want := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/loader/entries/x.conf"} {
				if !strings.Contains(out, want) {
					t.Errorf("mdir -/ does not list %s:\n%s", want, out)
				}
			}
			time.Sleep(1050 * time.Millisecond) // and the second mtools run in another second
		}
	}
	if err := ESP(ctx, filepath.Join(dir, "espa.img"), ESPOptions{Size: 8 << 20}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing output: %v", err)
	}
	if err := ESP(ctx, filepath.Join(dir, "espc.img"), ESPOptions{Size: 8 << 20, Files: map[string]string{`EFI\BOOT\X`: big}}); err == nil || !strings.Contains(err.Error(), "forward slashes") {
		t.Errorf("backslash path: %v", err)
	}
}

func TestRootfs(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	tree := filepath.Join(dir, "tree")
	randomFile(t, filepath.Join(tree, "big"), 200<<10)
	out := filepath.Join(dir, "r.erofs")
	if _, err := Rootfs(ctx, out, RootfsOptions{Dir: tree, Size: 100 << 10}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "0.1 MiB (102400 bytes) allowed") {
		t.Errorf("erofs over its limit: %v", err)
	}
	n, err := Rootfs(ctx, out, RootfsOptions{Dir: tree, UUID: "6b65656c-0000-4000-8000-00000000000a"})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(out); st.Size() != n || n < 200<<10 {
		t.Errorf("Rootfs returned %d, the file has %d", n, st.Size())
	}
	command(t, "fsck.erofs", "--extract", out)
	if got, _ := fsTypeOf(t, out); got != FSErofs {
		t.Errorf("FSType = %q", got)
	}
	ext := filepath.Join(dir, "r.ext4")
	if _, err := Rootfs(ctx, ext, RootfsOptions{Type: FSExt4, Dir: tree, Size: 4 << 20, Label: "root"}); err != nil {
		t.Fatal(err)
	}
	command(t, "e2fsck", "-fn", ext)
	if got, _ := fsTypeOf(t, ext); got != FSExt4 {
		t.Errorf("FSType = %q", got)
	}
	// Too small for the tree: mkfs.ext4 -d fails, and the error says why.
	if _, err := Rootfs(ctx, ext, RootfsOptions{Type: FSExt4, Dir: tree, Size: 64 << 10}); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("ext4 too small: %v", err)
	}
	for _, o := range []RootfsOptions{{Type: "btrfs", Dir: tree}, {Type: FSErofs}, {Type: FSExt4, Size: 1000}, {Dir: filepath.Join(dir, "none")}} {
		if _, err := Rootfs(ctx, out, o); err == nil {
			t.Errorf("Rootfs(%+v) succeeded", o)
		}
	}
	sq := filepath.Join(dir, "sq")
	writeFile(t, sq, append([]byte("hsqs"), make([]byte, 4000)...))
	zero := filepath.Join(dir, "zero")
	writeFile(t, zero, make([]byte, 4096))
	if a, _ := fsTypeOf(t, sq); a != FSSquashfs {
		t.Errorf("squashfs magic: %q", a)
	}
	if a, _ := fsTypeOf(t, zero); a != "" {
		t.Errorf("zeros: %q", a)
	}
}

func TestMissingTool(t *testing.T) {
	_, err := lookTool("mkfs.nonexistent")
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("lookTool: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err = run(context.Background(), "mdir", "-V")
	if err == nil || !strings.Contains(err.Error(), "install the Debian package mtools") {
		t.Errorf("run without mtools in PATH: %v", err)
	}
}
