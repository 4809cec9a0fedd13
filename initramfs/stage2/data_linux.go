//go:build linux

package stage2

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/datareport"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/hw/blockdev"
	"github.com/keelboot/keel/initramfs/dataarea"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// DataMount is where stage 2 mounts the data partition (ext4) in the
// slot's root, when the root has that folder: the OS finds the booted
// slot's area at DataMount/slot and the shared area at DataMount/shared
// (package initramfs/dataarea).
const DataMount = "/data"

// mountData mounts the data partition at DataMount in the new root and
// the booted slot's area on DataMount/slot, snapshotting the other slot's
// area on a trial's first boot (dataarea.Prepare). A root without
// DataMount leaves the data partition to the OS. Nothing on the data
// partition fails a boot but a trial's whose area cannot be made
// (dataFatal): a data partition that cannot be found or mounted, or
// areas that cannot be prepared, are a warning, and the OS boots without
// DataMount. What stage 2 found, ignored and set aside there is on the
// console and in the report it leaves the OS (layout.DataReportPath,
// package format/datareport; report is where, "" none). A walk over the
// partition pets the watchdog wd (nil: none) as it goes.
func mountData(disk *blockdev.Disk, slots []string, h cmdline.Handoff, wd *sysinit.Watchdog, report string, logf Logf) error {
	rep := datareport.Report{Format: datareport.Format, Slot: h.Slot, Mode: h.Mode}
	defer func() { writeReport(report, rep, logf) }()
	without := func(format string, args ...any) {
		rep.Unavailable = datareport.Printable(fmt.Sprintf(format, args...))
		logf("warning: data: %s: the OS boots without %s", rep.Unavailable, DataMount)
	}
	dir := filepath.Join(newRoot, DataMount)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		rep.Unavailable = fmt.Sprintf("the slot's root has no folder %s: the data partition is left to the OS", DataMount)
		logf("data: %s", rep.Unavailable)
		return nil
	}
	dev, err := disk.Partition(layout.Data)
	if err != nil {
		without("%v", err)
		return nil
	}
	// errors=remount-ro whatever the superblock says: the OS can set
	// errors=panic there (tune2fs -e), and a corrupted file system would
	// then panic every boot's stage 2, the good slot's too.
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "errors=remount-ro"); err != nil {
		without("mount %s (%s) as ext4 on %s: %v (a factory reset, `keel recover --factory-reset`, re-creates it)", layout.Data, dev, DataMount, err)
		return nil
	}
	trialID := ""
	if h.Mode == dataarea.ModeTrial {
		trialID = readTrialID(layout.HandoffDir, logf)
	}
	s := dataState(h, slots, trialID)
	res, err := dataarea.Prepare(dir, s, dataarea.Options{Logf: logf, Progress: func() {
		if err := wd.Pet(); err != nil {
			logf("warning: data: petting the watchdog: %v", err)
		}
	}})
	rep = res.Report
	if err == nil && res.Area != "" {
		if err = dataarea.Bind(dir, h.Slot); err != nil {
			err = fmt.Errorf("data: bind-mounting slot %s's area on %s: %w", h.Slot, filepath.Join(DataMount, dataarea.MountDir), err)
		}
	}
	if err != nil || res.Area == "" {
		if uerr := unix.Unmount(dir, unix.MNT_DETACH); uerr != nil {
			logf("warning: data: unmounting %s: %v", dir, uerr)
		}
		if err != nil && dataFatal(h.Mode) {
			return fmt.Errorf("%w: the trial of slot %s cannot have its data area (%s); this boot fails, its try is used, and when its tries run out the fallback boots the good slot with its data as it was", err, h.Slot, res.Plan.Action)
		}
		why := rep.Unavailable
		if err != nil {
			why = err.Error()
		}
		without("%s", why)
		return nil
	}
	rep.Mounted = true
	logf("data: %s on %s, slot %s's area on %s, the shared area on %s", layout.Data, DataMount, h.Slot,
		filepath.Join(DataMount, dataarea.MountDir), filepath.Join(DataMount, dataarea.SharedDir))
	return nil
}

// writeReport leaves rep for the OS at path (a failure is a warning: the
// OS's keel status then says it has no report).
func writeReport(path string, rep datareport.Report, logf Logf) {
	if path == "" {
		return
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			err = os.WriteFile(path, append(b, '\n'), 0o644)
		}
	}
	if err != nil {
		logf("warning: data: the report for the OS (%s): %v", path, err)
	}
}

// dataFatal says whether a failure to prepare the data areas fails the
// boot: only on a trial. A trial that cannot have its area (the snapshot
// of the old slot's, most often: no space) must not be committed, or the
// new version would run on from no data; its try is used, and the
// fallback boots the old slot with its area as it was. A normal or
// fallback boot goes on without the data partition, as before keel had
// data areas: the OS's health check decides.
func dataFatal(mode string) bool {
	return mode == dataarea.ModeTrial
}

// dataState is what stage 2 knows of the boot for the data areas: the
// booted slot and mode, the trial's id (trialID, from keel-init's
// hand-off: readTrialID) or else the slot's root hash (dataarea.InstallID
// says which names the trial's area), and the slot a trial copies from.
func dataState(h cmdline.Handoff, slots []string, trialID string) dataarea.State {
	return dataarea.State{Slot: h.Slot, Mode: h.Mode, Install: dataarea.InstallID(h.Mode, trialID, rootHash(h)),
		Source: otherSlot(slots, h.Slot)}
}

// rootHash is the root hash of the booted slot's dm-verity root (from the
// signed manifest, on the measured command line); "" without one.
func rootHash(h cmdline.Handoff) string {
	if h.Verity == nil {
		return ""
	}
	return h.Verity.RootHash
}

// maxTrialIDFile bounds what readTrialID reads: an id and a newline.
const maxTrialIDFile = 128

// readTrialID reads the trial's id keel-init handed over in the initrd
// (dir/trial-id: layout.TrialIDPath's name under layout.HandoffDir): a
// regular file, not through a symbolic link, of at most maxTrialIDFile
// bytes, holding an id (bootenv.ValidID) and a newline. Anything else
// is "" with a warning, and so is no file (a keel-init older than trial
// ids): the trial's area is then named by its root hash. Like the record
// it comes from, the id is unauthenticated: it decides only whether the
// trial's area is copied.
func readTrialID(dir string, logf Logf) string {
	p := filepath.Join(dir, path.Base(layout.TrialIDPath))
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		logf("data: keel-init handed over no trial id (a keel-init older than trial ids): the trial's area is named by its root hash")
		return ""
	}
	if err != nil {
		logf("warning: data: the trial id keel-init handed over: open %s: %v: the trial's area is named by its root hash", p, err)
		return ""
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		logf("warning: data: %s is not a regular file: the trial's area is named by its root hash", p)
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTrialIDFile+1))
	id := strings.TrimSuffix(string(b), "\n")
	if err != nil || len(b) > maxTrialIDFile || !bootenv.ValidID(id) {
		logf("warning: data: %s does not hold a trial id (%d bytes, %v): the trial's area is named by its root hash", p, len(b), err)
		return ""
	}
	return id
}

// otherSlot is the slot a trial's area is copied from: the board's other
// slot when it has exactly two ("" otherwise: no snapshot).
func otherSlot(slots []string, booted string) string {
	if len(slots) != 2 {
		return ""
	}
	switch booted {
	case slots[0]:
		return slots[1]
	case slots[1]:
		return slots[0]
	}
	return ""
}
