package bootimage

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/initrd"
	"github.com/keelboot/keel/format/layout"
)

// Spec says which of keel's archives to build, and from what.
type Spec struct {
	// Board is the target: its architecture, its module lists
	// (InitModules for stage 1, StageModules for stage 2) and the data
	// keel-init reads (layout.BoardPath).
	Board boards.Board
	// Stage is Stage1 (keel's initramfs) or Stage2 (the slots' initrd).
	Stage layout.Stage
	// KeelInit is the keel-init binary: a static Linux executable for the
	// board's architecture (make build). "" takes DefaultKeelInit.
	KeelInit string
	// KernelDir is a kernel as scripts/fetch-kernel.sh lays it out
	// (build/kernel/<arch>: version, vmlinuz, modules; initrd.OpenKernel);
	// its architecture must be the board's. Or ModulesDir names the
	// kernel's lib/modules/<version> folder directly. One of the two,
	// unless the stage loads no modules. For stage 2 it is the slots'
	// kernel.
	KernelDir, ModulesDir string
	// TrustedKeys are public key files (keel keygen's NAME.pub, or
	// trusted-keys files): the keys a slot's manifest must be signed
	// with. At least one key.
	TrustedKeys []string
}

// Build writes the archive spec describes to w (zstd-compressed newc).
func Build(w io.Writer, spec Spec) error {
	im, err := Plan(spec)
	if err != nil {
		return err
	}
	if err := im.Write(w); err != nil {
		return fmt.Errorf("bootimage: %w", err)
	}
	return nil
}

// Plan checks every input and lays the archive out without writing it.
func Plan(spec Spec) (*initrd.Image, error) {
	b := spec.Board
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("bootimage: board %s: %w", b.Name, err)
	}
	var modules []string
	switch spec.Stage {
	case layout.Stage1:
		modules = b.InitModules
	case layout.Stage2:
		modules = b.StageModules
	default:
		return nil, fmt.Errorf("bootimage: stage %d: want 1 (keel's initramfs) or 2 (the slots' initrd)", int(spec.Stage))
	}
	modDir, err := modulesDir(spec, modules)
	if err != nil {
		return nil, err
	}
	keelInit := spec.KeelInit
	if keelInit == "" {
		if keelInit, err = DefaultKeelInit(b.Arch); err != nil {
			return nil, err
		}
	}
	boardJSON, err := BoardJSON(b)
	if err != nil {
		return nil, err
	}
	trusted, err := TrustedKeys(spec.TrustedKeys)
	if err != nil {
		return nil, err
	}
	im, err := initrd.Plan(initrd.Spec{
		Init:       keelInit,
		ModulesDir: modDir,
		Modules:    modules,
		Files: []initrd.File{
			{Path: layout.BoardPath, Data: boardJSON},
			{Path: layout.TrustedKeysPath, Data: trusted},
			{Path: layout.StagePath, Data: spec.Stage.FileData()},
		},
		Compression: initrd.Zstd,
	})
	if err != nil {
		return nil, fmt.Errorf("bootimage: %w", err)
	}
	// Check the bytes that went in, not the files (which could change
	// in between).
	if err := CheckKeelInit(bytes.NewReader(im.Archive.Get("/init").Data), b.Arch); err != nil {
		return nil, fmt.Errorf("bootimage: keel-init %s: %w", keelInit, err)
	}
	if err := checkModules(im, b.Arch); err != nil {
		return nil, err
	}
	return im, nil
}

// modulesDir picks the modules folder from spec's KernelDir or
// ModulesDir.
func modulesDir(spec Spec, modules []string) (string, error) {
	b := spec.Board
	switch {
	case spec.KernelDir != "" && spec.ModulesDir != "":
		return "", fmt.Errorf("bootimage: both a kernel folder (%s) and a modules folder (%s) given: give one", spec.KernelDir, spec.ModulesDir)
	case spec.KernelDir != "":
		k, err := initrd.OpenKernel(spec.KernelDir)
		if err != nil {
			return "", fmt.Errorf("bootimage: %w", err)
		}
		if k.Arch != b.Arch {
			return "", fmt.Errorf("bootimage: the kernel in %s is %s (%s), board %s is %s: give the board's kernel (make kernel fetches it into build/kernel/%s)", spec.KernelDir, k.Version, k.Arch, b.Name, b.Arch, b.Arch)
		}
		return k.ModulesDir, nil
	case spec.ModulesDir != "":
		return spec.ModulesDir, nil
	case len(modules) > 0:
		return "", fmt.Errorf("bootimage: board %s's stage %s loads kernel modules (%s) but no kernel was given: name the kernel folder (build/kernel/%s, make kernel) or its lib/modules/<version> folder",
			b.Name, spec.Stage, strings.Join(modules, ", "), b.Arch)
	}
	return "", nil
}

// checkModules refuses modules built for another architecture than the
// board's: keel-init could not load them.
func checkModules(im *initrd.Image, arch string) error {
	want, ok := machine(arch)
	if !ok {
		return fmt.Errorf("bootimage: architecture %q: want amd64 or arm64", arch)
	}
	for _, m := range im.Modules {
		if !strings.HasSuffix(m.Path, ".ko") {
			continue // compressed: the kernel checks it when loading
		}
		e := im.Archive.Get(initrd.ModulesRoot + "/" + im.KernelVersion + "/" + m.Path)
		if e == nil {
			return fmt.Errorf("bootimage: module %s is not in the archive (%s)", m.Name, m.Path)
		}
		f, err := elf.NewFile(bytes.NewReader(e.Data))
		if err != nil {
			return fmt.Errorf("bootimage: module %s (%s) is not an ELF object: %w", m.Name, m.Path, err)
		}
		if f.Machine != want {
			return fmt.Errorf("bootimage: module %s (%s) is for %s, the board is %s (%s): give the modules of the board's kernel (make kernel fetches it into build/kernel/%s)",
				m.Name, m.Path, f.Machine, arch, want, arch)
		}
	}
	return nil
}

// BoardJSON is the board as keel-init reads it from layout.BoardPath.
func BoardJSON(b boards.Board) ([]byte, error) {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bootimage: board %s: %w", b.Name, err)
	}
	return data, nil
}

// Kernel names a kernel's modules: Dir as scripts/fetch-kernel.sh lays
// it out (Spec.KernelDir) or its lib/modules/<version> folder
// (Spec.ModulesDir).
type Kernel struct{ Dir, ModulesDir string }

// Boot is what a disk image needs from this package: keel's initramfs
// and the slots' initrds, for one board, keel-init and key set.
type Boot struct {
	Board       boards.Board
	KeelInit    string
	TrustedKeys []string
	// Kernel is keel's kernel (stage 1).
	Kernel Kernel
	// Slots maps each slot (and "recovery", for the seed) to the kernel
	// it runs (stage 2). Slots with the same kernel share one initrd.
	Slots map[string]Kernel
}

// BootFiles are the archives WriteBoot wrote.
type BootFiles struct {
	// Stage1 is keel's initramfs (Spec.KeelInitrd of builder/image).
	Stage1 string
	// Stage2 is each slot's initrd (Slot.Initrd), by slot name.
	Stage2 map[string]string
}

// WriteBoot builds the archives an image needs into dir, which must
// exist: keel-initrd.cpio.zst (stage 1), and stage2-N.cpio.zst for each
// distinct slot kernel (stage 2), numbered in the order of the sorted slot
// names. It is what builder/image calls when a spec gives keel_init,
// trusted_keys and kernel folders instead of ready archives.
func WriteBoot(dir string, in Boot) (*BootFiles, error) {
	spec := Spec{Board: in.Board, KeelInit: in.KeelInit, TrustedKeys: in.TrustedKeys}
	out := &BootFiles{Stage1: filepath.Join(dir, "keel-initrd.cpio.zst"), Stage2: map[string]string{}}
	s1 := spec
	s1.Stage, s1.KernelDir, s1.ModulesDir = layout.Stage1, in.Kernel.Dir, in.Kernel.ModulesDir
	if _, err := WriteFile(out.Stage1, s1); err != nil {
		return nil, err
	}
	built := map[Kernel]string{}
	for _, name := range slices.Sorted(maps.Keys(in.Slots)) {
		k := in.Slots[name]
		if p, ok := built[k]; ok {
			out.Stage2[name] = p
			continue
		}
		p := filepath.Join(dir, fmt.Sprintf("stage2-%d.cpio.zst", len(built)+1))
		s2 := spec
		s2.Stage, s2.KernelDir, s2.ModulesDir = layout.Stage2, k.Dir, k.ModulesDir
		if _, err := WriteFile(p, s2); err != nil {
			return nil, fmt.Errorf("slot %s: %w", name, err)
		}
		built[k], out.Stage2[name] = p, p
	}
	return out, nil
}

// WriteFile builds the archive spec describes into the file out and
// returns its plan (the modules it holds); on an error out is removed.
func WriteFile(out string, spec Spec) (*initrd.Image, error) {
	im, err := Plan(spec)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(out)
	if err != nil {
		return nil, fmt.Errorf("bootimage: %w", err)
	}
	err = im.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bootimage: writing %s: %w", out, err), os.Remove(out))
	}
	return im, nil
}
