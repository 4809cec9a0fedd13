package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
)

// fakeArm64Image writes a file with an arm64 Image header
// (Documentation/arm64/booting.rst) whose image_size is imageSize, followed
// by random bytes, size bytes in all.
func fakeArm64Image(t testing.TB, path string, size int, imageSize uint64) []byte {
	t.Helper()
	b := randomFile(t, path, size)
	binary.LittleEndian.PutUint64(b[8:], 0) // text_offset
	binary.LittleEndian.PutUint64(b[16:], imageSize)
	copy(b[56:], "ARM\x64")
	writeFile(t, path, b)
	return b
}

// newUBootFixture is newFixture for the board qemu-arm64-uboot: keel's
// kernel is an arm64 Image, and Secure Boot does not apply.
func newUBootFixture(t testing.TB) *fixture {
	t.Helper()
	fx := newFixture(t)
	b, err := boards.Get("qemu-arm64-uboot")
	if err != nil {
		t.Fatal(err)
	}
	fx.spec.Board = b
	fx.spec.NoSecureBoot = false
	fx.spec.KeelCmdline = "console=ttyAMA0 panic=1 loglevel=4"
	fakeArm64Image(t, fx.spec.KeelKernel, 300<<10+123, 1<<20)
	return fx
}

// TestBuildUBoot builds a disk for qemu-arm64-uboot and checks the boot
// partition with mtools, fsck.vfat and mkimage: the kernel, the initramfs
// and boot.scr, a script image whose script loads both from the boot
// partition at the board's addresses and boots them with booti.
func TestBuildUBoot(t *testing.T) {
	fx := newUBootFixture(t)
	disk, tab := fx.build(t)
	b := fx.spec.Board
	if _, err := tab.Find(layout.ESP); err == nil {
		t.Error("a U-Boot disk has an ESP")
	}
	if tab.Partitions[0].Name != layout.Boot {
		t.Fatalf("partition 1 is %q, want %q (distro_bootcmd reads partition 1)", tab.Partitions[0].Name, layout.Boot)
	}
	img := extract(t, disk, find(t, tab, layout.Boot))
	command(t, "fsck.vfat", "-n", img)
	dir := t.TempDir()
	for name, src := range map[string]string{BootKernelPath: fx.spec.KeelKernel, BootInitrdPath: fx.spec.KeelInitrd, BootScriptPath: ""} {
		out := filepath.Join(dir, name)
		command(t, "mcopy", "-i", img, "::/"+name, out)
		if src == "" {
			continue
		}
		want, _ := os.ReadFile(src)
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Errorf("%s on the boot partition differs from %s", name, src)
		}
	}
	scr := filepath.Join(dir, BootScriptPath)
	if out := command(t, "mkimage", "-l", scr); !strings.Contains(out, "AArch64 Linux Script (uncompressed)") {
		t.Errorf("mkimage -l %s:\n%s", BootScriptPath, out)
	}
	raw, _ := os.ReadFile(scr)
	got, err := scriptText(raw)
	if err != nil {
		t.Fatal(err)
	}
	want, err := BootScript(BootScriptOptions{Board: b.Name, Device: "virtio 0", Part: 1, KernelAddr: 0x40400000, RamdiskAddr: 0x44000000, Cmdline: fx.spec.KeelCmdline})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("boot.scr holds\n%s\nwant\n%s", got, want)
	}
	for _, line := range []string{
		"setenv bootargs 'console=ttyAMA0 panic=1 loglevel=4'\n",
		"load virtio 0:1 0x40400000 Image\n",
		"load virtio 0:1 0x44000000 initrd\n",
		"booti 0x40400000 0x44000000:${filesize} ${fdtcontroladdr}\n",
	} {
		if !strings.Contains(string(got), line) {
			t.Errorf("boot.scr has no line %q:\n%s", line, got)
		}
	}
	// The bootstate partition is left zero: keel-init starts the record.
	if st := readPart(t, disk, find(t, tab, layout.Bootstate)); !allZero(st) {
		t.Error("bootstate is not zero")
	}

	// The same inputs give the same image, byte for byte.
	first, err := os.ReadFile(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	fx.spec.Out = filepath.Join(filepath.Dir(fx.spec.Out), "again.img")
	fx.build(t)
	again, err := os.ReadFile(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Error("two builds of the same U-Boot spec differ")
	}
}

// scriptText returns the script of a legacy U-Boot script image: a 64-byte
// header, then the lengths of the parts (big-endian 32-bit words, ended by
// 0), then the parts (U-Boot's image_multi_getimg, cmd/source.c).
func scriptText(b []byte) ([]byte, error) {
	if len(b) < 72 || binary.BigEndian.Uint32(b) != 0x27051956 {
		return nil, errors.New("not a legacy U-Boot image")
	}
	p := b[64:]
	var sizes []uint32
	for {
		if len(p) < 4 {
			return nil, errors.New("no end of the part list")
		}
		n := binary.BigEndian.Uint32(p)
		p = p[4:]
		if n == 0 {
			break
		}
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 || int(sizes[0]) > len(p) {
		return nil, errors.New("no script part")
	}
	return p[:sizes[0]], nil
}

func TestBootScript(t *testing.T) {
	o := BootScriptOptions{Board: "x", Device: "mmc 1", Part: 12, KernelAddr: 0x80200000, RamdiskAddr: 0x88000000, Cmdline: " console=ttyS2 a=$b "}
	s, err := BootScript(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"setenv bootargs 'console=ttyS2 a=$b'\n", // single quotes: hush does not expand $b
		"load mmc 1:c 0x80200000 Image\n",        // U-Boot reads the partition in hex
		"load mmc 1:c 0x88000000 initrd\n",
		"booti 0x80200000 0x88000000:${filesize} ${fdtcontroladdr}\n",
	} {
		if !strings.Contains(string(s), line) {
			t.Errorf("no line %q in\n%s", line, s)
		}
	}
	for _, bad := range []BootScriptOptions{
		{Device: "mmc 1", Part: 1, Cmdline: "a='b'"},
		{Device: "mmc 1", Part: 1, Cmdline: "a\nreset"},
		{Device: "mmc", Part: 1},
		{Device: "mmc 0", Part: 0},
	} {
		if _, err := BootScript(bad); err == nil {
			t.Errorf("BootScript(%+v) = nil error", bad)
		}
	}
}

// TestSpecUBoot: what a U-Boot board's spec must not have, each problem
// named.
func TestSpecUBoot(t *testing.T) {
	fx := newUBootFixture(t)
	if err := fx.spec.Validate(); err != nil {
		t.Fatalf("the good spec: %v", err)
	}
	for _, tc := range []struct {
		name   string
		break_ func(s *Spec)
		want   string
	}{
		{"secure boot keys", func(s *Spec) { s.SecureBootKeys = "keys" }, "UEFI Secure Boot does not apply"},
		{"no secure boot", func(s *Spec) { s.NoSecureBoot = true }, "UEFI Secure Boot does not apply"},
		{"stub", func(s *Spec) { s.Stub = DefaultStub }, "not from a UKI"},
		{"quote", func(s *Spec) { s.KeelCmdline = "a='b'" }, "single quotes"},
		{"not an Image", func(s *Spec) { s.KeelKernel = s.KeelInitrd }, "not an arm64 kernel Image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fx.spec
			tc.break_(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error with %q", err, tc.want)
			}
		})
	}

	// A kernel whose footprint reaches the initramfs's address.
	fakeArm64Image(t, fx.spec.KeelKernel, 4096, 0x3c00000+1)
	err := Build(t.Context(), fx.spec)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "UBoot.RamdiskAddr 0x44000000") {
		t.Errorf("Build with a kernel overlapping the initramfs: %v", err)
	}
}
