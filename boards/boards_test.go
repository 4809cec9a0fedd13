package boards

import (
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
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
			if b.Arch != "amd64" && b.Arch != "arm64" {
				t.Errorf("arch %q", b.Arch)
			}
			switch {
			case b.Firmware == FirmwareUEFI && b.Store == StoreEFIVars:
			case b.Store == StoreUBootEnv:
				if !hasPart(b, "bootstate") {
					t.Errorf("a U-Boot env store needs a bootstate partition")
				}
			default:
				t.Errorf("firmware %q with store %q", b.Firmware, b.Store)
			}
			if b.Firmware == FirmwareUEFI && (!hasPart(b, "esp") || b.Layout[0].TypeID != TypeESP) {
				t.Errorf("a UEFI board boots keel from an ESP that comes first")
			}
			if len(b.Slots) < 2 {
				t.Errorf("%d slots: A/B needs two", len(b.Slots))
			}
			if _, err := bootenv.Init(b.Slots, b.Slots[0]); err != nil {
				t.Errorf("slots %v: %v", b.Slots, err)
			}
			for _, s := range b.Slots {
				for _, p := range []string{SlotPartition(s), RootPartition(s)} {
					if !hasPart(b, p) {
						t.Errorf("slot %s has no partition %s", s, p)
					}
				}
			}
			for _, p := range []string{"recovery", "data"} {
				if !hasPart(b, p) {
					t.Errorf("no %s partition", p)
				}
			}
			names := map[string]bool{}
			total := 0
			for i, p := range b.Layout {
				if names[p.Name] {
					t.Errorf("partition %s twice", p.Name)
				}
				names[p.Name] = true
				if p.SizeMB == 0 && i != len(b.Layout)-1 {
					t.Errorf("partition %s takes the rest of the disk but is not last", p.Name)
				}
				if len(p.TypeID) != 36 || strings.ToUpper(p.TypeID) != p.TypeID {
					t.Errorf("partition %s type %q is not an upper-case GUID", p.Name, p.TypeID)
				}
				total += p.SizeMB
			}
			if total+2 > b.DiskMB {
				t.Errorf("layout needs %d MiB, the disk has %d", total+2, b.DiskMB)
			}
			for _, want := range []string{"virtio_blk"} {
				if !contains(b.InitModules, want) || !contains(b.StageModules, want) {
					t.Errorf("module %s missing from keel-init or stage 2", want)
				}
			}
			if w := b.Watchdog; w.Module != "" {
				if !contains(b.InitModules, w.Module) || !contains(b.StageModules, w.Module) {
					t.Errorf("watchdog driver %s must be loaded by keel-init and stage 2", w.Module)
				}
				if w.TimeoutSec < 10 {
					t.Errorf("watchdog timeout %ds leaves a slot no time to mark itself good", w.TimeoutSec)
				}
			}
			if b.Store == StoreEFIVars && !contains(b.InitModules, "efivarfs") {
				t.Errorf("an efivars store needs the efivarfs module in keel-init")
			}
			if b.RootVerity && !contains(b.StageModules, "dm-verity") {
				t.Errorf("verity roots need the dm-verity module in stage 2")
			}
			if !contains(b.StageModules, b.RootFSType) {
				t.Errorf("stage 2 cannot mount %s: module missing", b.RootFSType)
			}
			if b.QEMU.Binary != "" && (b.QEMU.Machine == "" || b.QEMU.MemoryMB < 256) {
				t.Errorf("QEMU settings incomplete: %+v", b.QEMU)
			}
			if b.Console == "" {
				t.Error("no console")
			}
		})
	}
	if _, err := Get("nope"); err == nil || !strings.Contains(err.Error(), "qemu-x86_64-uefi") {
		t.Errorf("Get(nope) = %v", err)
	}
}

func hasPart(b Board, name string) bool {
	for _, p := range b.Layout {
		if p.Name == name {
			return true
		}
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
