//go:build linux

package stage1

import (
	"fmt"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/hw/pstore"
	"github.com/keelboot/keel/hw/watchdog"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// deviceEnds reads the board's sources of how the last boot ended
// (EndSources): the watchdog's boot status when the board says its
// driver reports it, the pstore file system when the board has a
// backend, x86's boot parameters.
type deviceEnds struct {
	board boards.Board
	// Where the sources are (the real paths on a device; tests point
	// them at folders).
	sysfsWatchdog, watchdogDev, pstoreDir, bootParams string
	mountPstore                                       func(dir string) error
}

var _ EndSources = deviceEnds{}

func newDeviceEnds(b boards.Board) deviceEnds {
	return deviceEnds{board: b, sysfsWatchdog: watchdog.SysfsDir, watchdogDev: watchdog.Device,
		pstoreDir: pstore.Dir, bootParams: sysinit.BootParamsPath, mountPstore: pstore.Mount}
}

func (d deviceEnds) Read(logf Logf) (bootenv.Evidence, []string) {
	var ev bootenv.Evidence
	var said []string
	if w := d.board.Watchdog; w.Module != "" && w.BootStatus {
		v, err := watchdog.BootStatus(d.sysfsWatchdog, d.watchdogDev)
		if err != nil {
			logf("warning: %v: a power loss cannot be told from a hang this boot", err)
		} else {
			ev.WatchdogRead, ev.Watchdog = true, v&watchdog.CardReset != 0
			said = append(said, fmt.Sprintf("watchdog boot status %#x", v))
		}
	}
	var lines []string
	if d.board.Pstore != boards.PstoreNone {
		ev.Panic, lines = d.readPstore(logf)
		said = append(said, "pstore "+string(d.board.Pstore))
	}
	switch k, err := sysinit.StartedByKexec(d.bootParams); {
	case err == nil:
		ev.Kexec = k
		said = append(said, fmt.Sprintf("started by kexec: %v", k))
	case !sysinit.NoBootParams(err):
		logf("warning: whether kexec started this kernel: %v", err)
	}
	logf("how the last boot ended, read from: %s", strings.Join(said, ", "))
	return ev, lines
}

// readPstore mounts the pstore file system, reads its dmesg records,
// parses a crash and clears them: the crash's first line for the
// evidence ("" when there is none, or when the records could not be
// cleared: they would be counted again at every boot) and its first
// lines for the slot's OS.
func (d deviceEnds) readPstore(logf Logf) (string, []string) {
	if err := d.mountPstore(d.pstoreDir); err != nil {
		logf("warning: %v: a panic of the last boot cannot be seen", err)
		return "", nil
	}
	recs, err := pstore.Read(d.pstoreDir)
	if err != nil {
		logf("warning: %v", err)
	}
	if len(recs) == 0 {
		return "", nil
	}
	c, crashed := pstore.Parse(recs)
	if crashed {
		logf("KEEL-CRASH the last boot's kernel: %s (%s, %d records in pstore)", c.First, c.Reason, len(recs))
	}
	if err := pstore.Clear(d.pstoreDir, recs); err != nil {
		logf("warning: %v: the crash is shown, not counted (it would be counted again at every boot)", err)
		return "", c.Lines
	}
	if !crashed {
		logf("removed %d pstore records of the last boot that hold no crash", len(recs))
		return "", nil
	}
	return c.First, c.Lines
}
