package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/builder/initrd"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/secureboot"
	"github.com/keelboot/keel/update/channel"
)

// Spec is everything Build needs to write a disk image. In JSON (see
// ReadSpec) it is an object with the fields' json names; Board and Out come
// from the command line instead.
type Spec struct {
	// Board is the target: its Layout gives the GPT, DiskMB the disk size
	// (both as PartitionMB and DiskMB size them: SizedBoard), Slots the A/B
	// slots, RootFSType the default root file system type.
	Board boards.Board `json:"-"`
	// Out is the disk image to write. It is replaced only when the whole
	// image is written (a temporary file next to it is renamed).
	Out string `json:"-"`

	// KeelKernel, KeelInitrd and KeelCmdline make keel's unified kernel
	// image, \EFI\BOOT\BOOTX64.EFI on the ESP: the kernel keel-init runs
	// on, keel's initramfs, and that kernel's command line. On a U-Boot
	// board they go on the boot partition instead, the kernel (an arm64
	// Image) and the initramfs as files, the command line in boot.scr.
	//
	// KeelKernelDir names keel's kernel as make kernel lays it out
	// (build/kernel/<arch>: vmlinuz, modules, version) instead of
	// KeelKernel: its vmlinuz is the kernel, its modules go into keel's
	// initramfs. Or KeelKernel with KeelModules, the kernel's
	// lib/modules/<version> folder.
	//
	// Without KeelInitrd, Build builds keel's initramfs itself (package
	// builder/bootimage, stage 1: KeelInit, the board's InitModules from
	// those modules, the board, TrustedKeys). A KeelInitrd is used as it
	// is, and then neither KeelKernelDir nor KeelModules may be given.
	KeelKernel    string `json:"keel_kernel,omitempty"`
	KeelKernelDir string `json:"keel_kernel_dir,omitempty"`
	KeelModules   string `json:"keel_modules,omitempty"`
	KeelInitrd    string `json:"keel_initrd,omitempty"`
	KeelCmdline   string `json:"keel_cmdline"`
	// KeelInit is the keel-init binary the archives Build builds hold
	// (keel's initramfs, the slots' initrds): "" means
	// bootimage.DefaultKeelInit, keel-init beside the running keel as make
	// build lays it out. Only when Build builds an archive.
	KeelInit string `json:"keel_init,omitempty"`
	// TrustedKeys are the public key files (keel keygen's NAME.pub) that
	// the archives Build builds hold: keel-init boots only slots whose
	// manifest one of them signed, so the public half of every
	// SigningKeys key must be among them. Required when Build builds an
	// archive; refused when every archive is given prebuilt (they hold
	// their own keys).
	TrustedKeys []string `json:"trusted_keys,omitempty"`
	// Stub is the UEFI stub of the UKI; "" means DefaultStub.
	Stub string `json:"stub,omitempty"`
	// OSRelease is the UKI's .osrel section; "" means DefaultOSRelease.
	OSRelease string `json:"os_release,omitempty"`
	// SecureBootKeys is a directory of UEFI Secure Boot keys (keel
	// secureboot keygen; package secureboot): the UKI is
	// Authenticode-signed with its db key (db.key, db.crt) before it goes
	// on the ESP, for firmware with that db certificate enrolled. ""
	// leaves the UKI unsigned. The signature holds its signing time, so
	// two signed builds differ in those bytes of BOOTX64.EFI.
	SecureBootKeys string `json:"secure_boot_keys,omitempty"`
	// With SecureBootKeys, every slot kernel (and the recovery seed's) is
	// signed with the db key too, its signatures replaced (a kernel
	// already signed first by that key is kept as it is): under Secure
	// Boot the kernel's lockdown lets keel-init kexec only a kernel signed
	// by a key of its keyrings, which hold db's certificates and not the
	// distribution's (package secureboot, "Slot kernels under Secure
	// Boot"). KeepKernelSignatures leaves the slot kernels as given (signed
	// by a key the running kernel has built in, or for testing refusals).
	KeepKernelSignatures bool `json:"keep_kernel_signatures,omitempty"`
	// NoSecureBoot builds an image for a UEFI board without
	// SecureBootKeys: keel's UKI unsigned, for firmware with Secure Boot
	// off (development only: anyone who can write the disk can replace
	// keel, and keel-init says so loudly at every boot). Without
	// SecureBootKeys, Build fails unless NoSecureBoot is set.
	NoSecureBoot bool `json:"no_secure_boot,omitempty"`

	// Seed makes every identifier in the image (disk and partition GUIDs,
	// file system UUIDs, the FAT volume ID) a function of it, so that the
	// same Spec and inputs give the same image. "" picks a random seed.
	Seed string `json:"seed,omitempty"`

	// PartitionMB sizes partitions of the board's layout for this image,
	// in MiB by name ({"root-a": 160}): an OS needs the room it needs,
	// whatever the board's defaults. Only partitions with a size in the
	// layout can be named (the last one, data, takes the rest of the disk:
	// size it with DiskMB); an unknown name is an error that lists the
	// valid ones. Give every slot's partitions the same size: an update
	// installs a slot into the other slot's partitions (keel bundle build
	// sizes a bundle's root for root-<slot> from the same spec), and the
	// recovery seed's root goes into any root-<slot>.
	PartitionMB map[string]int `json:"partition_mb,omitempty"`
	// DiskMB is the disk image's size in MiB; 0 means the board's, grown
	// (or shrunk) by what PartitionMB changed, so that the last partition
	// keeps the board's size.
	DiskMB int `json:"disk_mb,omitempty"`

	// Slots holds one entry for every slot of the board, by slot name.
	Slots map[string]Slot `json:"slots"`

	// Recovery, if set, is what the recovery seed holds: Build writes it
	// into the partition recovery, signed like the slots (signing_keys). Its
	// root file system must fit every root-<slot> partition (recovery
	// reinstalls it there); the board must have dm-verity roots. Empty is
	// not allowed; nil leaves recovery zero.
	Recovery *Slot `json:"recovery,omitempty"`

	// SigningKeys are private key files (keel keygen's NAME.key, package
	// manifest's format) that sign every non-empty slot's manifest: Build
	// writes the signatures into the slot container's entry manifest.sig.
	// Give two keys during a key rotation (the old and the new one).
	SigningKeys []string `json:"signing_keys,omitempty"`
	// Unsigned builds an image without signing keys: only for development,
	// as keel-init refuses a slot without a manifest signature by a key it
	// trusts. Without SigningKeys, Build fails unless Unsigned is set; an
	// image whose slots are all empty (and without Recovery) needs no key.
	Unsigned bool `json:"unsigned,omitempty"`

	// Channel is the update channel every root built from root_dir or
	// root_tar carries (keel update): nil, none.
	Channel *Channel `json:"channel,omitempty"`

	// WorkDir holds the intermediate files (UKI, ESP, file systems); ""
	// means a temporary directory next to Out, removed at the end.
	WorkDir string `json:"-"`
	// Log, if set, gets one line per step with its size and time.
	Log io.Writer `json:"-"`
}

// Slot says what one A/B slot holds: the partition slot-<name> gets a slot
// container (package slotimg) with entries kernel, initrd and manifest, and
// root-<name> the root file system.
//
// A Slot describes a good slot only. Tests that need a broken one (a
// kernel that does not match its digest, a corrupted root, a manifest
// signed by other keys) build a good image and break it with package
// builder/image/imagetest.
type Slot struct {
	// Kernel is the slot's kernel (bzImage) that keel-init kexecs.
	// KernelDir names it as make kernel lays a kernel out instead
	// (vmlinuz, modules, version): its vmlinuz is the kernel, its modules
	// go into the slot's initrd. Or Kernel with Modules, the kernel's
	// lib/modules/<version> folder.
	Kernel    string `json:"kernel,omitempty"`
	KernelDir string `json:"kernel_dir,omitempty"`
	Modules   string `json:"modules,omitempty"`
	// Initrd is keel's stage-2 initrd for that kernel, used as it is.
	// Without it Build builds it (package builder/bootimage, stage 2: the
	// Spec's KeelInit and TrustedKeys, the board's StageModules from the
	// slot kernel's modules); slots with the same kernel share one. With
	// it, neither KernelDir nor Modules may be given.
	Initrd string `json:"initrd,omitempty"`
	// RootDir is a directory to pack as the root file system (erofs or
	// ext4, after RootFSType); RootTar a tar archive of the tree
	// (uncompressed, gzip or zstd; see UnpackTar); RootImage a prebuilt
	// file system image. Give exactly one.
	RootDir   string `json:"root_dir,omitempty"`
	RootTar   string `json:"root_tar,omitempty"`
	RootImage string `json:"root_image,omitempty"`
	// RootFSType is the root file system type; "" means the board's.
	RootFSType string `json:"root_fstype,omitempty"`
	// Version, SecurityVersion and Cmdline go into the manifest; Cmdline
	// is the slot kernel's command line.
	Version         string `json:"version,omitempty"`
	SecurityVersion uint64 `json:"security_version,omitempty"`
	Cmdline         string `json:"cmdline,omitempty"`

	// Empty leaves both partitions of the slot zero: no slot container, no
	// file system (a slot never installed, or wiped). The other fields are
	// then ignored.
	Empty bool `json:"empty,omitempty"`
}

// Channel is an update channel (keel channel): its URL (or a folder) and
// its initial TUF root.json, written to layout.ChannelURLPath and
// layout.ChannelRootPath in the slot's root file system, so that the
// device's trust in the channel is covered by dm-verity.
type Channel struct {
	URL  string `json:"url"`
	Root string `json:"root"`
}

// ReadSpec reads a Spec from a JSON file. Unknown fields are an error (a
// typo would otherwise drop an input silently). Relative paths in the file
// are taken relative to the directory of the file. Board and Out are not in
// the file: set them before Build.
func ReadSpec(path string) (Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("image: spec: %w", err)
	}
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("image: spec %s: %w", path, err)
	}
	if dec.More() {
		return Spec{}, fmt.Errorf("image: spec %s: more than one JSON value", path)
	}
	dir := filepath.Dir(path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&s.KeelKernel)
	abs(&s.KeelKernelDir)
	abs(&s.KeelModules)
	abs(&s.KeelInitrd)
	abs(&s.KeelInit)
	for i := range s.TrustedKeys {
		abs(&s.TrustedKeys[i])
	}
	abs(&s.Stub)
	abs(&s.SecureBootKeys)
	for i := range s.SigningKeys {
		abs(&s.SigningKeys[i])
	}
	absSlot := func(sl *Slot) {
		abs(&sl.Kernel)
		abs(&sl.KernelDir)
		abs(&sl.Modules)
		abs(&sl.Initrd)
		abs(&sl.RootDir)
		abs(&sl.RootTar)
		abs(&sl.RootImage)
	}
	for name, sl := range s.Slots {
		absSlot(&sl)
		s.Slots[name] = sl
	}
	if s.Recovery != nil {
		absSlot(s.Recovery)
	}
	if s.Channel != nil {
		abs(&s.Channel.Root)
	}
	return s, nil
}

// Validate checks the Spec against its board and that every input exists,
// and reports all problems at once, each naming the JSON field and the file.
func (s *Spec) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	b := &s.Board
	if b.Name == "" {
		add("no board given (keel image build --board NAME)")
	}
	if s.Out == "" {
		add("no output file given (keel image build --out DISK.img)")
	}
	if b.Name != "" {
		if b.Firmware != boards.FirmwareUEFI && b.Firmware != boards.FirmwareUBoot {
			add("board %s boots with %q firmware: the image builder makes UEFI and U-Boot disks", b.Name, b.Firmware)
		}
		// The board as the spec sizes it; every problem of the board
		// on a line of its own.
		sized, serrs := s.sizedBoard()
		errs = append(errs, serrs...)
		if len(serrs) > 0 {
			sized = *b // the sizes are reported; check the board itself
		}
		if err := sized.Validate(); err != nil {
			if j, ok := errors.Unwrap(err).(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					add("board %s: %w", b.Name, e)
				}
			} else {
				errs = append(errs, err)
			}
		}
	}

	// file checks one input file; what says what it is, fix how to get it.
	file := func(field, path, what, fix string) {
		if fix != "" {
			fix = "; " + fix
		}
		if path == "" {
			add("%s: no file given: want %s", field, what)
			return
		}
		st, err := os.Stat(path)
		switch {
		case err != nil:
			add("%s: %w%s", field, err, fix)
		case !st.Mode().IsRegular():
			add("%s: %s is not a regular file: want %s", field, path, what)
		case st.Size() == 0:
			add("%s: %s is empty: want %s", field, path, what)
		}
	}
	arch := b.Arch
	if arch == "" {
		arch = "amd64"
	}
	kernelFix := fmt.Sprintf("make kernel (scripts/fetch-kernel.sh %s build/kernel/%s) puts Debian's kernel in build/kernel/%s", arch, arch, arch)
	// builds counts the archives Build builds (keel's initramfs, slot
	// initrds), which need keel_init and trusted_keys.
	builds := 0
	// kernel checks a kernel and the boot archive that goes with it: p is
	// the fields' prefix ("keel_", "slots.a."), kernel, dir, mods and
	// archive the values of its kernel, kernel_dir, modules and initrd.
	kernel := func(p string, stage layout.Stage, kernel, dir, mods, archive string) {
		what, kernelWhat, modules := "keel's initramfs", "the kernel keel-init runs on", b.InitModules
		if stage == layout.Stage2 {
			what, kernelWhat, modules = "the slot's stage-2 initrd", "the slot's kernel", b.StageModules
		}
		switch {
		case dir != "" && (kernel != "" || mods != ""):
			add("%skernel_dir with %skernel or %smodules: the folder gives both the kernel and its modules: give %skernel_dir alone, or %skernel and %smodules", p, p, p, p, p, p)
		case dir != "":
			if k, err := initrd.OpenKernel(dir); err != nil {
				add("%skernel_dir: %w", p, err)
			} else if b.Arch != "" && k.Arch != b.Arch {
				add("%skernel_dir: the kernel in %s is %s (%s), board %s is %s: give the board's kernel; %s", p, dir, k.Version, k.Arch, b.Name, b.Arch, kernelFix)
			}
		case kernel == "":
			add("%skernel_dir or %skernel: no kernel given: want %s; %s: name that folder in %skernel_dir", p, p, kernelWhat, kernelFix, p)
		default:
			file(p+"kernel", kernel, kernelWhat, kernelFix)
		}
		if archive != "" {
			file(p+"initrd", archive, what+" (keel-init)", "or leave "+p+"initrd out: keel image build builds it")
			for _, f := range []struct{ name, v string }{{"kernel_dir", dir}, {"modules", mods}} {
				if f.v != "" {
					add("%sinitrd and %s%s: %s%s is for building %s, but %sinitrd is a prebuilt one, used as it is: leave %sinitrd out to build it, or give %skernel (the kernel alone) with the prebuilt %sinitrd",
						p, p, f.name, p, f.name, what, p, p, p, p)
				}
			}
			return
		}
		builds++
		if mods != "" {
			if st, err := os.Stat(mods); err != nil {
				add("%smodules: %w", p, err)
			} else if !st.IsDir() {
				add("%smodules: %s is not a directory: want the kernel's lib/modules/<version> folder", p, mods)
			}
		}
		if dir == "" && mods == "" && kernel != "" && len(modules) > 0 {
			add("%smodules: %s is built here (no %sinitrd given) and board %s's stage %s loads kernel modules (%s): name the kernel's lib/modules/<version> folder in %smodules, or give %skernel_dir (make kernel's folder) instead of %skernel",
				p, what, p, b.Name, stage, strings.Join(modules, ", "), p, p, p)
		}
	}
	kernel("keel_", layout.Stage1, s.KeelKernel, s.KeelKernelDir, s.KeelModules, s.KeelInitrd)
	keelKernel := s.KeelKernel
	if s.KeelKernelDir != "" && s.KeelKernel == "" {
		keelKernel = filepath.Join(s.KeelKernelDir, "vmlinuz")
	}
	if strings.ContainsAny(strings.TrimSpace(s.KeelCmdline), "\x00\n") {
		add("keel_cmdline: must be one line")
	}
	switch b.Firmware {
	case boards.FirmwareUEFI:
		stub := s.Stub
		if stub == "" {
			stub = DefaultStub
		}
		file("stub", stub, "a UEFI stub", "install the Debian package systemd-boot-efi")
	case boards.FirmwareUBoot:
		// boot.scr quotes the command line with single quotes; booti
		// boots an arm64 Image.
		if strings.Contains(s.KeelCmdline, "'") {
			add("keel_cmdline: board %s boots keel from a U-Boot script, which quotes the command line with single quotes: it must hold none", b.Name)
		}
		if keelKernel != "" {
			if _, err := os.Stat(keelKernel); err == nil {
				if _, err := readArm64Image(keelKernel); err != nil {
					add("keel_kernel: %w", err)
				}
			}
		}
		for field, v := range map[string]string{"stub": s.Stub, "os_release": s.OSRelease} {
			if v != "" {
				add("%s: board %s boots keel with U-Boot, not from a UKI: leave %s out", field, b.Name, field)
			}
		}
	}

	if s.SecureBootKeys != "" {
		if _, _, err := secureboot.LoadKey(s.SecureBootKeys, secureboot.DB); err != nil {
			add("secure_boot_keys: %w (keel secureboot keygen --dir DIR makes the keys)", err)
		}
	}
	switch {
	case b.Firmware == boards.FirmwareUBoot && (s.SecureBootKeys != "" || s.NoSecureBoot || s.KeepKernelSignatures):
		// Nothing on a U-Boot board checks UEFI signatures: signing keel
		// or the slot kernels for it would promise what no one enforces.
		add("secure_boot_keys, no_secure_boot, keep_kernel_signatures: board %s boots with U-Boot: UEFI Secure Boot does not apply; leave them out", b.Name)
	case s.SecureBootKeys != "" && s.NoSecureBoot:
		add("no_secure_boot and secure_boot_keys: give one of them")
	case s.SecureBootKeys == "" && !s.NoSecureBoot && b.Firmware == boards.FirmwareUEFI:
		add("secure_boot_keys: not given: production images boot under UEFI Secure Boot, keel's UKI signed with the db key; " +
			"make the keys with keel secureboot keygen --dir DIR and name DIR in secure_boot_keys " +
			"(or set \"no_secure_boot\": true for a development image, for firmware with Secure Boot off)")
	}

	// keys checks private key files; fields names them (signing_keys[0]).
	keys := func(field string, paths []string) {
		for i, p := range paths {
			if _, err := manifest.ReadPrivateKey(p); err != nil {
				add("%s[%d]: %w", field, i, err)
			}
		}
	}
	keys("signing_keys", s.SigningKeys)
	if s.Unsigned && len(s.SigningKeys) > 0 {
		add("unsigned and signing_keys: give one of them")
	}
	var needKey []string

	// slot checks one slot (f: its JSON field prefix, "slots.a.").
	slot := func(name, f string, sl Slot) {
		needKey = append(needKey, name)
		kernel(f, layout.Stage2, sl.Kernel, sl.KernelDir, sl.Modules, sl.Initrd)
		var roots []string
		for _, r := range []struct{ field, v string }{{"root_dir", sl.RootDir}, {"root_tar", sl.RootTar}, {"root_image", sl.RootImage}} {
			if r.v != "" {
				roots = append(roots, f+r.field)
			}
		}
		switch {
		case len(roots) > 1:
			add("%s: give one of them", strings.Join(roots, " and "))
		case sl.RootDir != "":
			if st, err := os.Stat(sl.RootDir); err != nil {
				add("%sroot_dir: %w", f, err)
			} else if !st.IsDir() {
				add("%sroot_dir: %s is not a directory", f, sl.RootDir)
			}
		case sl.RootTar != "":
			file(f+"root_tar", sl.RootTar, "a tar archive of the root file system (uncompressed, gzip or zstd)", "")
		case sl.RootImage != "":
			file(f+"root_image", sl.RootImage, "an erofs, ext4 or squashfs image", "")
			if s.Channel != nil {
				add("%sroot_image and channel: a prebuilt root cannot take the channel's files; give root_dir or root_tar", f)
			}
		default:
			add("%sroot_dir, %sroot_tar or %sroot_image: no root file system given", f, f, f)
		}
		fstype := sl.RootFSType
		if fstype == "" {
			fstype = b.RootFSType
		}
		switch fstype {
		case FSErofs, FSExt4:
		case FSSquashfs:
			if sl.RootImage == "" {
				add("%sroot_fstype: squashfs only as a prebuilt root_image", f)
			}
		default:
			add("%sroot_fstype %q: want erofs, ext4 or squashfs", f, fstype)
		}
		if sl.Version == "" {
			add("%sversion: empty", f)
		}
		if strings.ContainsAny(sl.Version+sl.Cmdline, "\x00\n") {
			add("%sversion and %scmdline: must be one line", f, f)
		}
	}

	boardSlots := map[string]bool{}
	for _, name := range b.Slots {
		boardSlots[name] = true
		sl, ok := s.Slots[name]
		if !ok {
			add("slots.%s: missing: board %s has slot %q; describe it, or give {\"empty\": true}", name, b.Name, name)
			continue
		}
		if sl.Empty {
			continue
		}
		slot(name, "slots."+name+".", sl)
	}
	if r := s.Recovery; r != nil {
		switch {
		case r.Empty:
			add("recovery.empty: a recovery seed cannot be empty: leave recovery out for a zero recovery partition")
		default:
			slot("recovery", "recovery.", *r)
		}
		if b.Name != "" && !b.RootVerity {
			add("recovery: board %s has no dm-verity roots: keel's recovery verifies the seed's root through its verity tree", b.Name)
		}
	}
	if len(s.SigningKeys) == 0 && !s.Unsigned && len(needKey) > 0 {
		add("signing_keys: no signing key given for %s: production images are always signed; "+
			"make a key with keel keygen --out NAME, list NAME.key in signing_keys and NAME.pub in trusted_keys "+
			"(or set \"unsigned\": true for a development image, whose slots keel-init refuses)", slotNames(needKey))
	}
	s.validateArchiveInputs(builds, add)
	if c := s.Channel; c != nil {
		if c.URL == "" || strings.ContainsAny(c.URL, "\n\r") {
			add("channel.url: %q: give the channel's http(s):// URL or folder, on one line", c.URL)
		}
		if b, err := os.ReadFile(c.Root); err != nil {
			add("channel.root: %w (keel channel init writes root.json)", err)
		} else if err := channel.CheckRoot(b); err != nil {
			add("channel.root: %s: %w", c.Root, err)
		}
	}
	var extra []string
	for name := range s.Slots {
		if !boardSlots[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		add("slots.%s: board %s has no slot %q (it has %s)", name, b.Name, name, strings.Join(b.Slots, ", "))
	}
	if len(errs) == 0 {
		return nil
	}
	return &SpecError{Errs: errs}
}

// validateArchiveInputs checks keel_init and trusted_keys: needed when
// Build builds boot archives (builds of them), refused when it builds none.
// The public half of every signing key must be trusted.
func (s *Spec) validateArchiveInputs(builds int, add func(string, ...any)) {
	b := &s.Board
	if builds == 0 {
		if s.KeelInit != "" {
			add("keel_init: every boot archive is given prebuilt (keel_initrd and each slot's initrd), so no archive is built with it: leave keel_init out, or leave the prebuilt archives out to build them")
		}
		if len(s.TrustedKeys) > 0 {
			add("trusted_keys: every boot archive is given prebuilt (keel_initrd and each slot's initrd), which hold their own trusted keys: leave trusted_keys out, or leave the prebuilt archives out to build them with these keys")
		}
		return
	}
	if b.Arch != "" {
		keelInit := s.KeelInit
		if keelInit == "" {
			var err error
			if keelInit, err = bootimage.DefaultKeelInit(b.Arch); err != nil {
				add("keel_init: %w", err)
			}
		}
		if keelInit != "" {
			if err := bootimage.CheckKeelInitFile(keelInit, b.Arch); err != nil {
				add("keel_init: %w", err)
			}
		}
	}
	if len(s.TrustedKeys) == 0 {
		add("trusted_keys: none given, but keel's boot archives are built here (no prebuilt keel_initrd or slot initrd): " +
			"keel-init boots only slots signed by a key its archives hold, so it would refuse every slot; " +
			"list the .pub files of the signing keys in trusted_keys (keel keygen --out NAME makes NAME.key and NAME.pub)")
		return
	}
	if _, err := bootimage.TrustedKeys(s.TrustedKeys); err != nil {
		add("trusted_keys: %w", err)
		return
	}
	trusted := map[string]bool{}
	for _, p := range s.TrustedKeys {
		keys, err := manifest.ReadPublicKeys(p)
		if err != nil {
			add("trusted_keys: %w", err)
			return
		}
		for _, k := range keys {
			trusted[k.ID()] = true
		}
	}
	for i, p := range s.SigningKeys {
		k, err := manifest.ReadPrivateKey(p)
		if err != nil {
			continue // reported with signing_keys
		}
		if !trusted[k.ID()] {
			add("signing_keys[%d]: key %s (%s) is not among trusted_keys: keel-init would not trust its signatures, so no slot it signs would boot; add its public key (keel keygen wrote it as %s) to trusted_keys",
				i, k.ID(), p, strings.TrimSuffix(p, ".key")+".pub")
		}
	}
}

// SpecError lists every problem Validate found.
type SpecError struct{ Errs []error }

func (e *SpecError) Error() string {
	var sb strings.Builder
	sb.WriteString("image: the spec has ")
	if len(e.Errs) == 1 {
		sb.WriteString("a problem: ")
		sb.WriteString(e.Errs[0].Error())
		return sb.String()
	}
	fmt.Fprintf(&sb, "%d problems:", len(e.Errs))
	for _, err := range e.Errs {
		sb.WriteString("\n\t")
		sb.WriteString(err.Error())
	}
	return sb.String()
}

// Unwrap lets errors.Is find, for example, fs.ErrNotExist in any problem.
func (e *SpecError) Unwrap() []error { return e.Errs }

// slotNames lists slots for a message: "slot a, b" or "the recovery seed".
func slotNames(names []string) string {
	var slots []string
	seed := false
	for _, n := range names {
		if n == "recovery" {
			seed = true
		} else {
			slots = append(slots, n)
		}
	}
	var parts []string
	if len(slots) > 0 {
		parts = append(parts, "slot "+strings.Join(slots, ", "))
	}
	if seed {
		parts = append(parts, "the recovery seed")
	}
	return strings.Join(parts, " and ")
}
