//go:build linux

package blockdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/gpt"
)

// board is the partition set of the qemu-x86_64-uefi board.
var board = []string{"esp", "slot-a", "root-a", "slot-b", "root-b", "recovery", "data"}

// fakeSys is a sysfs tree laid out as the kernel does: the disk's device
// directory holds its partitions' directories, and class/block links to
// both.
type fakeSys struct {
	t          *testing.T
	sysfs, dev string
}

func newFakeSys(t *testing.T) *fakeSys {
	root := t.TempDir()
	s := &fakeSys{t: t, sysfs: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	for _, d := range []string{filepath.Join(s.sysfs, "class", "block"), s.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fakePart is one partition: its GPT name and, optionally, the PARTUUID
// its uevent carries (Linux 6.13+).
type fakePart struct{ name, uuid string }

// addDisk adds disk (under the bus path devPath) with parts numbered from 1.
func (s *fakeSys) addDisk(devPath, disk, sep string, parts ...fakePart) {
	if err := s.prepareDisk(devPath, disk, sep, parts...)(); err != nil {
		s.t.Fatal(err)
	}
}

// prepareDisk writes the disk's device directories and returns what makes
// it appear: its class/block links (safe to call from another goroutine).
func (s *fakeSys) prepareDisk(devPath, disk, sep string, parts ...fakePart) (appear func() error) {
	var links [][2]string // name, target
	diskDir := filepath.Join(s.sysfs, "devices", devPath, "block", disk)
	s.write(filepath.Join(diskDir, "uevent"), fmt.Sprintf("MAJOR=8\nMINOR=0\nDEVNAME=%s\nDEVTYPE=disk\nDISKSEQ=9\n", disk))
	links = append(links, [2]string{disk, diskDir})
	for i, p := range parts {
		dev := fmt.Sprintf("%s%s%d", disk, sep, i+1)
		ev := fmt.Sprintf("MAJOR=8\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\nPARTNAME=%s\n", i+1, dev, i+1, p.name)
		if p.uuid != "" {
			ev += "PARTUUID=" + p.uuid + "\n"
		}
		partDir := filepath.Join(diskDir, dev)
		s.write(filepath.Join(partDir, "uevent"), ev)
		links = append(links, [2]string{dev, partDir})
	}
	return func() error {
		for _, l := range links {
			if err := s.link(l[0], l[1]); err != nil {
				return err
			}
		}
		return nil
	}
}

func (s *fakeSys) write(path, content string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// link makes class/block/name the relative symlink the kernel makes.
func (s *fakeSys) link(name, target string) error {
	classDir := filepath.Join(s.sysfs, "class", "block")
	rel, err := filepath.Rel(classDir, target)
	if err != nil {
		return err
	}
	return os.Symlink(rel, filepath.Join(classDir, name))
}

func named(names ...string) []fakePart {
	p := make([]fakePart, len(names))
	for i, n := range names {
		p[i] = fakePart{name: n}
	}
	return p
}

// withUUIDs gives the parts the PARTUUIDs prefix-1, prefix-2, ... as
// GUIDs.
func withUUIDs(prefix string, parts []fakePart) []fakePart {
	out := make([]fakePart, len(parts))
	for i, p := range parts {
		out[i] = fakePart{name: p.name, uuid: fmt.Sprintf("%s-0000-4000-8000-%012d", prefix, i+1)}
	}
	return out
}

type warnings []string

func (w *warnings) warnf(format string, args ...any) { *w = append(*w, fmt.Sprintf(format, args...)) }

func (s *fakeSys) open(t *testing.T, timeout time.Duration, hint string) (*Disk, warnings, error) {
	t.Helper()
	var w warnings
	d, err := openDisk(s.sysfs, s.dev, board, timeout, Options{BootPartUUID: hint, Warnf: w.warnf})
	return d, w, err
}

// TestOnlyTheBootDisk: a USB stick with slot-a, recovery and data
// partitions is never used, and the console hears of it. (The old
// FindPartition scanned every disk: it returned the stick's recovery
// partition, /dev/sda2, since sda sorts before vda.)
func TestOnlyTheBootDisk(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host0/target0:0:0/0:0:0:0", "sda", "", named("slot-a", "recovery", "data")...)
	s.addDisk("pci0000:00/0000:00:04.0/virtio1", "vda", "", named(board...)...)
	d, w, err := s.open(t, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "vda" || d.Path() != filepath.Join(s.dev, "vda") {
		t.Errorf("boot disk %s (%s), want vda", d.Name(), d.Path())
	}
	for name, want := range map[string]string{"esp": "vda1", "slot-a": "vda2", "recovery": "vda6", "data": "vda7"} {
		if got, err := d.Partition(name); err != nil || got != filepath.Join(s.dev, want) {
			t.Errorf("Partition(%q) = %q, %v; want %s", name, got, err, want)
		}
	}
	if len(w) != 1 || !strings.Contains(w[0], "/dev/sda also has partitions named slot-a, recovery, data") || !strings.Contains(w[0], "/dev/vda") {
		t.Errorf("warnings %q, want one naming /dev/sda", w)
	}
	if _, err := d.Partition("bootstate"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Partition(bootstate) on a disk without one: %v, want fs.ErrNotExist", err)
	}
}

// TestPartitionNotAskedFor: Partition finds a partition OpenDisk was not
// given, on the boot disk only.
func TestPartitionNotAskedFor(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("platform/nvme", "nvme0n1", "p", named(append([]string{"bootstate"}, board...)...)...)
	s.addDisk("usb", "sdb", "", named("scratch")...)
	d, _, err := s.open(t, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.Partition("bootstate"); err != nil || got != filepath.Join(s.dev, "nvme0n1p1") {
		t.Errorf("Partition(bootstate) = %q, %v", got, err)
	}
	if _, err := d.Partition("scratch"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Partition(scratch), a name only another disk has: %v, want fs.ErrNotExist", err)
	}
}

// TestTwoCompleteDisksRefused: a clone of the image on a stick makes the
// boot disk ambiguous without the firmware's word: refused, not guessed.
func TestTwoCompleteDisksRefused(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("virtio1", "vda", "", named(board...)...)
	s.addDisk("usb", "sda", "", named(board...)...)
	_, _, err := s.open(t, time.Second, "")
	if err == nil || !strings.Contains(err.Error(), "/dev/sda and /dev/vda") || !strings.Contains(err.Error(), "refusing to guess") {
		t.Fatalf("err = %v, want an ambiguity naming both disks", err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ambiguity wraps fs.ErrNotExist: %v", err)
	}
}

// TestNoCompleteDisk: partitions spread over two disks are not a boot
// disk; the error says what each lacks.
func TestNoCompleteDisk(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("virtio1", "vda", "", named("esp", "slot-a", "root-a", "slot-b", "root-b")...)
	s.addDisk("usb", "sda", "", named("recovery", "data")...)
	start := time.Now()
	_, _, err := s.open(t, 200*time.Millisecond, "")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/dev/vda has no recovery, data") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Errorf("gave up before the timeout")
	}
	s2 := newFakeSys(t)
	if _, _, err := s2.open(t, 0, ""); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "driver loaded") {
		t.Errorf("no disks at all: %v", err)
	}
}

// TestWaitsForTheDisk: the driver probes after OpenDisk starts looking.
func TestWaitsForTheDisk(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("usb", "sda", "", named("data")...)
	appear := s.prepareDisk("virtio1", "vda", "", named(board...)...)
	done := make(chan error)
	go func() {
		time.Sleep(150 * time.Millisecond)
		done <- appear()
	}()
	d, w, err := s.open(t, 5*time.Second, "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil || d.Name() != "vda" {
		t.Fatalf("OpenDisk = %v, %v", d, err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "/dev/sda") {
		t.Errorf("warnings %q", w)
	}
}

// TestDuplicateOnBootDisk: two partitions with one name on the boot disk
// are an error.
func TestDuplicateOnBootDisk(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("virtio1", "vda", "", named(append(board, "recovery")...)...)
	if _, _, err := s.open(t, time.Second, ""); !errors.Is(err, gpt.ErrDuplicateName) {
		t.Fatalf("err = %v, want gpt.ErrDuplicateName", err)
	}
}

// TestFirmwareHint: with LoaderDevicePartUUID the boot disk is the one
// holding that partition, even when a clone on a stick has the whole
// set; the stick is named on the console.
func TestFirmwareHint(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("usb", "sda", "", withUUIDs("aaaaaaaa", named(board...))...)
	s.addDisk("virtio1", "vda", "", withUUIDs("bbbbbbbb", named(board...))...)
	// The stub writes the GUID in upper case, the kernel in lower case.
	d, w, err := s.open(t, time.Second, "BBBBBBBB-0000-4000-8000-000000000001")
	if err != nil || d.Name() != "vda" {
		t.Fatalf("OpenDisk = %v, %v", d, err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "/dev/sda also has") {
		t.Errorf("warnings %q", w)
	}
	// Identical clones (the same GUIDs): refused.
	s2 := newFakeSys(t)
	s2.addDisk("usb", "sda", "", withUUIDs("bbbbbbbb", named(board...))...)
	s2.addDisk("virtio1", "vda", "", withUUIDs("bbbbbbbb", named(board...))...)
	if _, _, err := s2.open(t, time.Second, "bbbbbbbb-0000-4000-8000-000000000001"); err == nil || !strings.Contains(err.Error(), "refusing to guess") {
		t.Errorf("clones with the firmware's partition on both: %v", err)
	}
	// The firmware's disk lacks a partition: an error, the stick that has
	// it is not used.
	s3 := newFakeSys(t)
	s3.addDisk("usb", "sda", "", withUUIDs("aaaaaaaa", named(board...))...)
	s3.addDisk("virtio1", "vda", "", withUUIDs("bbbbbbbb", named(board[:6]...))...)
	if _, _, err := s3.open(t, 100*time.Millisecond, "bbbbbbbb-0000-4000-8000-000000000001"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/dev/vda") || !strings.Contains(err.Error(), "named data") {
		t.Errorf("boot disk without data: %v", err)
	}
	// A hint no disk holds: after the timeout, the partition set decides.
	d, w, err = s.open(t, 100*time.Millisecond, "cccccccc-0000-4000-8000-000000000001")
	if err == nil || !strings.Contains(err.Error(), "refusing to guess") {
		t.Errorf("unmatched hint with two complete disks: %v, %v", d, err)
	}
	if len(w) == 0 || !strings.Contains(w[0], "no disk with keel's partitions holds") {
		t.Errorf("unmatched hint: warnings %q", w)
	}
}

// TestFirmwareHintFromGPT: kernels before 6.13 have no PARTUUID in the
// uevent: the GUIDs come from the disk's GPT.
func TestFirmwareHintFromGPT(t *testing.T) {
	s := newFakeSys(t)
	var espGUID gpt.GUID
	for _, disk := range []string{"sda", "vda"} {
		s.addDisk("bus-"+disk, disk, "", named(board...)...)
		specs := make([]gpt.Spec, len(board))
		for i, n := range board {
			g, err := gpt.NewGUID(nil)
			if err != nil {
				t.Fatal(err)
			}
			specs[i] = gpt.Spec{Name: n, Type: gpt.TypeLinuxGeneric(), Size: 1 << 20, UUID: g}
		}
		f, err := os.Create(filepath.Join(s.dev, disk))
		if err != nil {
			t.Fatal(err)
		}
		const size = 16 << 20
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if _, err := gpt.Create(f, size, specs); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if disk == "vda" {
			espGUID = specs[0].UUID
		}
	}
	d, w, err := s.open(t, time.Second, espGUID.String())
	if err != nil || d.Name() != "vda" {
		t.Fatalf("OpenDisk = %v, %v", d, err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "/dev/sda") {
		t.Errorf("warnings %q", w)
	}
}

func TestLoaderDevicePartUUID(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoaderDevicePartUUID(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no variable: %v", err)
	}
	// efivarfs: 4 bytes of attributes, then the UTF-16LE string with its
	// NUL, as systemd's stub writes it.
	const want = "0F3C5A2E-9B1D-4C7E-8A6F-112233445566"
	b := []byte{6, 0, 0, 0}
	for _, c := range strings.ToLower(want) + "\x00" {
		b = append(b, byte(c), 0)
	}
	p := filepath.Join(dir, "LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := LoaderDevicePartUUID(dir); err != nil || got != want {
		t.Errorf("LoaderDevicePartUUID = %q, %v; want %s", got, err, want)
	}
	if err := os.WriteFile(p, append(b[:10:10], 0, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoaderDevicePartUUID(dir); err == nil {
		t.Error("a truncated GUID was accepted")
	}
}

// TestFirmwareHintOutsideNames: the firmware names the ESP, and the caller
// (keel install in the OS) looks up only slot partitions: the disk holding
// the ESP is still the boot disk, found at once (not after the timeout).
func TestFirmwareHintOutsideNames(t *testing.T) {
	s := newFakeSys(t)
	s.addDisk("usb", "sda", "", withUUIDs("aaaaaaaa", named(board...))...)
	s.addDisk("virtio1", "vda", "", withUUIDs("bbbbbbbb", named(board...))...)
	start := time.Now()
	var w warnings
	d, err := openDisk(s.sysfs, s.dev, board[1:3], 5*time.Second, Options{BootPartUUID: "bbbbbbbb-0000-4000-8000-000000000001", Warnf: w.warnf})
	if err != nil || d.Name() != "vda" {
		t.Fatalf("OpenDisk = %v, %v", d, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("found after %v: it waited for the timeout", el)
	}
}

// TestBootDiskWithoutData: keel finds the boot disk by every partition of
// the board's layout but data (boards.Board.DiskNames), so a disk whose
// data partition is gone still boots its slots (issue 19: before, keel-
// init tried both slots and stopped); the data partition's lookup then
// says it is missing.
func TestBootDiskWithoutData(t *testing.T) {
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		t.Fatal(err)
	}
	names := b.DiskNames()
	for _, hint := range []string{"", "BBBBBBBB-0000-4000-8000-000000000001"} {
		s := newFakeSys(t)
		s.addDisk("virtio1", "vda", "", withUUIDs("bbbbbbbb", named(names...))...)
		d, err := openDisk(s.sysfs, s.dev, names, 100*time.Millisecond, Options{BootPartUUID: hint})
		if err != nil || d.Name() != "vda" {
			t.Fatalf("hint %q: OpenDisk = %v, %v", hint, d, err)
		}
		if _, err := d.Partition("data"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `no GPT partition named "data"`) {
			t.Errorf("hint %q: Partition(data) = %v", hint, err)
		}
		// The whole layout, as before: no boot disk.
		if _, err := openDisk(s.sysfs, s.dev, board, 100*time.Millisecond, Options{BootPartUUID: hint}); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("hint %q: with data required: %v", hint, err)
		}
	}
}
