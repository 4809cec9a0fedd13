package image

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/builder/bootimage/bootimagetest"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
)

// archiveInputs turns the fixture's spec into one that builds keel's
// archives: a fake kernel folder for the board (bootimagetest.Kernel),
// keel-init built for its architecture, the signing key's public half as
// trusted_keys; no keel_initrd, no slot initrd. The fixture's random
// kernels stay the kernels (the UKI and the slot containers take any
// bytes): the slots name theirs with modules.
func archiveInputs(t *testing.T, fx *fixture) (kernelDir string) {
	t.Helper()
	kernelDir = bootimagetest.Kernel(t, fx.spec.Board)
	useArchiveInputs(fx, kernelDir, bootimagetest.KeelInit(t, fx.spec.Board.Arch))
	return kernelDir
}

// useArchiveInputs is archiveInputs with a kernel folder and keel-init.
func useArchiveInputs(fx *fixture, kernelDir, keelInit string) {
	fx.spec.KeelInitrd = ""
	fx.spec.KeelModules = filepath.Join(kernelDir, "modules")
	fx.spec.KeelInit = keelInit
	fx.spec.TrustedKeys = []string{filepath.Join(fx.dir, "keys/release.pub")}
	for name, sl := range fx.spec.Slots {
		sl.Initrd, sl.Modules = "", filepath.Join(kernelDir, "modules")
		fx.spec.Slots[name] = sl
	}
}

// slotEntry returns an entry of a slot container in the image.
func slotEntry(t *testing.T, disk io.ReaderAt, tab *gpt.Table, slot, entry string) []byte {
	t.Helper()
	p := find(t, tab, layout.SlotPartition(slot))
	r := p.Section(disk)
	h, err := slotimg.ReadHeader(r, p.Size())
	if err != nil {
		t.Fatal(err)
	}
	sr, err := h.Section(r, entry)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(sr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildBootArchives: without keel_initrd and slot initrds, Build builds
// them (package builder/bootimage) from the kernel modules, keel_init and
// trusted_keys: the UKI's .initrd is the stage-1 archive bootimage builds
// from the same inputs, byte for byte, and both slots hold the one stage-2
// archive of their kernel. The same inputs give the same image.
func TestBuildBootArchives(t *testing.T) {
	fx := newFixture(t)
	kernelDir := archiveInputs(t, fx)
	fx.spec.WorkDir = filepath.Join(fx.dir, "work")
	want := map[layout.Stage][]byte{}
	for _, st := range []layout.Stage{layout.Stage1, layout.Stage2} {
		var b bytes.Buffer
		err := bootimage.Build(&b, bootimage.Spec{Board: fx.spec.Board, Stage: st, KeelInit: fx.spec.KeelInit,
			ModulesDir: filepath.Join(kernelDir, "modules"), TrustedKeys: fx.spec.TrustedKeys})
		if err != nil {
			t.Fatal(err)
		}
		want[st] = b.Bytes()
	}
	disk, tab := fx.build(t)
	checkUKI(t, filepath.Join(fx.spec.WorkDir, "BOOTX64.EFI"), map[string][]byte{
		".osrel": []byte(DefaultOSRelease), ".cmdline": []byte("console=ttyS0 keel.store=efivars"),
		".initrd": want[layout.Stage1], ".linux": fx.keelKernel,
	})
	for _, name := range fx.spec.Board.Slots {
		if got := slotEntry(t, disk, tab, name, slotimg.EntryInitrd); !bytes.Equal(got, want[layout.Stage2]) {
			t.Errorf("slot %s: the initrd (%d bytes) is not bootimage's stage 2 archive (%d bytes)", name, len(got), len(want[layout.Stage2]))
		}
	}
	if _, err := os.Stat(filepath.Join(fx.spec.WorkDir, "stage2-b.cpio.zst")); err == nil {
		t.Error("slots with the same kernel got an initrd each")
	}
	if fx.spec.Slots["a"].Initrd != "" || fx.spec.KeelInitrd != "" {
		t.Error("Build changed the caller's spec")
	}

	first, err := os.ReadFile(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	fx.build(t)
	second, err := os.ReadFile(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same spec and inputs gave another image")
	}
}

// tarDir writes the tree dir as a tar archive, as tar -C dir -c . does.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = "./" + filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tw.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, out, b.Bytes())
}

// TestBuildRootTar: a slot's root_tar gives the root file system its
// tree gives as root_dir, byte for byte (erofs: all files root's, times
// 0), and the unpacked tree is not left in the work folder.
func TestBuildRootTar(t *testing.T) {
	fx := newFixture(t)
	fx.spec.WorkDir = filepath.Join(fx.dir, "work")
	disk, tab := fx.build(t)
	fromDir := readPart(t, disk, find(t, tab, "root-a"))

	a := fx.spec.Slots["a"]
	tarDir(t, a.RootDir, filepath.Join(fx.dir, "root-a.tar"))
	a.RootDir, a.RootTar = "", filepath.Join(fx.dir, "root-a.tar")
	fx.spec.Slots["a"] = a
	disk, tab = fx.build(t)
	if !bytes.Equal(readPart(t, disk, find(t, tab, "root-a")), fromDir) {
		t.Error("root_tar gave another root-a than root_dir of the same tree")
	}
	if _, err := os.Lstat(filepath.Join(fx.spec.WorkDir, "root-a.tree")); err == nil {
		t.Error("the unpacked tree was left in the work folder")
	}
}

// TestSpecBootArchiveErrors: Validate says what is wrong with the inputs
// of the archives Build builds, and with mixing them with prebuilt ones,
// each with the fields to fix.
func TestSpecBootArchiveErrors(t *testing.T) {
	board := newFixture(t).spec.Board
	kernelDir, keelInit := bootimagetest.Kernel(t, board), bootimagetest.KeelInit(t, board.Arch)
	for _, tc := range []struct {
		name   string
		change func(fx *fixture, kernelDir string)
		want   string
	}{
		{"keel_initrd with keel_kernel_dir", func(fx *fixture, k string) {
			fx.spec.KeelInitrd, fx.spec.KeelKernel, fx.spec.KeelModules, fx.spec.KeelKernelDir = filepath.Join(fx.dir, "keel/initrd.cpio.zst"), "", "", k
		}, "keel_initrd and keel_kernel_dir: keel_kernel_dir is for building keel's initramfs, but keel_initrd is a prebuilt one, used as it is: leave keel_initrd out to build it, or give keel_kernel"},
		{"keel_initrd with keel_modules", func(fx *fixture, k string) {
			fx.spec.KeelInitrd = filepath.Join(fx.dir, "keel/initrd.cpio.zst")
		}, "keel_initrd and keel_modules: keel_modules is for building keel's initramfs"},
		{"keel_kernel_dir with keel_kernel", func(fx *fixture, k string) { fx.spec.KeelKernelDir = k },
			"keel_kernel_dir with keel_kernel or keel_modules: the folder gives both the kernel and its modules"},
		{"no kernel", func(fx *fixture, k string) { fx.spec.KeelKernel, fx.spec.KeelModules = "", "" },
			"keel_kernel_dir or keel_kernel: no kernel given: want the kernel keel-init runs on; make kernel"},
		{"kernel_dir missing", func(fx *fixture, k string) {
			a := fx.spec.Slots["a"]
			a.Kernel, a.Modules, a.KernelDir = "", "", filepath.Join(fx.dir, "nope")
			fx.spec.Slots["a"] = a
		}, "slots.a.kernel_dir: initramfs: no fetched kernel in " + "/"},
		{"slot initrd with modules", func(fx *fixture, k string) {
			a := fx.spec.Slots["a"]
			a.Initrd = fx.spec.KeelKernel
			fx.spec.Slots["a"] = a
		}, "slots.a.initrd and slots.a.modules: slots.a.modules is for building the slot's stage-2 initrd"},
		{"slot without modules", func(fx *fixture, k string) {
			a := fx.spec.Slots["a"]
			a.Modules = ""
			fx.spec.Slots["a"] = a
		}, "slots.a.modules: the slot's stage-2 initrd is built here (no slots.a.initrd given) and board qemu-x86_64-uefi's stage 2 loads kernel modules"},
		{"no trusted keys", func(fx *fixture, k string) { fx.spec.TrustedKeys = nil },
			"trusted_keys: none given, but keel's boot archives are built here"},
		{"signing key not trusted", func(fx *fixture, k string) {
			fx.spec.TrustedKeys = []string{bootimagetest.PublicKey(t, fx.dir, "other")}
		}, "signing_keys[0]: key "},
		{"trusted key file holds a private key", func(fx *fixture, k string) {
			fx.spec.TrustedKeys = []string{filepath.Join(fx.dir, "keys/release.key")}
		}, "trusted_keys: bootimage: trusted keys: "},
		{"keel_init not keel-init", func(fx *fixture, k string) { fx.spec.KeelInit = fx.spec.KeelKernel },
			"keel_init: bootimage: keel-init "},
		{"all prebuilt with keel_init and trusted_keys", func(fx *fixture, k string) {
			fx.spec.KeelInitrd, fx.spec.KeelModules = filepath.Join(fx.dir, "keel/initrd.cpio.zst"), ""
			for name, sl := range fx.spec.Slots {
				sl.Initrd, sl.Modules = fx.spec.KeelInitrd, ""
				fx.spec.Slots[name] = sl
			}
		}, "keel_init: every boot archive is given prebuilt"},
		{"all prebuilt with trusted_keys", func(fx *fixture, k string) {
			fx.spec.KeelInitrd, fx.spec.KeelModules, fx.spec.KeelInit = filepath.Join(fx.dir, "keel/initrd.cpio.zst"), "", ""
			for name, sl := range fx.spec.Slots {
				sl.Initrd, sl.Modules = fx.spec.KeelInitrd, ""
				fx.spec.Slots[name] = sl
			}
		}, "trusted_keys: every boot archive is given prebuilt (keel_initrd and each slot's initrd), which hold their own trusted keys"},
		{"two roots", func(fx *fixture, k string) {
			a := fx.spec.Slots["a"]
			a.RootTar = fx.spec.KeelKernel
			fx.spec.Slots["a"] = a
		}, "slots.a.root_dir and slots.a.root_tar: give one of them"},
		{"no root", func(fx *fixture, k string) {
			a := fx.spec.Slots["a"]
			a.RootDir = ""
			fx.spec.Slots["a"] = a
		}, "slots.a.root_dir, slots.a.root_tar or slots.a.root_image: no root file system given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			useArchiveInputs(fx, kernelDir, keelInit)
			k := kernelDir
			if err := fx.spec.Validate(); err != nil {
				t.Fatalf("the unchanged spec: %v", err)
			}
			tc.change(fx, k)
			err := fx.spec.Validate()
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v\nwant %q", err, tc.want)
			}
		})
	}
}
