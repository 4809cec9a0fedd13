package boards

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/layout"
)

// Validate checks the board's invariants and reports every problem at once.
// The board test runs it on every board, the image builder before it
// writes an image for a board, and keel-init on the board its initramfs
// carries.
func (b *Board) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if b.Name == "" {
		add("no name")
	}
	if b.Arch != "amd64" && b.Arch != "arm64" {
		add("arch %q: want amd64 or arm64", b.Arch)
	}
	switch b.Firmware {
	case FirmwareUEFI, FirmwareUBoot:
	default:
		add("firmware %q: want %q or %q", b.Firmware, FirmwareUEFI, FirmwareUBoot)
	}
	switch b.Store {
	case StoreEFIVars:
		if b.Firmware != FirmwareUEFI {
			add("store %s needs UEFI firmware, not %q", b.Store, b.Firmware)
		}
		if !slices.Contains(b.InitModules, "efivarfs") {
			add("store %s needs the efivarfs module in keel-init (InitModules)", b.Store)
		}
	case StoreUBootEnv:
		if !b.HasPartition(layout.Bootstate) {
			add("store %s needs a partition %q", b.Store, layout.Bootstate)
		}
	default:
		add("store %q: want %q or %q", b.Store, StoreEFIVars, StoreUBootEnv)
	}
	switch b.Firmware {
	case FirmwareUEFI:
		if len(b.Layout) == 0 || b.Layout[0].Name != layout.ESP || b.Layout[0].TypeID != TypeESP {
			add("a UEFI board boots keel from an ESP (partition %q, type %s) that comes first", layout.ESP, TypeESP)
		}
		if b.UBoot != (UBoot{}) {
			add("a UEFI board has no U-Boot boot script: UBoot must be empty")
		}
	case FirmwareUBoot:
		// distro_bootcmd reads boot.scr from the partitions flagged
		// bootable, else from partition 1 (U-Boot's
		// include/config_distro_bootcmd.h): keel's boot partition is the
		// first one.
		if len(b.Layout) == 0 || b.Layout[0].Name != layout.Boot || b.Layout[0].TypeID != TypeXBOOTLDR {
			add("a U-Boot board boots keel from a boot partition (partition %q, type %s) that comes first", layout.Boot, TypeXBOOTLDR)
		}
		if b.HasPartition(layout.ESP) {
			add("a U-Boot board has a boot partition, not an ESP (%q)", layout.ESP)
		}
		if b.Store != StoreUBootEnv {
			add("a U-Boot board keeps its state in a U-Boot env (store %s), not %q", StoreUBootEnv, b.Store)
		}
		if b.Arch != "arm64" {
			add("a U-Boot board boots keel's kernel with booti (an arm64 Image): arch %q is not supported", b.Arch)
		}
		u := b.UBoot
		if len(strings.Fields(u.Device)) != 2 {
			add("UBoot.Device %q: want U-Boot's interface and device number, like \"virtio 0\"", u.Device)
		}
		// booti wants the Image 2 MiB aligned (Documentation/arm64/booting.rst).
		if u.KernelAddr == 0 || u.KernelAddr%(2<<20) != 0 {
			add("UBoot.KernelAddr %#x: want a 2 MiB aligned address in RAM (the board's kernel_addr_r)", u.KernelAddr)
		}
		if u.RamdiskAddr <= u.KernelAddr {
			add("UBoot.RamdiskAddr %#x: want an address above KernelAddr %#x (the board's ramdisk_addr_r)", u.RamdiskAddr, u.KernelAddr)
		}
	}
	rootType := map[string]string{"amd64": TypeRootAMD64, "arm64": TypeRootARM64}[b.Arch]
	for _, s := range b.Slots {
		for _, p := range b.Layout {
			if p.Name == layout.RootPartition(s) && rootType != "" && p.TypeID != rootType {
				add("partition %s: type %s is not the %s root type %s (Discoverable Partitions Specification)", p.Name, p.TypeID, b.Arch, rootType)
			}
		}
	}
	if len(b.Slots) < 2 {
		add("%d slots: A/B needs two", len(b.Slots))
	} else if _, err := bootenv.Init(b.Slots, b.Slots[0]); err != nil {
		add("slots %v: %v", b.Slots, err)
	}
	for _, s := range b.Slots {
		for _, p := range []string{layout.SlotPartition(s), layout.RootPartition(s)} {
			if !b.HasPartition(p) {
				add("slot %s has no partition %q", s, p)
			}
		}
	}
	for _, p := range []string{layout.Recovery, layout.Data} {
		if !b.HasPartition(p) {
			add("no partition %q", p)
		}
	}
	names := map[string]bool{}
	total := 0
	for i, p := range b.Layout {
		if names[p.Name] {
			add("partition %s twice", p.Name)
		}
		names[p.Name] = true
		if p.Name == "" || len(p.Name) > 36 {
			add("partition %d: name %q must have 1 to 36 characters (GPT)", i, p.Name)
		}
		if p.SizeMB < 0 || (p.SizeMB == 0 && i != len(b.Layout)-1) {
			add("partition %s: size %d MiB: only the last partition may take the rest of the disk (0)", p.Name, p.SizeMB)
		}
		if !validGUID(p.TypeID) {
			add("partition %s: type %q is not an upper-case GUID", p.Name, p.TypeID)
		}
		total += p.SizeMB
	}
	if total+2 > b.DiskMB {
		add("layout needs %d MiB (with 2 MiB for the GPT), the disk has %d", total+2, b.DiskMB)
	}
	if !slices.Contains(b.InitModules, "virtio_blk") && b.QEMU.Binary != "" {
		add("keel-init cannot see QEMU's disk: virtio_blk missing from InitModules")
	}
	if !slices.Contains(b.StageModules, "virtio_blk") && b.QEMU.Binary != "" {
		add("stage 2 cannot see QEMU's disk: virtio_blk missing from StageModules")
	}
	if w := b.Watchdog; w.Module != "" {
		if !slices.Contains(b.InitModules, w.Module) || !slices.Contains(b.StageModules, w.Module) {
			add("watchdog driver %s must be loaded by keel-init and stage 2", w.Module)
		}
		if w.TimeoutSec < 10 {
			add("watchdog timeout %ds leaves a slot no time to mark itself good", w.TimeoutSec)
		}
	} else if w.BootStatus {
		add("Watchdog.BootStatus without a watchdog driver (Watchdog.Module)")
	}
	switch b.Pstore {
	case PstoreNone:
	case PstoreEFI, PstoreRAM:
		if m := b.Pstore.Module(); !slices.Contains(b.InitModules, m) || !slices.Contains(b.StageModules, m) {
			add("pstore %s: its module %s must be loaded by keel-init (it reads the records) and stage 2 (the slot kernel writes them)", b.Pstore, m)
		}
		if b.Pstore == PstoreEFI && b.Firmware != FirmwareUEFI {
			add("pstore %s needs UEFI firmware, not %q", b.Pstore, b.Firmware)
		}
	default:
		add("pstore %q: want %q, %q or none", b.Pstore, PstoreEFI, PstoreRAM)
	}
	if b.UncountedEnds < 0 || b.UncountedEnds > bootenv.MaxTries {
		add("UncountedEnds %d: want 0 (the default, %d) to %d", b.UncountedEnds, bootenv.DefaultMaxUncounted, bootenv.MaxTries)
	}
	if b.RootVerity && !slices.Contains(b.StageModules, "dm-verity") {
		add("verity roots need the dm-verity module in stage 2 (StageModules)")
	}
	if b.RootFSType == "" {
		add("no RootFSType")
	} else if !slices.Contains(b.StageModules, b.RootFSType) {
		add("stage 2 cannot mount %s: module missing from StageModules", b.RootFSType)
	}
	if b.QEMU.TPM != "" && !b.TPMRequired {
		add("the board has a TPM (%s) but does not require it: an unreadable counter or a failed measurement would boot without rollback checks; set TPMRequired", b.QEMU.TPM)
	}
	if q := b.QEMU; q.Binary != "" {
		if q.Machine == "" || q.MemoryMB < 256 {
			add("QEMU settings incomplete: machine %q, %d MiB", q.Machine, q.MemoryMB)
		}
		if want := map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}[b.Arch]; want != "" && q.Binary != want {
			add("QEMU binary %s does not emulate %s: want %s", q.Binary, b.Arch, want)
		}
		if q.Code == "" {
			add("QEMU settings incomplete: no firmware (Code)")
		}
		switch b.Firmware {
		case FirmwareUEFI:
			if q.Vars == "" {
				add("QEMU settings incomplete: a UEFI board needs a variable store template (Vars)")
			}
		case FirmwareUBoot:
			// U-Boot runs from -bios; its env is not where keel's state is.
			if q.Vars != "" || q.SecureBootCode != "" {
				add("QEMU settings: a U-Boot board has no UEFI variable store (Vars) or Secure Boot firmware (SecureBootCode)")
			}
		}
	}
	if b.Console == "" {
		add("no console")
	}
	if len(errs) == 0 {
		return nil
	}
	name := b.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Errorf("board %s: %w", name, errors.Join(errs...))
}

// HasPartition reports whether the layout has a partition named name.
func (b *Board) HasPartition(name string) bool {
	return slices.ContainsFunc(b.Layout, func(p Partition) bool { return p.Name == name })
}

// validGUID: 8-4-4-4-12 upper-case hex digits.
func validGUID(s string) bool {
	if len(s) != 36 || strings.ToUpper(s) != s {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789ABCDEF", c) {
				return false
			}
		}
	}
	return true
}
