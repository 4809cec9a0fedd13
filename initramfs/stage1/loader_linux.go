//go:build linux

package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/initramfs/kexec"
	"github.com/keelboot/keel/initramfs/sysinit"
	"github.com/keelboot/keel/manifest"
)

// deviceLoader reads slots from their slot-<name> partitions and checks
// them against the trusted keys.
type deviceLoader struct {
	logf    Logf
	trusted []manifest.PublicKey
	// board is the board's name: a slot's manifest must be for it.
	board   string
	keysErr error
	disks   *bootDisks
	// kexec, under Secure Boot, is what slot kernels must be signed by.
	kexec *kexecTrust
}

var _ SlotLoader = deviceLoader{}

func (d deviceLoader) LoadSlot(ctx context.Context, slot string) (*Image, error) {
	part := layout.SlotPartition(slot)
	disk, err := d.disks.get(d.logf)
	if err != nil {
		// No boot disk in time (a slow disk, a driver that did not
		// probe): not the slot's fault.
		return nil, Environmental(err)
	}
	dev, err := disk.Partition(part)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	h, err := slotimg.ReadHeader(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", part, dev, err)
	}
	mb, sig, err := h.ReadManifest(f, slotimg.EntryManifest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", part, err)
	}
	if d.keysErr != nil {
		return nil, fmt.Errorf("%s: cannot verify the manifest: %w", part, d.keysErr)
	}
	// Nothing from the manifest is used before its signature verifies;
	// it must be a slot's (not the seed's) for this board.
	m, err := manifest.VerifyFor(mb, sig, d.trusted, manifest.Expect{Compatible: d.board, Role: manifest.RoleSlot})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", part, err)
	}
	img := &Image{Slot: slot, Manifest: m, ManifestBytes: mb}
	for _, e := range []struct {
		name string
		want manifest.Digest
		dst  *io.ReaderAt
	}{
		{slotimg.EntryKernel, m.Kernel, &img.Kernel},
		{slotimg.EntryInitrd, m.Initrd, &img.Initrd},
	} {
		sec, err := h.Section(f, e.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part, err)
		}
		// The container's sizes are unsigned: compare with the signed
		// manifest before copying anything into memory.
		if sec.Size() != e.want.Size {
			return nil, fmt.Errorf("%s: %s entry is %d bytes, the signed manifest says %d", part, e.name, sec.Size(), e.want.Size)
		}
		mf, err := kexec.VerifiedCopy(e.name, sec, e.want)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part, err)
		}
		*e.dst = mf
	}
	if err := d.kexec.check(img.Kernel, m.Kernel.Size); err != nil {
		return nil, fmt.Errorf("%s: %w", part, err)
	}
	d.logf("slot %s verified: version %s, kernel %d bytes, initrd %d bytes", slot, m.Version, m.Kernel.Size, m.Initrd.Size)
	return img, nil
}

// kexecer boots a verified image: it hands the event log, the trusted
// keys and a trial's id over in the initrd, loads the kernel, arms the
// watchdog, extends the separator and jumps.
type kexecer struct {
	logf  Logf
	board boards.Board
}

var _ Kexecer = kexecer{}

// handoffFiles are the files stage 1 appends to the slot's initrd: each
// lands in layout.HandoffDir under the name it has in layout.RunDir, where
// stage 2 copies it.
func handoffFiles(h Handoff) []kexec.File {
	var files []kexec.File
	add := func(runPath string, perm uint32, data []byte) {
		if len(data) > 0 {
			name := layout.HandoffDir[1:] + "/" + path.Base(runPath)
			files = append(files, kexec.File{Name: name, Perm: perm, Data: data})
		}
	}
	add(layout.EventLogPath, 0o644, h.EventLog)
	add(layout.TrustedKeysRunPath, 0o444, h.TrustedKeys)
	if h.TrialID != "" {
		add(layout.TrialIDPath, 0o444, []byte(h.TrialID+"\n"))
	}
	add(layout.CrashLogPath, 0o444, h.Crash)
	return files
}

func (k kexecer) Kexec(ctx context.Context, img *Image, line string, h Handoff) error {
	kf, ok1 := img.Kernel.(*os.File)
	inf, ok2 := img.Initrd.(*os.File)
	if !ok1 || !ok2 {
		return errors.New("kexec needs file-backed kernel and initrd")
	}
	if files := handoffFiles(h); len(files) > 0 {
		// The slot gets them as keel/* in its initramfs; stage 2 copies
		// them to /run/keel.
		if err := kexec.AppendFiles(inf, files...); err != nil {
			return fmt.Errorf("handing the event log, trusted keys and trial id to the slot: %w", err)
		}
	}
	if err := kexec.Load(kf, inf, line); err != nil {
		return err
	}
	sysinit.ArmWatchdog(k.board, k.logf) // again: the slot has the whole timeout
	if h.Separator != nil {
		if err := h.Separator(); err != nil {
			_ = kexec.Unload()
			return err
		}
	}
	k.logf("KEEL-KEXEC slot %s", img.Slot)
	return kexec.Exec()
}
