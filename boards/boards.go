// Package boards describes the targets keel runs on, as Go data: the
// machine, its firmware, where the boot state lives, which kernel modules
// keel-init and stage 2 load, the slots and the disk layout. A test checks
// the invariants of every board: Board.Validate, which the image builder
// and keel-init run too.
package boards

import (
	"fmt"
	"sort"
	"strings"

	"github.com/keelboot/keel/format/layout"
)

// Firmware is what loads keel's kernel and initramfs.
type Firmware string

// Firmware kinds.
const (
	FirmwareUEFI  Firmware = "uefi"
	FirmwareUBoot Firmware = "uboot"
)

// StoreKind is where a board keeps its boot state.
type StoreKind string

// Store kinds.
const (
	// StoreEFIVars: one UEFI variable (package bootenv/efivars).
	StoreEFIVars StoreKind = "efivars"
	// StoreUBootEnv: a redundant U-Boot env on the partition bootstate
	// (package bootenv/ubootenv).
	StoreUBootEnv StoreKind = "uboot-env"
)

// QEMU says how to emulate the board (for boards that QEMU can emulate).
type QEMU struct {
	Binary   string // qemu-system-x86_64
	Machine  string // -M
	CPU      string // -cpu
	MemoryMB int    // -m
	Code     string // firmware code (OVMF_CODE) or -bios image
	Vars     string // UEFI variable store template, copied per VM
	// SecureBootCode is firmware code that enforces UEFI Secure Boot once
	// keys are enrolled (OVMF's secboot build); empty: the board has none.
	// It needs SMM: the machine runs with smm=on and a secure pflash.
	SecureBootCode string
	TPM            string   // -device for the TPM (tpm-crb), empty for none
	Extra          []string // more arguments
}

// UBoot says how keel's boot script (boot.scr on the boot partition, which
// U-Boot's distro_bootcmd runs) loads keel's kernel and initramfs on a
// U-Boot board.
type UBoot struct {
	// Device is the U-Boot block device holding the boot partition, as
	// U-Boot's load command names it: interface and device number
	// ("virtio 0"). The partition number comes from the layout.
	Device string
	// KernelAddr and RamdiskAddr are where boot.scr loads keel's kernel
	// (an arm64 Image, booted with booti) and keel's initramfs: the
	// board's U-Boot kernel_addr_r and ramdisk_addr_r. The kernel must
	// fit below RamdiskAddr (the image builder checks).
	KernelAddr, RamdiskAddr uint64
}

// Partition is one GPT partition of the board's disk layout.
type Partition struct {
	Name   string
	TypeID string // GPT type GUID (Discoverable Partitions Specification where one fits)
	SizeMB int    // 0: the rest of the disk (last partition only)
}

// Watchdog is the board's hardware watchdog, armed by keel-init at its start
// (a hang in keel-init itself is reset; a reinstall pets it) and again
// before it hands a slot over (stage 1 before kexec, stage 2 before
// switch_root): a slot that hangs before `keel mark-good` is reset, and its
// trial counts.
type Watchdog struct {
	// Module is the driver; it must be in InitModules and StageModules.
	Module string
	// TimeoutSec is how long a slot has from keel's hand-over to
	// `keel mark-good` (or to its own watchdog daemon), and how long
	// stage 1 may run between two pets (verifying the seed included).
	TimeoutSec int
	// BootStatus: the driver reports a reset the watchdog caused
	// (WDIOF_CARDRESET in its boot status, WDIOC_GETBOOTSTATUS and sysfs
	// bootstatus) and clears it, so that keel-init can tell a watchdog
	// reset from a power loss (docs/DESIGN.md section 3.1). Set it only
	// for a driver that does both (i6300esb reads and clears the chip's
	// timeout flag at probe; QEMU emulates it). Without it an end that no
	// other source explains is "unknown" and uses a trial's try.
	BootStatus bool
}

// Pstore is where a board's kernels keep a panic's log across a reset
// (Linux's pstore): keel-init reads it at the next boot (package
// hw/pstore), so a panic is counted as one and its first lines shown.
type Pstore string

// Pstore backends.
const (
	// PstoreNone: the board keeps no panic log; a panic is seen as the
	// watchdog reset that follows it (panic=0), or not at all (a panic=N
	// reboot looks like a power loss).
	PstoreNone Pstore = ""
	// PstoreEFI: UEFI variables (efi_pstore: the firmware keeps them in
	// its variable store).
	PstoreEFI Pstore = "efi"
	// PstoreRAM: a RAM region that survives a reset (ramoops, configured
	// by the board's device tree or module parameters).
	PstoreRAM Pstore = "ramoops"
)

// Module is the kernel module of the backend ("" for none).
func (p Pstore) Module() string {
	switch p {
	case PstoreEFI:
		return "efi_pstore"
	case PstoreRAM:
		return "ramoops"
	}
	return ""
}

// Board is one target.
type Board struct {
	Name     string
	Arch     string // Debian architecture: amd64, arm64
	Firmware Firmware
	Console  string // kernel console device, e.g. ttyS0
	// Store is where the boot state lives: StoreEFIVars or StoreUBootEnv
	// (then in the partition named bootstate).
	Store StoreKind
	// Slots are the A/B slot names; each has partitions slot-<name>
	// (kernel, initrd, manifest) and root-<name> (the root filesystem).
	Slots []string
	// InitModules are loaded by keel-init (stage 1), StageModules by
	// stage 2 in the slot kernel; dependencies are added by the builder.
	InitModules, StageModules []string
	// Watchdog, if Module is set.
	Watchdog Watchdog
	// TPMRequired: the board has a TPM, and keel-init requires it: it
	// waits for the device, and a missing TPM, an unreadable counter or a
	// failed measurement is an environmental error (retried, never a bad
	// slot) rather than an unmeasured boot. A board with a TPM must set it
	// (Validate checks the QEMU boards); without it the boot is unmeasured.
	TPMRequired bool
	// Tries is how many boots a newly installed slot's trial may take
	// (keel install); 0 means DefaultTrialTries.
	Tries int
	// Pstore is where the board's kernels keep a panic's log (keel-init
	// reads and clears it: a trial's panic uses its try, keel events
	// shows the first lines); its module must be in InitModules and
	// StageModules, so that the slot kernel writes it.
	Pstore Pstore
	// UncountedEnds is how many boots in a row of one trial may end
	// without using their try (power losses, kexecs: docs/DESIGN.md
	// section 3.1) before such an end uses it as well; 0 means
	// bootenv.DefaultMaxUncounted.
	UncountedEnds int
	// RootFSType is the slot root filesystem type.
	RootFSType string
	// RootVerity: slot roots carry a dm-verity tree (the image builder
	// appends it, the manifest holds the root hash) and stage 2 mounts
	// them only through dm-verity; a manifest without one is refused.
	RootVerity bool
	// DiskMB is the size of the disk image the builder makes.
	DiskMB int
	// Layout is the GPT layout, in order.
	Layout []Partition
	// UBoot is set on U-Boot boards: how boot.scr loads keel.
	UBoot UBoot
	QEMU  QEMU
}

// GPT type GUIDs (UEFI 2.10 section 5.3.3 and the Discoverable Partitions
// Specification).
const (
	TypeESP          = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeXBOOTLDR     = "BC13C2FF-59E6-4262-A352-B275FD6F7172" // Extended Boot Loader Partition
	TypeLinuxGeneric = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeRootAMD64    = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeRootARM64    = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"
	TypeHome         = "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"
)

// All returns every board, sorted by name.
func All() []Board {
	bs := []Board{qemuX8664UEFI(), qemuARM64UBoot()}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Name < bs[j].Name })
	return bs
}

// Get returns the named board.
func Get(name string) (Board, error) {
	var names []string
	for _, b := range All() {
		if b.Name == name {
			return b, nil
		}
		names = append(names, b.Name)
	}
	return Board{}, fmt.Errorf("unknown board %q (known: %s)", name, strings.Join(names, ", "))
}

func qemuX8664UEFI() Board {
	return Board{
		Name:     "qemu-x86_64-uefi",
		Arch:     "amd64",
		Firmware: FirmwareUEFI,
		Console:  "ttyS0",
		Store:    StoreEFIVars,
		Slots:    []string{"a", "b"},
		InitModules: []string{
			"crc32c_generic", "nls_cp437", "nls_ascii",
			"virtio_pci", "virtio_blk", "efivarfs", "i6300esb", "efi_pstore",
		},
		StageModules: []string{
			"crc32c_generic", "virtio_pci", "virtio_blk", "erofs", "efivarfs", "i6300esb", "dm-verity",
			"ext4",       // the data partition, for the OS
			"efi_pstore", // the slot kernel's panics, for the next keel-init
		},
		// QEMU's Intel 6300ESB watchdog; its expiry resets the machine,
		// and QEMU keeps the chip's timeout flag across the reset, which
		// the driver reports as WDIOF_CARDRESET.
		Watchdog: Watchdog{Module: "i6300esb", TimeoutSec: 60, BootStatus: true},
		// OVMF keeps efi_pstore's variables in its variable store.
		Pstore:      PstoreEFI,
		TPMRequired: true,
		RootFSType:  "erofs",
		RootVerity:  true,
		DiskMB:      320,
		Layout: []Partition{
			{Name: layout.ESP, TypeID: TypeESP, SizeMB: 64},
			{Name: layout.SlotPartition("a"), TypeID: TypeLinuxGeneric, SizeMB: 48},
			{Name: layout.RootPartition("a"), TypeID: TypeRootAMD64, SizeMB: 24},
			{Name: layout.SlotPartition("b"), TypeID: TypeLinuxGeneric, SizeMB: 48},
			{Name: layout.RootPartition("b"), TypeID: TypeRootAMD64, SizeMB: 24},
			// The recovery seed (package recovery): kernel, initrd, a root
			// as large as root-<slot> with its verity tree, the sparse data
			// file system.
			{Name: layout.Recovery, TypeID: TypeLinuxGeneric, SizeMB: 80},
			{Name: layout.Data, TypeID: TypeHome, SizeMB: 0},
		},
		QEMU: QEMU{
			Binary:   "qemu-system-x86_64",
			Machine:  "q35",
			CPU:      "max",
			MemoryMB: 1024,
			Code:     "/usr/share/OVMF/OVMF_CODE_4M.fd",
			Vars:     "/usr/share/OVMF/OVMF_VARS_4M.fd",
			// The same variable store template (no keys: setup mode)
			// serves both builds.
			SecureBootCode: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
			TPM:            "tpm-crb",
			Extra:          []string{"-device", "i6300esb", "-action", "watchdog=reset"},
		},
	}
}

// qemuARM64UBoot is QEMU's virt machine with Debian's U-Boot
// (u-boot-qemu, qemu_arm64) as its firmware. U-Boot's default bootcmd runs
// distro_bootcmd, which scans virtio0's partitions flagged bootable, else
// partition 1, for boot.scr in / or /boot/ (U-Boot 2023.01,
// include/config_distro_bootcmd.h): the boot partition comes first and its
// boot.scr loads keel's Image and initramfs and boots them with booti
// (Documentation/arm64/booting.rst). U-Boot's own env is not used: keel's
// record lives in a redundant U-Boot env on bootstate, written from Linux
// (this QEMU cannot persist U-Boot's env in pflash anyway).
//
// The disk is virtio-blk-pci on virt's PCIe host bridge (pci-host-generic
// is built into Debian's arm64 kernel; virtio_pci and virtio_blk are
// modules), as on the x86 board; U-Boot's virtio driver sees it as virtio
// 0. The watchdog is the same Intel 6300ESB on that PCI bus (Debian's
// arm64 kernel ships i6300esb): virt has no SBSA generic watchdog for
// sbsa_gwdt. Debian's arm64 kernel has no TPM driver QEMU's virt offers
// (no tpm_tis platform device, CONFIG_TCG_TIS off), so the board runs
// without a TPM: boots are unmeasured and rollback is not enforced by a
// counter (signatures and dm-verity are).
func qemuARM64UBoot() Board {
	return Board{
		Name:     "qemu-arm64-uboot",
		Arch:     "arm64",
		Firmware: FirmwareUBoot,
		Console:  "ttyAMA0", // virt's PL011 UART
		Store:    StoreUBootEnv,
		Slots:    []string{"a", "b"},
		InitModules: []string{
			"crc32c_generic", "nls_cp437", "nls_ascii",
			"virtio_pci", "virtio_blk", "i6300esb",
		},
		StageModules: []string{
			"crc32c_generic", "virtio_pci", "virtio_blk", "erofs", "i6300esb", "dm-verity",
			"ext4", // the data partition, for the OS
		},
		// The same i6300esb as on x86, with its boot status. No pstore:
		// without UEFI there is no efi_pstore, and ramoops would need a
		// RAM region U-Boot and both kernels leave alone (a reserved-
		// memory node in the device tree): not built. A panic there is
		// seen as the watchdog reset that follows it with panic=0, as a
		// power loss with panic=N.
		Watchdog:    Watchdog{Module: "i6300esb", TimeoutSec: 60, BootStatus: true},
		TPMRequired: false,
		RootFSType:  "erofs",
		RootVerity:  true,
		DiskMB:      400,
		Layout: []Partition{
			// keel's Image (Debian's arm64 kernel is an uncompressed
			// Image of ~32 MiB), initramfs and boot.scr.
			{Name: layout.Boot, TypeID: TypeXBOOTLDR, SizeMB: 64},
			// Two 64 KiB env copies (ubootenv.BootstateConfig).
			{Name: layout.Bootstate, TypeID: TypeLinuxGeneric, SizeMB: 1},
			{Name: layout.SlotPartition("a"), TypeID: TypeLinuxGeneric, SizeMB: 64},
			{Name: layout.RootPartition("a"), TypeID: TypeRootARM64, SizeMB: 24},
			{Name: layout.SlotPartition("b"), TypeID: TypeLinuxGeneric, SizeMB: 64},
			{Name: layout.RootPartition("b"), TypeID: TypeRootARM64, SizeMB: 24},
			{Name: layout.Recovery, TypeID: TypeLinuxGeneric, SizeMB: 112},
			{Name: layout.Data, TypeID: TypeHome, SizeMB: 0},
		},
		// u-boot-qemu's qemu_arm64 environment: kernel_addr_r,
		// ramdisk_addr_r (RAM starts at 0x40000000 on virt).
		UBoot: UBoot{Device: "virtio 0", KernelAddr: 0x40400000, RamdiskAddr: 0x44000000},
		QEMU: QEMU{
			Binary:   "qemu-system-aarch64",
			Machine:  "virt",
			CPU:      "cortex-a57",
			MemoryMB: 1024,
			Code:     "/usr/lib/u-boot/qemu_arm64/u-boot.bin", // -bios
			Extra:    []string{"-device", "i6300esb", "-action", "watchdog=reset"},
		},
	}
}

// DefaultTrialTries is TrialTries when a board does not say.
const DefaultTrialTries = 3

// TrialTries is how many boots a newly installed slot's trial may take
// (keel install arms it): the board's Tries, else DefaultTrialTries.
func (b Board) TrialTries() int {
	if b.Tries > 0 {
		return b.Tries
	}
	return DefaultTrialTries
}

// DiskNames are the partitions that identify the boot disk (package
// hw/blockdev): every partition of the layout but the data partition.
// The data partition belongs to the OS, which may remove or re-create
// it; a disk without one still boots its slots (without /data) and is
// still the disk a factory reset re-creates it on, and a USB stick
// carrying all of the others is refused as ambiguous either way.
func (b Board) DiskNames() []string {
	var names []string
	for _, p := range b.Layout {
		if p.Name != layout.Data {
			names = append(names, p.Name)
		}
	}
	return names
}
