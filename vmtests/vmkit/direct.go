package vmkit

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/secureboot"
)

// DirectMachine makes the baseline of the Debian boot benchmark: a copy of
// m (its disk, UEFI variable store and TPM state, copied into dir, which
// must exist) whose firmware boots slot's own kernel directly, without
// keel. Only the ESP's boot file (image.ESPBootPath) differs from m's disk:
// it is replaced, inside the same FAT file system, by a "direct" UKI made
// as keel's is (image.UKI, the same stub, signed with the same db key): the
// kernel and initrd read from slot's container on the disk (the bytes
// keel-init kexecs: the slot's kernel as signed, and keel's stage 2, which
// maps the root through dm-verity and switches to its init) and handoff,
// the slot kernel's command line keel-init passes (format/cmdline: the
// manifest's line and the keel.* parameters, dm-verity root hash
// included), as its .cmdline. m must not be running.
func (m *Machine) DirectMachine(ctx context.Context, dir, slot, handoff string) (*Machine, error) {
	if m.Art.Board.Firmware != boards.FirmwareUEFI {
		return nil, fmt.Errorf("vmkit: a direct boot needs a UEFI board, %s is %s", m.Art.Board.Name, m.Art.Board.Firmware)
	}
	h, err := cmdline.ParseHandoff(handoff)
	if err != nil {
		return nil, fmt.Errorf("vmkit: the direct boot's command line: %w", err)
	}
	if h.Slot != slot {
		return nil, fmt.Errorf("vmkit: the command line %q hands over slot %s, not %s", handoff, h.Slot, slot)
	}
	d := &Machine{Art: m.Art, Dir: dir, Disk: filepath.Join(dir, "disk.img"), Vars: filepath.Join(dir, "OVMF_VARS.fd"),
		Stick: m.Stick, SecureBoot: m.SecureBoot}
	copies := [][2]string{{m.Disk, d.Disk}, {m.Vars, d.Vars}}
	if _, err := os.Stat(filepath.Join(m.Dir, "tpm")); err == nil {
		copies = append(copies, [2]string{filepath.Join(m.Dir, "tpm"), filepath.Join(dir, "tpm")})
	}
	for _, c := range copies {
		if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", "--sparse=always", c[0], c[1]).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vmkit: copying %s: %v\n%s", c[0], err, out)
		}
	}
	kernel, initrd := filepath.Join(dir, "slot-kernel"), filepath.Join(dir, "slot-initrd")
	if err := slotEntries(d.Disk, slot, map[string]string{slotimg.EntryKernel: kernel, slotimg.EntryInitrd: initrd}); err != nil {
		return nil, err
	}
	uki := filepath.Join(dir, "direct.efi")
	if _, err := image.UKI(ctx, uki, image.UKIOptions{Kernel: kernel, Initrd: initrd, Cmdline: handoff}); err != nil {
		return nil, fmt.Errorf("vmkit: the direct UKI: %w", err)
	}
	if m.Art.SecureBootKeys != "" {
		if err := signPE(uki, m.Art.SecureBootKeys); err != nil {
			return nil, err
		}
	}
	esp, err := partition(d.Disk, layout.ESP)
	if err != nil {
		return nil, err
	}
	// mtools addresses a file system inside an image as IMAGE@@OFFSET.
	img := fmt.Sprintf("%s@@%d", d.Disk, esp.Offset())
	if out, err := exec.CommandContext(ctx, "mcopy", "-o", "-m", "-i", img, uki, "::/"+image.ESPBootPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vmkit: replacing %s on the direct disk's ESP: %v\n%s", image.ESPBootPath, err, out)
	}
	return d, nil
}

// partition finds the partition name on the disk image disk.
func partition(disk, name string) (gpt.Partition, error) {
	f, err := os.Open(disk)
	if err != nil {
		return gpt.Partition{}, err
	}
	defer f.Close()
	t, err := gpt.ReadFile(f)
	if err != nil {
		return gpt.Partition{}, fmt.Errorf("vmkit: %s: %w", disk, err)
	}
	p, err := t.Find(name)
	if err != nil {
		return gpt.Partition{}, fmt.Errorf("vmkit: %s: %w", disk, err)
	}
	return p, nil
}

// slotEntries copies entries of slot's container on the disk image disk
// (entry name -> file) out to files.
func slotEntries(disk, slot string, files map[string]string) error {
	p, err := partition(disk, layout.SlotPartition(slot))
	if err != nil {
		return err
	}
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer f.Close()
	sec := p.Section(f)
	hdr, err := slotimg.ReadHeader(sec, p.Size())
	if err != nil {
		return fmt.Errorf("vmkit: slot %s: %w", slot, err)
	}
	for entry, out := range files {
		r, err := hdr.Section(sec, entry)
		if err != nil {
			return fmt.Errorf("vmkit: slot %s: %w", slot, err)
		}
		w, err := os.Create(out)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("vmkit: slot %s's %s: %w", slot, entry, err)
		}
	}
	return nil
}

// signPE Authenticode-signs the PE image at path in place with the db key
// of the Secure Boot key directory keys, as builder/image signs keel's UKI.
func signPE(path, keys string) error {
	cert, key, err := secureboot.LoadKey(keys, secureboot.DB)
	if err != nil {
		return fmt.Errorf("vmkit: %w", err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	signed, err := secureboot.SignPE(img, cert, key)
	if err != nil {
		return fmt.Errorf("vmkit: signing the direct UKI: %w", err)
	}
	return os.WriteFile(path, signed, 0o644)
}
