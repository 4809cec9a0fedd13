package initrd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Kernel is a kernel scripts/fetch-kernel.sh fetched (make kernel), found
// by the OUTDIR it was given (build/kernel/amd64).
type Kernel struct {
	// Dir is the OUTDIR.
	Dir string
	// Vmlinuz is the kernel image.
	Vmlinuz string
	// ModulesDir is its lib/modules/<version> folder (Spec.ModulesDir).
	ModulesDir string
	// Version is the kernel release, e.g. 6.1.0-56-amd64.
	Version string
	// Arch is the Debian architecture, from the version's suffix: amd64
	// or arm64.
	Arch string
	// Package is the Debian package and version it came from, e.g.
	// linux-image-6.1.0-56-amd64=6.1.192-2.
	Package string
}

// OpenKernel checks that dir holds a kernel fetch-kernel.sh fetched and
// describes it. The error says how to fetch one.
func OpenKernel(dir string) (*Kernel, error) {
	fix := fmt.Sprintf("run scripts/fetch-kernel.sh ARCH %s (make kernel for build/kernel/amd64)", dir)
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("initramfs: no fetched kernel in %s: %w; %s", dir, err, fix)
		}
		return strings.TrimSpace(string(b)), nil
	}
	version, err := read("version")
	if err != nil {
		return nil, err
	}
	pkg, err := read("package")
	if err != nil {
		return nil, err
	}
	k := &Kernel{Dir: dir, Vmlinuz: filepath.Join(dir, "vmlinuz"), ModulesDir: filepath.Join(dir, "modules"), Version: version, Package: pkg}
	for _, p := range []string{k.Vmlinuz, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("initramfs: kernel in %s is incomplete: %w; %s", dir, err, fix)
		}
	}
	if i := strings.LastIndexByte(version, '-'); i >= 0 {
		k.Arch = version[i+1:]
	}
	if k.Arch != "amd64" && k.Arch != "arm64" {
		return nil, fmt.Errorf("initramfs: kernel version %q in %s does not end in -amd64 or -arm64", version, dir)
	}
	return k, nil
}
