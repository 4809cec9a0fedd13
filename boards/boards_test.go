package boards

import (
	"strings"
	"testing"
)

// TestInvariants checks every board, as gokrazy checks its devices.
func TestInvariants(t *testing.T) {
	all := All()
	if len(all) == 0 {
		t.Fatal("no boards")
	}
	seen := map[string]bool{}
	for _, b := range all {
		t.Run(b.Name, func(t *testing.T) {
			if seen[b.Name] {
				t.Errorf("board name %s used twice", b.Name)
			}
			seen[b.Name] = true
			if got, err := Get(b.Name); err != nil || got.Name != b.Name {
				t.Errorf("Get(%q) = %v", b.Name, err)
			}
			if err := b.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := Get("nope"); err == nil || !strings.Contains(err.Error(), "qemu-x86_64-uefi") {
		t.Errorf("Get(nope) = %v", err)
	}
}

// TestValidateCatches breaks one invariant at a time: Validate must name it.
func TestValidateCatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(b *Board)
		want   string
	}{
		{"arch", func(b *Board) { b.Arch = "riscv" }, `arch "riscv"`},
		{"firmware", func(b *Board) { b.Firmware = "coreboot" }, `firmware "coreboot"`},
		{"store", func(b *Board) { b.Store = "nvram" }, `store "nvram"`},
		{"efivars on uboot", func(b *Board) { b.Firmware = FirmwareUBoot }, "needs UEFI firmware"},
		{"uboot env without bootstate", func(b *Board) { b.Store = StoreUBootEnv }, `needs a partition "bootstate"`},
		{"esp not first", func(b *Board) { b.Layout[0], b.Layout[1] = b.Layout[1], b.Layout[0] }, "ESP"},
		{"one slot", func(b *Board) { b.Slots = b.Slots[:1] }, "A/B needs two"},
		{"bad slot name", func(b *Board) { b.Slots = []string{"a", "B/"} }, "slots"},
		{"slot without partitions", func(b *Board) { b.Slots = append(b.Slots, "c") }, `partition "slot-c"`},
		{"no recovery", func(b *Board) { b.Layout = without(b.Layout, "recovery") }, `no partition "recovery"`},
		{"no data", func(b *Board) { b.Layout = without(b.Layout, "data") }, `no partition "data"`},
		{"duplicate partition", func(b *Board) { b.Layout = append(b.Layout[:len(b.Layout)-1], b.Layout[1], b.Layout[len(b.Layout)-1]) }, "twice"},
		{"rest not last", func(b *Board) { b.Layout[1].SizeMB = 0 }, "only the last partition"},
		{"lower-case guid", func(b *Board) { b.Layout[1].TypeID = strings.ToLower(b.Layout[1].TypeID) }, "not an upper-case GUID"},
		{"not a guid", func(b *Board) { b.Layout[1].TypeID = strings.Repeat("Z", 36) }, "not an upper-case GUID"},
		{"too small", func(b *Board) { b.DiskMB = 10 }, "the disk has 10"},
		{"no virtio", func(b *Board) { b.InitModules = nil }, "virtio_blk"},
		{"watchdog module", func(b *Board) { b.StageModules = withoutS(b.StageModules, b.Watchdog.Module) }, "watchdog driver"},
		{"watchdog timeout", func(b *Board) { b.Watchdog.TimeoutSec = 3 }, "no time"},
		{"verity module", func(b *Board) { b.StageModules = withoutS(b.StageModules, "dm-verity") }, "dm-verity"},
		{"rootfs module", func(b *Board) { b.RootFSType = "btrfs" }, "cannot mount btrfs"},
		{"qemu", func(b *Board) { b.QEMU.MemoryMB = 64 }, "QEMU settings"},
		{"console", func(b *Board) { b.Console = "" }, "no console"},
		{"tpm not required", func(b *Board) { b.TPMRequired = false }, "set TPMRequired"},
		{"root type of another arch", func(b *Board) { b.Layout[2].TypeID = TypeRootARM64 }, "not the amd64 root type"},
		{"qemu of another arch", func(b *Board) { b.QEMU.Binary = "qemu-system-aarch64" }, "does not emulate amd64"},
		{"uefi without vars", func(b *Board) { b.QEMU.Vars = "" }, "variable store template"},
		{"uefi with a boot script", func(b *Board) { b.UBoot.Device = "virtio 0" }, "UBoot must be empty"},
		{"pstore module in keel-init", func(b *Board) { b.InitModules = withoutS(b.InitModules, "efi_pstore") }, "pstore efi: its module efi_pstore"},
		{"pstore module in stage 2", func(b *Board) { b.StageModules = withoutS(b.StageModules, "efi_pstore") }, "the slot kernel writes them"},
		{"pstore unknown", func(b *Board) { b.Pstore = "nvme" }, `pstore "nvme"`},
		{"boot status without a watchdog", func(b *Board) { b.Watchdog.Module = "" }, "BootStatus without a watchdog"},
		{"uncounted ends negative", func(b *Board) { b.UncountedEnds = -1 }, "UncountedEnds -1"},
		{"uncounted ends too many", func(b *Board) { b.UncountedEnds = 101 }, "UncountedEnds 101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkBroken(t, "qemu-x86_64-uefi", tc.break_, tc.want)
		})
	}
	// The U-Boot board's own invariants.
	for _, tc := range []struct {
		name   string
		break_ func(b *Board)
		want   string
	}{
		{"boot not first", func(b *Board) { b.Layout[0], b.Layout[1] = b.Layout[1], b.Layout[0] }, "boot partition"},
		{"boot partition type", func(b *Board) { b.Layout[0].TypeID = TypeESP }, "boot partition"},
		{"an ESP", func(b *Board) { b.Layout[len(b.Layout)-2].Name = "esp" }, "not an ESP"},
		{"efivars store", func(b *Board) { b.Store = StoreEFIVars }, "keeps its state in a U-Boot env"},
		{"no bootstate", func(b *Board) { b.Layout = without(b.Layout, "bootstate") }, `needs a partition "bootstate"`},
		{"amd64", func(b *Board) { b.Arch = "amd64" }, "booti"},
		{"no device", func(b *Board) { b.UBoot.Device = "virtio" }, "UBoot.Device"},
		{"kernel address", func(b *Board) { b.UBoot.KernelAddr = 0x40480000 }, "2 MiB aligned"},
		{"ramdisk address", func(b *Board) { b.UBoot.RamdiskAddr = b.UBoot.KernelAddr }, "UBoot.RamdiskAddr"},
		{"vars", func(b *Board) { b.QEMU.Vars = "/usr/share/OVMF/OVMF_VARS_4M.fd" }, "no UEFI variable store"},
		{"no firmware", func(b *Board) { b.QEMU.Code = "" }, "no firmware"},
		{"root type of another arch", func(b *Board) { b.Layout[3].TypeID = TypeRootAMD64 }, "not the arm64 root type"},
		{"a tpm", func(b *Board) { b.QEMU.TPM = "tpm-tis-device" }, "set TPMRequired"},
		{"watchdog module", func(b *Board) { b.InitModules = withoutS(b.InitModules, b.Watchdog.Module) }, "watchdog driver"},
		{"no virtio", func(b *Board) { b.StageModules = withoutS(b.StageModules, "virtio_blk") }, "virtio_blk"},
		{"efi pstore without UEFI", func(b *Board) {
			b.Pstore = PstoreEFI
			b.InitModules = append(b.InitModules, "efi_pstore")
			b.StageModules = append(b.StageModules, "efi_pstore")
		}, "pstore efi needs UEFI firmware"},
		{"ramoops without its module", func(b *Board) { b.Pstore = PstoreRAM }, "its module ramoops"},
	} {
		t.Run("uboot/"+tc.name, func(t *testing.T) {
			checkBroken(t, "qemu-arm64-uboot", tc.break_, tc.want)
		})
	}
}

// checkBroken breaks a copy of the named board and wants Validate to say
// want.
func checkBroken(t *testing.T, name string, break_ func(b *Board), want string) {
	t.Helper()
	b, err := Get(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("the unbroken board: %v", err)
	}
	b.Layout = append([]Partition(nil), b.Layout...)
	b.InitModules = append([]string(nil), b.InitModules...)
	b.StageModules = append([]string(nil), b.StageModules...)
	break_(&b)
	err = b.Validate()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate() = %v, want an error with %q", err, want)
	}
}

// TestFirmwareKinds: every firmware kind has a board, and each board's
// firmware partition is its first.
func TestFirmwareKinds(t *testing.T) {
	first := map[Firmware]string{}
	for _, b := range All() {
		first[b.Firmware] = b.Layout[0].Name
	}
	if first[FirmwareUEFI] != "esp" || first[FirmwareUBoot] != "boot" {
		t.Errorf("first partitions by firmware: %v, want esp for uefi and boot for uboot", first)
	}
}

func without(l []Partition, name string) []Partition {
	var out []Partition
	for _, p := range l {
		if p.Name != name {
			out = append(out, p)
		}
	}
	return out
}

func withoutS(l []string, s string) []string {
	var out []string
	for _, x := range l {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// TestDiskNames: the boot disk is found by every partition of the
// layout but data (issue 19: a disk whose data partition is missing still
// boots its slots, without /data).
func TestDiskNames(t *testing.T) {
	for _, b := range All() {
		names := b.DiskNames()
		if len(names) != len(b.Layout)-1 {
			t.Errorf("%s: DiskNames %v for a layout of %d", b.Name, names, len(b.Layout))
		}
		for _, p := range b.Layout {
			has := false
			for _, n := range names {
				has = has || n == p.Name
			}
			if has == (p.Name == "data") {
				t.Errorf("%s: DiskNames %v, partition %s", b.Name, names, p.Name)
			}
		}
	}
}
