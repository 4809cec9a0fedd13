//go:build linux

package stage1

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/initramfs/kexec"
)

// endsFixture lays out the sources as a kernel shows them, in folders:
// the watchdog's bootstatus, the pstore file system holding the records
// efi_pstore wrote for a sysrq panic in QEMU (hw/pstore's testdata), and
// x86's boot parameters (sysinit's testdata).
func endsFixture(t *testing.T, status string, crash bool, bootParams string) deviceEnds {
	t.Helper()
	dir := t.TempDir()
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		t.Fatal(err)
	}
	d := deviceEnds{board: b, sysfsWatchdog: filepath.Join(dir, "class"), watchdogDev: "/dev/watchdog0",
		pstoreDir: filepath.Join(dir, "pstore"), bootParams: filepath.Join("..", "sysinit", "testdata", bootParams),
		mountPstore: func(string) error { return nil }}
	for _, p := range []string{filepath.Join(d.sysfsWatchdog, "watchdog0"), d.pstoreDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.sysfsWatchdog, "watchdog0", "bootstatus"), []byte(status), 0o444); err != nil {
		t.Fatal(err)
	}
	if crash {
		src := filepath.Join("..", "..", "hw", "pstore", "testdata", "efi-sysrq")
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d.pstoreDir, e.Name()), data, 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// TestDeviceEnds: what keel-init reads of each source, and that it
// clears the pstore records it read.
func TestDeviceEnds(t *testing.T) {
	logf := func(string, ...any) {}
	d := endsFixture(t, "32\n", true, "boot_params-ovmf")
	ev, lines := d.Read(logf)
	if !ev.WatchdogRead || !ev.Watchdog || ev.Kexec || ev.Panic != "sysrq: Trigger a crash" || len(lines) == 0 {
		t.Errorf("evidence %+v, %d lines", ev, len(lines))
	}
	if left, _ := os.ReadDir(d.pstoreDir); len(left) != 0 {
		t.Errorf("%d pstore records left after reading them", len(left))
	}
	// Read again: nothing left to count twice.
	if ev, lines := d.Read(logf); ev.Panic != "" || lines != nil {
		t.Errorf("a second read: %+v, %q", ev, lines)
	}

	d = endsFixture(t, "0\n", false, "boot_params-kexec")
	if ev, _ := d.Read(logf); !ev.WatchdogRead || ev.Watchdog || !ev.Kexec || ev.Panic != "" {
		t.Errorf("a kexec: %+v", ev)
	}

	// A watchdog without the attribute, a board that does not say its
	// watchdog reports it: no boot status read (a hang and a power cut
	// look alike).
	d = endsFixture(t, "32\n", false, "boot_params-ovmf")
	os.Remove(filepath.Join(d.sysfsWatchdog, "watchdog0", "bootstatus"))
	if ev, _ := d.Read(logf); ev.WatchdogRead || ev.Watchdog {
		t.Errorf("no bootstatus attribute: %+v", ev)
	}
	d = endsFixture(t, "32\n", false, "boot_params-ovmf")
	d.board.Watchdog.BootStatus = false
	if ev, _ := d.Read(logf); ev.WatchdogRead || ev.Watchdog {
		t.Errorf("a board whose watchdog does not report its resets: %+v", ev)
	}
	// arm64: no boot parameters, no kexec.
	d = endsFixture(t, "0\n", false, "none")
	if ev, _ := d.Read(logf); ev.Kexec || !ev.WatchdogRead {
		t.Errorf("no boot parameters: %+v", ev)
	}
}

// TestDeviceEndsCannotClear: a crash record keel-init cannot remove is
// shown (its lines) but not counted: it would be counted at every boot.
// The pstore folder is a tmpfs remounted read-only (root only: the unit
// tests outside -short run as root).
func TestDeviceEndsCannotClear(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs: as root, outside -short")
	}
	d := endsFixture(t, "0\n", false, "boot_params-ovmf")
	if err := unix.Mount("tmpfs", d.pstoreDir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs (run as root): %v", err)
	}
	defer unix.Unmount(d.pstoreDir, 0)
	if err := os.WriteFile(filepath.Join(d.pstoreDir, "dmesg-efi-1"), []byte("Panic#1 Part1\n<0>[ 1.0] Kernel panic - not syncing: x\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", d.pstoreDir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	var log []string
	ev, lines := d.Read(func(f string, a ...any) { log = append(log, f) })
	if ev.Panic != "" || len(lines) != 1 || !strings.Contains(lines[0], "Kernel panic") {
		t.Errorf("an uncleared crash: %+v, %q", ev, lines)
	}
	if !strings.Contains(strings.Join(log, "\n"), "not counted") {
		t.Errorf("the console does not say the crash is not counted: %q", log)
	}
}

// TestHandoffCrash: a crash's lines go to the slot as
// keel/last-crash.txt, which stage 2 copies to /run/keel/last-crash.txt.
func TestHandoffCrash(t *testing.T) {
	crash := []byte("<0>[ 3.6] Kernel panic - not syncing: sysrq triggered crash\n")
	var found *kexec.File
	for _, f := range handoffFiles(Handoff{Crash: crash}) {
		if f.Name == "keel/last-crash.txt" {
			found = &f
		}
	}
	if found == nil || found.Perm != 0o444 || !bytes.Equal(found.Data, crash) {
		t.Errorf("handoff files without keel/last-crash.txt: %+v", found)
	}
	for _, f := range handoffFiles(Handoff{}) {
		if f.Name == "keel/last-crash.txt" {
			t.Errorf("a boot after no crash hands over %s", f.Name)
		}
	}
}
