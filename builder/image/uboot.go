package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
)

// Files on the boot partition of a U-Boot board, relative to its root.
const (
	// BootScriptPath is the script U-Boot's distro_bootcmd looks for in /
	// (and /boot/) of the boot partition and runs with source.
	BootScriptPath = "boot.scr"
	// BootKernelPath is keel's kernel, an arm64 Image.
	BootKernelPath = "Image"
	// BootInitrdPath is keel's initramfs.
	BootInitrdPath = "initrd"
)

// BootScriptOptions are the inputs of keel's U-Boot boot script.
type BootScriptOptions struct {
	// Board names the board in the script's comment.
	Board string
	// Device is U-Boot's interface and device number ("virtio 0"), Part
	// the boot partition's number on it (1 for the first).
	Device string
	Part   int
	// KernelAddr and RamdiskAddr are where the kernel and the initramfs
	// are loaded.
	KernelAddr, RamdiskAddr uint64
	// Cmdline is keel's kernel command line. It must not hold a single
	// quote or a line break (the script quotes it with single quotes).
	Cmdline string
}

// BootScript returns the text of keel's U-Boot boot script (boot.cmd, the
// input of mkimage -T script): it sets bootargs to keel's command line,
// loads BootKernelPath and then BootInitrdPath from the boot partition
// (load sets filesize, the initramfs's size for booti) and boots them with
// booti and the device tree U-Boot runs with (fdtcontroladdr: QEMU's, on
// virt). U-Boot's hush shell keeps single-quoted text as it is, so the
// command line is never expanded. U-Boot reads the partition number of
// "dev:part" in hexadecimal (disk/part.c, blk_get_device_part_str).
func BootScript(o BootScriptOptions) ([]byte, error) {
	if strings.ContainsAny(o.Cmdline, "'\n\r\x00") {
		return nil, fmt.Errorf("image: boot script: the command line %q holds a single quote or a line break", o.Cmdline)
	}
	if len(strings.Fields(o.Device)) != 2 || o.Part < 1 {
		return nil, fmt.Errorf("image: boot script: device %q partition %d: want an interface, a device number and a partition from 1", o.Device, o.Part)
	}
	src := fmt.Sprintf("%s:%x", o.Device, o.Part)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# keel's boot script for board %s (keel image build): U-Boot's distro_bootcmd runs it.\n", o.Board)
	fmt.Fprintf(&b, "echo \"keel: loading keel from %s\"\n", src)
	fmt.Fprintf(&b, "setenv bootargs '%s'\n", strings.TrimSpace(o.Cmdline))
	fmt.Fprintf(&b, "load %s %#x %s\n", src, o.KernelAddr, BootKernelPath)
	fmt.Fprintf(&b, "load %s %#x %s\n", src, o.RamdiskAddr, BootInitrdPath)
	fmt.Fprintf(&b, "booti %#x %#x:${filesize} ${fdtcontroladdr}\n", o.KernelAddr, o.RamdiskAddr)
	fmt.Fprintf(&b, "echo \"keel: booti failed\"\n")
	return b.Bytes(), nil
}

// MkScript makes the U-Boot script image out from the script text in cmd
// with mkimage (u-boot-tools): a legacy image of type script, not
// compressed. mkimage stamps SOURCE_DATE_EPOCH (run sets it) into the
// header, so the same script gives the same bytes.
func MkScript(ctx context.Context, cmd, out, name string) error {
	_, err := run(ctx, "mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", name, "-d", cmd, out)
	return err
}

// arm64Image describes an arm64 kernel Image from its header
// (Documentation/arm64/booting.rst: code0, code1, text_offset,
// image_size, flags, res2..4, magic "ARM\x64" at 56).
type arm64Image struct {
	TextOffset, ImageSize uint64
}

// errNotArm64Image says a kernel is no arm64 Image.
var errNotArm64Image = errors.New("not an arm64 kernel Image (no \"ARM\\x64\" magic at offset 56): booti boots an uncompressed Image, as Debian's arm64 vmlinuz is")

// readArm64Image reads the Image header of the kernel file at path.
func readArm64Image(path string) (arm64Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return arm64Image{}, err
	}
	defer f.Close()
	var h [64]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return arm64Image{}, fmt.Errorf("%s: %w", path, errNotArm64Image)
	}
	if string(h[56:60]) != "ARM\x64" {
		return arm64Image{}, fmt.Errorf("%s: %w", path, errNotArm64Image)
	}
	return arm64Image{TextOffset: binary.LittleEndian.Uint64(h[8:]), ImageSize: binary.LittleEndian.Uint64(h[16:])}, nil
}

// boot makes the boot partition of a U-Boot board: a FAT file system with
// keel's kernel (BootKernelPath), keel's initramfs (BootInitrdPath) and the
// script image BootScriptPath that loads them at the board's addresses and
// boots them.
func (bl *builder) boot() error {
	t := time.Now()
	b := bl.s.Board
	p, err := bl.part(layout.Boot)
	if err != nil {
		return err
	}
	part := 0
	for i, lp := range b.Layout {
		if lp.Name == layout.Boot {
			part = i + 1
		}
	}
	kst, err := os.Stat(bl.s.KeelKernel)
	if err != nil {
		return fmt.Errorf("image: keel_kernel: %w", err)
	}
	img, err := readArm64Image(bl.s.KeelKernel)
	if err != nil {
		return fmt.Errorf("image: keel_kernel: %w", err)
	}
	// The kernel's whole footprint (image_size counts its BSS; 0 in
	// kernels before 3.17) must end below the initramfs.
	need := img.TextOffset + max(img.ImageSize, uint64(kst.Size()))
	if room := b.UBoot.RamdiskAddr - b.UBoot.KernelAddr; need > room {
		return fmt.Errorf("image: keel_kernel %s needs %s from the kernel address %#x, but board %s loads the initramfs %s after it (UBoot.RamdiskAddr %#x): %w",
			bl.s.KeelKernel, mib(int64(need)), b.UBoot.KernelAddr, b.Name, mib(int64(room)), b.UBoot.RamdiskAddr, ErrTooLarge)
	}
	script, err := BootScript(BootScriptOptions{
		Board: b.Name, Device: b.UBoot.Device, Part: part,
		KernelAddr: b.UBoot.KernelAddr, RamdiskAddr: b.UBoot.RamdiskAddr, Cmdline: bl.s.KeelCmdline,
	})
	if err != nil {
		return err
	}
	cmd := filepath.Join(bl.work, "boot.cmd")
	if err := os.WriteFile(cmd, script, 0o644); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	scr := filepath.Join(bl.work, "boot.scr")
	os.Remove(scr)
	if err := MkScript(bl.ctx, cmd, scr, "keel"); err != nil {
		return err
	}
	ist, err := os.Stat(bl.s.KeelInitrd)
	if err != nil {
		return fmt.Errorf("image: keel_initrd: %w", err)
	}
	// A FAT file system needs room for its tables next to the files: a
	// 16th of the partition.
	if files, total := kst.Size()+ist.Size(), kst.Size()+ist.Size()+p.Size()/16; total > p.Size() {
		return bl.tooLarge(p, "keel's kernel and initramfs ("+bl.s.KeelKernel+" + "+bl.s.KeelInitrd+") with room for the FAT", total, files*16/15+1)
	}
	fat := filepath.Join(bl.work, "boot.img")
	os.Remove(fat)
	vol := bl.ids.bytes("boot/volume-id")
	err = ESP(bl.ctx, fat, ESPOptions{
		Size: p.Size(),
		Files: map[string]string{
			BootKernelPath: bl.s.KeelKernel,
			BootInitrdPath: bl.s.KeelInitrd,
			BootScriptPath: scr,
		},
		VolumeID: uint32(vol[0])<<24 | uint32(vol[1])<<16 | uint32(vol[2])<<8 | uint32(vol[3]),
		Label:    "KEEL-BOOT",
	})
	if err != nil {
		return err
	}
	if err := bl.copyFile(p, fat, "the boot partition's FAT image"); err != nil {
		return err
	}
	bl.logf("boot: U-Boot script %s loads %s (%s) and %s (%s) from %s:%x, FAT %s in %.1fs",
		BootScriptPath, BootKernelPath, sizeOf(kst.Size()), BootInitrdPath, sizeOf(ist.Size()), b.UBoot.Device, part, sizeOf(p.Size()), time.Since(t).Seconds())
	return nil
}

// firmwareFiles makes the partition the board's firmware boots keel from:
// the ESP with keel's UKI (UEFI), or the boot partition with boot.scr
// (U-Boot).
func (bl *builder) firmwareFiles() error {
	switch bl.s.Board.Firmware {
	case boards.FirmwareUEFI:
		return bl.esp()
	case boards.FirmwareUBoot:
		return bl.boot()
	}
	return fmt.Errorf("image: board %s: firmware %q: %w", bl.s.Board.Name, bl.s.Board.Firmware, errors.ErrUnsupported)
}
