package image

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultStub is the UEFI stub of Debian's systemd-boot-efi package.
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// DefaultOSRelease is the .osrel section of keel's UKI when UKIOptions
// gives none (os-release(5) format).
const DefaultOSRelease = "NAME=keel\nID=keel\nPRETTY_NAME=\"keel A/B boot loader\"\n"

// UKIOptions are the inputs of a unified kernel image.
type UKIOptions struct {
	// Stub is the UEFI stub the sections are added to; "" means DefaultStub.
	Stub string
	// Kernel is the path of the kernel (a bzImage with the EFI handover
	// or EFI stub entry point): required.
	Kernel string
	// Initrd is the path of the initramfs; "" adds no .initrd section.
	Initrd string
	// Cmdline is the kernel command line; "" adds no .cmdline section.
	// Leading and trailing white space is dropped.
	Cmdline string
	// OSRelease is the content of the .osrel section; "" means
	// DefaultOSRelease.
	OSRelease string
}

// UKISection is one section the builder added to the stub.
type UKISection struct {
	// Name is the PE section name: .osrel, .cmdline, .initrd or .linux.
	Name string
	// VMA is the section's virtual address as objdump -h prints it: the
	// image base plus the section's RVA.
	VMA uint64
	// Size is the size of the content (the section's VirtualSize).
	Size int64
}

// UKI makes a unified kernel image at out: the stub with .osrel, .cmdline,
// .initrd and .linux sections added by objcopy, in that order. This is the
// order systemd's ukify uses (src/ukify/ukify.py, make_uki: .osrel,
// .cmdline, .dtb, .uname, .splash, .pcrpkey, .initrd, then .linux last "to
// leave breathing room for decompression"), and each section's VMA is the
// end of the previous section rounded up to the stub's SectionAlignment, as
// ukify's pe_add_sections computes VirtualAddress
// (round_up(last.VirtualAddress + last.Misc_VirtualSize, SectionAlignment)).
// The alignment, image base and last section are read from the stub's PE
// headers, never assumed.
//
// objcopy stamps the current time into the COFF header; UKI puts the stub's
// time stamp back and recomputes the PE checksum, so the same inputs give
// the same bytes. It reads the result back and checks every added section's
// address and content. It returns the sections it added.
func UKI(ctx context.Context, out string, o UKIOptions) ([]UKISection, error) {
	if o.Stub == "" {
		o.Stub = DefaultStub
	}
	if o.OSRelease == "" {
		o.OSRelease = DefaultOSRelease
	}
	if o.Kernel == "" {
		return nil, errors.New("image: UKI: no kernel given")
	}
	stub, err := os.ReadFile(o.Stub)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image: UEFI stub %s: %w (install the Debian package systemd-boot-efi, or give another stub)", o.Stub, err)
		}
		return nil, fmt.Errorf("image: UEFI stub: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".uki-*")
	if err != nil {
		return nil, fmt.Errorf("image: UKI: %w", err)
	}
	defer os.RemoveAll(tmp)

	type input struct {
		name, path string
		code       bool
	}
	var inputs []input
	text := func(name, content string) error {
		p := filepath.Join(tmp, strings.TrimPrefix(name, "."))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("image: UKI: %w", err)
		}
		inputs = append(inputs, input{name: name, path: p})
		return nil
	}
	if err := text(".osrel", o.OSRelease); err != nil {
		return nil, err
	}
	if c := strings.TrimSpace(o.Cmdline); c != "" {
		if err := text(".cmdline", c); err != nil {
			return nil, err
		}
	}
	if o.Initrd != "" {
		inputs = append(inputs, input{name: ".initrd", path: o.Initrd})
	}
	inputs = append(inputs, input{name: ".linux", path: o.Kernel, code: true})

	want := make([]UKISection, len(inputs))
	contents := make([][]byte, len(inputs))
	for i, in := range inputs {
		b, err := os.ReadFile(in.path)
		if err != nil {
			return nil, fmt.Errorf("image: UKI %s section: %w", in.name, err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("image: UKI %s section: %s is empty", in.name, in.path)
		}
		contents[i] = b
		want[i] = UKISection{Name: in.name, Size: int64(len(b))}
	}
	if err := planUKI(stub, o.Stub, want); err != nil {
		return nil, err
	}

	args := []string{}
	for i, in := range inputs {
		flags := "data,readonly"
		if in.code {
			flags = "code,readonly" // ukify: .linux is IMAGE_SCN_CNT_CODE, the rest initialized data
		}
		args = append(args,
			"--add-section", in.name+"="+in.path,
			"--set-section-flags", in.name+"="+flags,
			"--change-section-vma", fmt.Sprintf("%s=%#x", in.name, want[i].VMA))
	}
	args = append(args, o.Stub, out)
	if _, err := run(ctx, "objcopy", args...); err != nil {
		return nil, err
	}
	if err := fixTimestamp(out, stub); err != nil {
		return nil, err
	}
	got, data, err := readUKI(out)
	if err != nil {
		return nil, fmt.Errorf("image: reading back the UKI objcopy made: %w", err)
	}
	for i, w := range want {
		if i >= len(got) || got[i] != w {
			return nil, fmt.Errorf("image: objcopy placed the UKI sections at %v, want %v", got, want)
		}
		if !bytes.Equal(data[i], contents[i]) {
			return nil, fmt.Errorf("image: UKI section %s does not hold %s", w.Name, inputs[i].path)
		}
	}
	return want, nil
}

// planUKI fills in the VMA of each section: after the stub's last section,
// each aligned to the stub's SectionAlignment.
func planUKI(stub []byte, stubPath string, secs []UKISection) error {
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		return fmt.Errorf("image: UEFI stub %s is not a PE file: %w", stubPath, err)
	}
	defer f.Close()
	var align uint32
	var base uint64
	var security pe.DataDirectory
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		align, base = h.SectionAlignment, h.ImageBase
		if len(h.DataDirectory) > pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
			security = h.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
		}
	case *pe.OptionalHeader32:
		align, base = h.SectionAlignment, uint64(h.ImageBase)
		if len(h.DataDirectory) > pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
			security = h.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
		}
	default:
		return fmt.Errorf("image: UEFI stub %s has no PE optional header", stubPath)
	}
	if align == 0 || align&(align-1) != 0 {
		return fmt.Errorf("image: UEFI stub %s: SectionAlignment %#x is not a power of two", stubPath, align)
	}
	if security.VirtualAddress != 0 {
		// Adding sections breaks the signature; ukify refuses too.
		return fmt.Errorf("image: UEFI stub %s is signed: adding sections would break its signature; use the unsigned stub", stubPath)
	}
	if len(f.Sections) == 0 {
		return fmt.Errorf("image: UEFI stub %s has no sections", stubPath)
	}
	var end uint64
	for _, s := range f.Sections {
		for _, n := range secs {
			if s.Name == n.Name {
				return fmt.Errorf("image: UEFI stub %s already has a %s section: is it a UKI already?", stubPath, s.Name)
			}
		}
		size := s.VirtualSize
		if size == 0 {
			size = s.Size
		}
		end = max(end, uint64(s.VirtualAddress)+uint64(size))
	}
	for i := range secs {
		if len(secs[i].Name) > 8 {
			return fmt.Errorf("image: UKI section name %q is longer than 8 characters", secs[i].Name)
		}
		rva := alignUp(end, uint64(align))
		secs[i].VMA = base + rva
		end = rva + uint64(secs[i].Size)
	}
	if end > 1<<32-1 {
		return fmt.Errorf("image: the UKI would need %d bytes of address space; PE images are limited to 4 GiB", end)
	}
	return nil
}

// ReadUKI returns the sections a UKI holds after the stub's own: those named
// .osrel, .cmdline, .initrd, .linux, .dtb, .uname, .splash, .pcrpkey,
// .pcrsig or .sbom, in file order, with their contents.
func ReadUKI(path string) ([]UKISection, [][]byte, error) {
	secs, data, err := readUKI(path)
	if err != nil {
		return nil, nil, fmt.Errorf("image: %s: %w", path, err)
	}
	return secs, data, nil
}

func readUKI(path string) ([]UKISection, [][]byte, error) {
	f, err := pe.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var base uint64
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		base = h.ImageBase
	case *pe.OptionalHeader32:
		base = uint64(h.ImageBase)
	}
	var secs []UKISection
	var data [][]byte
	for _, s := range f.Sections {
		switch s.Name {
		case ".osrel", ".cmdline", ".initrd", ".linux", ".dtb", ".uname", ".splash", ".pcrpkey", ".pcrsig", ".sbom":
		default:
			continue
		}
		if s.VirtualSize > s.Size {
			return nil, nil, fmt.Errorf("section %s: VirtualSize %d is larger than its %d bytes in the file", s.Name, s.VirtualSize, s.Size)
		}
		b := make([]byte, s.VirtualSize)
		if _, err := io.ReadFull(s.Open(), b); err != nil {
			return nil, nil, fmt.Errorf("section %s: %w", s.Name, err)
		}
		secs = append(secs, UKISection{Name: s.Name, VMA: base + uint64(s.VirtualAddress), Size: int64(s.VirtualSize)})
		data = append(data, b)
	}
	return secs, data, nil
}

// fixTimestamp sets the COFF header's TimeDateStamp of the PE file at path
// to the stub's (objcopy stamps the current time and has no option against
// it in binutils 2.40) and recomputes the optional header's CheckSum.
func fixTimestamp(path string, stub []byte) error {
	img, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("image: UKI: %w", err)
	}
	ts, ok := peTimestampOffset(stub)
	if !ok {
		return fmt.Errorf("image: UEFI stub: no PE header")
	}
	uts, ok := peTimestampOffset(img)
	if !ok {
		return fmt.Errorf("image: %s: objcopy wrote no PE header", path)
	}
	copy(img[uts:uts+4], stub[ts:ts+4])
	sum := uts - 8 + 24 + 64 // e_lfanew + PE signature + COFF header + offset of CheckSum
	if sum+4 > len(img) {
		return fmt.Errorf("image: %s: PE optional header truncated", path)
	}
	binary.LittleEndian.PutUint32(img[sum:], peChecksum(img, sum))
	if err := os.WriteFile(path, img, 0o644); err != nil {
		return fmt.Errorf("image: UKI: %w", err)
	}
	return nil
}

// peTimestampOffset returns the file offset of the COFF TimeDateStamp.
func peTimestampOffset(b []byte) (int, bool) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return 0, false
	}
	lfanew := int(binary.LittleEndian.Uint32(b[0x3c:]))
	if lfanew < 0x40 || lfanew+24+68 > len(b) || string(b[lfanew:lfanew+4]) != "PE\x00\x00" {
		return 0, false
	}
	return lfanew + 8, true
}

// peChecksum computes the PE image checksum (the algorithm of imagehlp's
// CheckSumMappedFile): the 16-bit one's-complement-style sum of the file
// with the CheckSum field itself taken as zero, plus the file length.
func peChecksum(b []byte, checksumOff int) uint32 {
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		var w uint64
		if i >= checksumOff && i < checksumOff+4 {
			w = 0
		} else if i+1 < len(b) {
			w = uint64(b[i]) | uint64(b[i+1])<<8
		} else {
			w = uint64(b[i])
		}
		sum += w
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }
