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
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Get("qemu-x86_64-uefi")
			if err != nil {
				t.Fatal(err)
			}
			b.Layout = append([]Partition(nil), b.Layout...)
			tc.break_(&b)
			err = b.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error with %q", err, tc.want)
			}
		})
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
