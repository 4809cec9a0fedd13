package image

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/builder/initrd"
	"github.com/keelboot/keel/format/layout"
)

// bootFiles turns the Spec's kernel folders into kernel files and builds
// the boot archives it does not give prebuilt (package builder/bootimage)
// into the work folder: keel's initramfs (stage 1) without keel_initrd,
// and a stage-2 initrd for every slot (and the recovery seed) without
// initrd, one per distinct slot kernel. Afterwards bl.s names only files,
// as a Spec with prebuilt archives does, and the rest of Build reads those.
// bl.s must be Build's own copy: its Slots map is replaced.
func (bl *builder) bootFiles() error {
	s := bl.s
	if s.KeelKernelDir != "" {
		k, err := initrd.OpenKernel(s.KeelKernelDir)
		if err != nil {
			return fmt.Errorf("image: keel_kernel_dir: %w", err)
		}
		s.KeelKernel = k.Vmlinuz
	}
	if s.KeelInitrd == "" {
		out := filepath.Join(bl.work, "keel-initrd.cpio.zst")
		err := bl.archive(out, "keel's initramfs", bootimage.Kernel{Dir: s.KeelKernelDir, ModulesDir: s.KeelModules}, layout.Stage1)
		if err != nil {
			return fmt.Errorf("image: building keel's initramfs (keel_kernel_dir or keel_modules, keel_init, trusted_keys): %w", err)
		}
		s.KeelInitrd = out
	}
	built := map[bootimage.Kernel]string{}
	slots := maps.Clone(s.Slots)
	for _, name := range s.Board.Slots {
		sl, ok := slots[name]
		if !ok || sl.Empty {
			continue
		}
		if err := bl.slotFiles(name, &sl, built); err != nil {
			return err
		}
		slots[name] = sl
	}
	s.Slots = slots
	if s.Recovery != nil {
		r := *s.Recovery
		if err := bl.slotFiles("recovery", &r, built); err != nil {
			return err
		}
		s.Recovery = &r
	}
	return nil
}

// slotFiles is bootFiles for one slot: its kernel from kernel_dir, its
// stage-2 initrd unless given (built maps the kernels whose initrd is
// built to it).
func (bl *builder) slotFiles(name string, sl *Slot, built map[bootimage.Kernel]string) error {
	field := "slots." + name + "."
	if name == "recovery" {
		field = "recovery."
	}
	if sl.KernelDir != "" {
		k, err := initrd.OpenKernel(sl.KernelDir)
		if err != nil {
			return fmt.Errorf("image: %skernel_dir: %w", field, err)
		}
		sl.Kernel = k.Vmlinuz
	}
	if sl.Initrd != "" {
		return nil
	}
	k := bootimage.Kernel{Dir: sl.KernelDir, ModulesDir: sl.Modules}
	if p, ok := built[k]; ok {
		sl.Initrd = p
		return nil
	}
	out := filepath.Join(bl.work, "stage2-"+name+".cpio.zst")
	if err := bl.archive(out, "stage-2 initrd for "+slotNames([]string{name}), k, layout.Stage2); err != nil {
		return fmt.Errorf("image: building the stage-2 initrd of %s (%skernel_dir or %smodules, keel_init, trusted_keys): %w", slotNames([]string{name}), field, field, err)
	}
	built[k], sl.Initrd = out, out
	return nil
}

// archive builds one of keel's boot archives into out.
func (bl *builder) archive(out, what string, k bootimage.Kernel, stage layout.Stage) error {
	t := time.Now()
	im, err := bootimage.WriteFile(out, bootimage.Spec{
		Board: bl.s.Board, Stage: stage, KeelInit: bl.s.KeelInit,
		KernelDir: k.Dir, ModulesDir: k.ModulesDir, TrustedKeys: bl.s.TrustedKeys,
	})
	if err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	kernel := ""
	if im.KernelVersion != "" {
		kernel = " of " + im.KernelVersion
	}
	bl.logf("%s: stage %s, %d modules%s, trusted keys %s: %s in %.1fs", what, stage, len(im.Modules), kernel,
		strings.Join(bl.s.TrustedKeys, ", "), sizeOf(st.Size()), time.Since(t).Seconds())
	return nil
}
