package bootimage

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KeelInitPackage is the main package keel-init is built from; a fork
// keeps the folder, so CheckKeelInit compares the suffix.
const KeelInitPackage = "github.com/keelboot/keel/cmd/keel-init"

// keelInitSuffix is what CheckKeelInit requires of the main package path.
const keelInitSuffix = "/cmd/keel-init"

// machine is the ELF machine of a Debian (and Go) architecture.
func machine(arch string) (elf.Machine, bool) {
	switch arch {
	case "amd64":
		return elf.EM_X86_64, true
	case "arm64":
		return elf.EM_AARCH64, true
	}
	return 0, false
}

// CheckKeelInit checks that r holds keel-init as it must be to run as PID
// 1 on a board of architecture arch (amd64 or arm64): a 64-bit
// little-endian ELF executable for that machine, static (no PT_INTERP: an
// initramfs has no dynamic loader), a Go program built from cmd/keel-init. The error says what is wrong and how to build the right
// one.
func CheckKeelInit(r io.ReaderAt, arch string) error {
	want, ok := machine(arch)
	if !ok {
		return fmt.Errorf("architecture %q: want amd64 or arm64", arch)
	}
	fix := fmt.Sprintf("make build puts keel-init for %s in build/%s/keel-init (CGO_ENABLED=0 GOOS=linux GOARCH=%s go build ./cmd/keel-init)", arch, arch, arch)
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF executable (%w): want keel-init for Linux %s; %s", err, arch, fix)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return fmt.Errorf("a %s %s ELF file, want 64-bit little-endian for %s; %s", f.Class, f.Data, arch, fix)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %s, not an executable; %s", f.Type, fix)
	}
	if f.Machine != want {
		return fmt.Errorf("built for %s, the board is %s (%s): the kernel could not run it; %s", f.Machine, arch, want, fix)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(io.LimitReader(p.Open(), 256))
			return fmt.Errorf("dynamically linked (interpreter %s): keel's initramfs has no dynamic loader, so the kernel could not start it; build it static with CGO_ENABLED=0; %s",
				strings.TrimRight(string(interp), "\x00"), fix)
		}
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		return fmt.Errorf("not a Go program with build information (%w): want keel's cmd/keel-init; %s", err, fix)
	}
	if !strings.HasSuffix(bi.Path, keelInitSuffix) {
		return fmt.Errorf("this is %s, not keel-init (%s); %s", bi.Path, KeelInitPackage, fix)
	}
	return nil
}

// CheckKeelInitFile is CheckKeelInit on the file at path.
func CheckKeelInitFile(path, arch string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bootimage: keel-init: %w", err)
	}
	defer f.Close()
	if err := CheckKeelInit(f, arch); err != nil {
		return fmt.Errorf("bootimage: keel-init %s: %w", path, err)
	}
	return nil
}

// DefaultKeelInit finds keel-init for a board of architecture arch next
// to the running program (keel), as make build lays them out:
// build/keel-init for the host's architecture, build/<arch>/keel-init for
// each board architecture. The first that exists is returned (Plan checks
// it); the error names --keel-init and make build.
func DefaultKeelInit(arch string) (string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", fmt.Errorf("bootimage: no keel-init given, and the running program cannot be found to look next to it (%w): give --keel-init PATH (keel_init in an image spec), or run make build", err)
	}
	return defaultKeelInit(exe, runtime.GOARCH, arch)
}

// defaultKeelInit is DefaultKeelInit for the program exe running on
// hostArch.
func defaultKeelInit(exe, hostArch, arch string) (string, error) {
	dir := filepath.Dir(exe)
	var tried []string
	candidates := []string{filepath.Join(dir, arch, "keel-init")}
	if arch == hostArch {
		candidates = append([]string{filepath.Join(dir, "keel-init")}, candidates...)
	}
	for _, p := range candidates {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("bootimage: keel-init: %w", err)
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("bootimage: no keel-init given, and no keel-init for %s next to %s (tried %s): give --keel-init PATH (keel_init in an image spec), or run make build, which puts keel-init beside keel for this machine (%s) and in build/<arch>/ for each board architecture",
		arch, exe, strings.Join(tried, ", "), hostArch)
}
