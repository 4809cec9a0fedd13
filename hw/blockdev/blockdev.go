//go:build linux

// Package blockdev finds block devices the way keel-init needs them: the
// disk keel booted from, and GPT partitions by name on that disk only,
// through the kernel's uevents in sysfs (no udev in an initramfs).
//
// A partition name alone does not pick a device: a USB stick with a
// partition named slot-a, recovery or data must never become the target of
// a reinstall or a wipe. OpenDisk pins the boot disk first and every
// lookup after that stays on it:
//
//   - on UEFI, when the firmware says which partition it loaded keel from
//     (the LoaderDevicePartUUID variable systemd's stub sets), the boot
//     disk is the disk that holds that partition (and the names);
//   - otherwise the boot disk is the one disk that holds every partition
//     named: keel names every partition of the board's layout but data
//     (boards.Board.DiskNames), which belongs to the OS and must not stop a
//     boot when it is gone; a lookup of it (Disk.Partition) then says so;
//
// other disks carrying any of those names are reported (Options.Warnf) and
// never used; two disks that both qualify are an error, not a guess.
package blockdev

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/uefi"
)

// Options tune OpenDisk.
type Options struct {
	// BootPartUUID is the unique partition GUID of the partition the
	// firmware loaded keel from (LoaderDevicePartUUID), "" when the
	// firmware did not say. The disk that holds it is the boot disk.
	BootPartUUID string
	// Warnf, if set, receives the warnings for the console: other disks
	// that carry some of the names, a firmware hint that matched nothing.
	Warnf func(format string, args ...any)
}

// Disk is the disk keel booted from. Its partitions are looked up on it
// and nowhere else.
type Disk struct {
	name  string // kernel name: vda, nvme0n1, mmcblk0
	sysfs string
	dev   string            // the /dev directory
	parts map[string][]part // by GPT name
}

// Name returns the disk's kernel name (vda, nvme0n1, mmcblk0).
func (d *Disk) Name() string { return d.name }

// Path returns the disk's device node.
func (d *Disk) Path() string { return filepath.Join(d.dev, d.name) }

// String is the disk's device node.
func (d *Disk) String() string { return d.Path() }

// Partition returns the device node of the partition named name on the
// disk. The error wraps fs.ErrNotExist when the disk has none, and
// gpt.ErrDuplicateName when it has two.
func (d *Disk) Partition(name string) (string, error) {
	ps := d.parts[name]
	if len(ps) == 0 {
		// A partition OpenDisk was not asked for may have appeared since:
		// look again, on this disk only.
		if disks, err := scan(d.sysfs); err == nil {
			if now := disks[d.name]; now != nil {
				ps = now.parts[name]
			}
		}
	}
	switch len(ps) {
	case 0:
		return "", fmt.Errorf("the boot disk %s has no GPT partition named %q: %w", d.Path(), name, fs.ErrNotExist)
	case 1:
		return filepath.Join(d.dev, ps[0].dev), nil
	}
	return "", fmt.Errorf("the boot disk %s has %d partitions named %q (%s): %w", d.Path(), len(ps), name, partDevs(ps), gpt.ErrDuplicateName)
}

// OpenRW opens the partition named name for reading and writing and
// returns it with its size.
func (d *Disk) OpenRW(name string) (*os.File, int64, error) {
	dev, err := d.Partition(name)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// OpenDisk finds the disk keel booted from: the disk that holds the
// partition o.BootPartUUID names when the firmware said, else the one
// disk that has a GPT partition for every one of names (the board's
// layout). It waits up to timeout for the disk to appear (block drivers
// probe asynchronously). Other disks with any of the names are passed to
// o.Warnf; two disks that both qualify are an error. When no disk
// qualifies in time the error wraps fs.ErrNotExist.
func OpenDisk(names []string, timeout time.Duration, o Options) (*Disk, error) {
	return openDisk("/sys", "/dev", names, timeout, o)
}

// openDisk is OpenDisk with the sysfs and /dev roots as parameters.
func openDisk(sysfs, dev string, names []string, timeout time.Duration, o Options) (*Disk, error) {
	if len(names) == 0 {
		return nil, errors.New("blockdev: no partition names to find the boot disk by")
	}
	warnf := o.Warnf
	if warnf == nil {
		warnf = func(string, ...any) {}
	}
	var hint *gpt.GUID
	if o.BootPartUUID != "" {
		g, err := gpt.ParseGUID(strings.TrimSpace(o.BootPartUUID))
		if err != nil {
			warnf("the firmware's boot partition %q is not a GUID (%v): choosing the boot disk by its partitions", o.BootPartUUID, err)
		} else {
			hint = &g
		}
	}
	gpts := map[string]map[int]gpt.GUID{} // partition GUIDs read from each disk's GPT, by PARTN
	deadline := time.Now().Add(timeout)
	for {
		last := !time.Now().Before(deadline)
		disks, err := scan(sysfs)
		if err != nil {
			return nil, err
		}
		if hint != nil {
			fillUUIDs(dev, disks, gpts)
		}
		c := choose(disks, names, hint, last)
		if c.err != nil || c.disk != nil || last {
			for _, w := range c.warnings {
				warnf("%s", w)
			}
			if c.err != nil {
				return nil, c.err
			}
			if c.disk == nil {
				// choose gives up only when told it is the last look.
				return nil, fmt.Errorf("blockdev: no boot disk: %w", fs.ErrNotExist)
			}
			return &Disk{name: c.disk.name, sysfs: sysfs, dev: dev, parts: c.disk.parts}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// part is one GPT partition as sysfs shows it.
type part struct {
	dev  string // kernel name (DEVNAME): vda1
	num  int    // PARTN
	uuid string // PARTUUID (uevent since Linux 6.13, else read from the GPT); "" unknown
}

// disk is one whole disk with named partitions.
type disk struct {
	name  string
	parts map[string][]part
}

// has reports which of names the disk has.
func (d *disk) has(names []string) (have, missing []string) {
	for _, n := range names {
		if len(d.parts[n]) > 0 {
			have = append(have, n)
		} else {
			missing = append(missing, n)
		}
	}
	return have, missing
}

// scan reads every partition with a GPT name under sysfs/class/block and
// groups them by their disk: the parent directory of the partition's
// device directory (/sys/class/block/vda1 -> ../../devices/.../block/vda/vda1).
func scan(sysfs string) (map[string]*disk, error) {
	classDir := filepath.Join(sysfs, "class", "block")
	entries, err := os.ReadDir(classDir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*disk{}, nil // no block devices yet
	}
	if err != nil {
		return nil, fmt.Errorf("blockdev: %w", err)
	}
	disks := map[string]*disk{}
	for _, e := range entries {
		ev := uevent(filepath.Join(classDir, e.Name(), "uevent"))
		name, ok := ev["PARTNAME"]
		if !ok || name == "" || ev["DEVNAME"] == "" {
			continue // not a partition, or one without a GPT name
		}
		real, err := filepath.EvalSymlinks(filepath.Join(classDir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		parent := filepath.Dir(real)
		dname := uevent(filepath.Join(parent, "uevent"))["DEVNAME"]
		if dname == "" {
			dname = filepath.Base(parent)
		}
		d := disks[dname]
		if d == nil {
			d = &disk{name: dname, parts: map[string][]part{}}
			disks[dname] = d
		}
		num, _ := strconv.Atoi(ev["PARTN"])
		d.parts[name] = append(d.parts[name], part{dev: ev["DEVNAME"], num: num, uuid: ev["PARTUUID"]})
	}
	return disks, nil
}

// uevent reads a sysfs uevent file's KEY=value lines (nil when unreadable).
func uevent(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// fillUUIDs sets the partition GUID of the partitions whose uevent
// did not carry PARTUUID (kernels before 6.13), reading each such disk's
// GPT once (cache keeps what was read).
func fillUUIDs(dev string, disks map[string]*disk, cache map[string]map[int]gpt.GUID) {
	for _, d := range disks {
		for n := range d.parts {
			for i, p := range d.parts[n] {
				if p.uuid != "" || p.num <= 0 {
					continue
				}
				ids, ok := cache[d.name]
				if !ok {
					ids = readGUIDs(filepath.Join(dev, d.name))
					if ids == nil {
						continue // unreadable now: try again at the next look
					}
					cache[d.name] = ids
				}
				if g, ok := ids[p.num]; ok {
					d.parts[n][i].uuid = g.String()
				}
			}
		}
	}
}

// readGUIDs returns the unique partition GUIDs of the disk's GPT by
// partition number, nil when it cannot be read.
func readGUIDs(path string) map[int]gpt.GUID {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	t, err := gpt.ReadFile(f)
	if err != nil {
		return nil
	}
	ids := make(map[int]gpt.GUID, len(t.Partitions))
	for _, p := range t.Partitions {
		ids[p.Index] = p.UUID
	}
	return ids
}

// choice is what one look at the disks decided.
type choice struct {
	disk     *disk    // the boot disk; nil: none (yet)
	err      error    // a final answer: no point in waiting
	warnings []string // for the console
}

// choose picks the boot disk among disks: the one holding the partition
// hint names (when the firmware said), else the one with all of names.
// It returns no disk and no error while waiting may still help; last says
// this is the final look (the timeout passed), when it explains what is
// missing instead.
func choose(disks map[string]*disk, names []string, hint *gpt.GUID, last bool) choice {
	var candidates, complete []*disk // disks with any of names, with all of them
	for _, k := range sortedKeys(disks) {
		d := disks[k]
		have, missing := d.has(names)
		if len(have) > 0 {
			candidates = append(candidates, d)
		}
		if len(missing) == 0 {
			complete = append(complete, d)
		}
	}
	var c choice
	if hint != nil {
		var hinted []*disk
		for _, d := range candidates {
			if holds(d, *hint) {
				hinted = append(hinted, d)
			}
		}
		switch {
		case len(hinted) > 1:
			c.err = fmt.Errorf("blockdev: the partition the firmware loaded keel from (%s) is on disks %s: refusing to guess which one is the boot disk (remove the other disk)", hint, diskNames(hinted))
			return c
		case len(hinted) == 1:
			d := hinted[0]
			if _, missing := d.has(names); len(missing) > 0 {
				if !last {
					return c // its other partitions may still be appearing
				}
				c.err = fmt.Errorf("blockdev: the boot disk /dev/%s (it holds the partition the firmware loaded keel from, %s) has no GPT partition named %s; keel uses no other disk: %w",
					d.name, hint, strings.Join(missing, ", "), fs.ErrNotExist)
				c.warnings = others(candidates, d, names)
				return c
			}
			return pick(d, candidates, names)
		case !last:
			return c // the boot disk may not have appeared yet
		}
		c.warnings = append(c.warnings, fmt.Sprintf("no disk with keel's partitions holds the partition the firmware loaded keel from (%s): the boot disk is the one with all of %s", hint, strings.Join(names, ", ")))
	}
	switch len(complete) {
	case 0:
		if !last {
			return c
		}
		if len(candidates) == 0 {
			c.err = fmt.Errorf("blockdev: no disk has GPT partitions named %s (is the disk attached and its driver loaded?): %w", strings.Join(names, ", "), fs.ErrNotExist)
			return c
		}
		var desc []string
		for _, d := range candidates {
			_, missing := d.has(names)
			desc = append(desc, fmt.Sprintf("/dev/%s has no %s", d.name, strings.Join(missing, ", ")))
		}
		c.err = fmt.Errorf("blockdev: no disk has all of keel's partitions (%s): %s: %w", strings.Join(names, ", "), strings.Join(desc, "; "), fs.ErrNotExist)
		return c
	case 1:
		p := pick(complete[0], candidates, names)
		p.warnings = append(c.warnings, p.warnings...)
		return p
	}
	c.err = fmt.Errorf("blockdev: disks %s all have keel's partitions (%s): refusing to guess which one is the boot disk (remove the other disk)", diskNames(complete), strings.Join(names, ", "))
	return c
}

// pick makes d the boot disk, unless it has one of names twice, and warns
// about the other candidates.
func pick(d *disk, candidates []*disk, names []string) choice {
	c := choice{warnings: others(candidates, d, names)}
	for _, n := range names {
		if ps := d.parts[n]; len(ps) > 1 {
			c.err = fmt.Errorf("blockdev: the boot disk /dev/%s has %d partitions named %q (%s): refusing to guess: %w", d.name, len(ps), n, partDevs(ps), gpt.ErrDuplicateName)
			return c
		}
	}
	c.disk = d
	return c
}

// others is the warning for each candidate that is not the boot disk.
func others(candidates []*disk, boot *disk, names []string) []string {
	var w []string
	for _, d := range candidates {
		if d == boot {
			continue
		}
		have, _ := d.has(names)
		w = append(w, fmt.Sprintf("disk /dev/%s also has partitions named %s: ignored, keel uses only the boot disk /dev/%s", d.name, strings.Join(have, ", "), boot.name))
	}
	return w
}

// holds reports whether one of d's named partitions has the GUID g.
func holds(d *disk, g gpt.GUID) bool {
	for _, ps := range d.parts { // any partition: the ESP is not among the names keel looks up later
		for _, p := range ps {
			if pg, err := gpt.ParseGUID(p.uuid); err == nil && pg == g {
				return true
			}
		}
	}
	return false
}

func sortedKeys(m map[string]*disk) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func diskNames(ds []*disk) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = "/dev/" + d.name
	}
	return strings.Join(s, " and ")
}

func partDevs(ps []part) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = "/dev/" + p.dev
	}
	return strings.Join(s, ", ")
}

// LoaderDevicePartUUID reads the LoaderDevicePartUUID variable from the
// efivarfs mount efivarsDir: the unique GUID of the partition the firmware
// loaded the running image from, which systemd's EFI stub (and
// systemd-boot) set when a UKI starts. The error wraps fs.ErrNotExist when
// the variable is not set.
func LoaderDevicePartUUID(efivarsDir string) (string, error) {
	name := uefi.VarFile(uefi.LoaderDevicePartUUID, uefi.LoaderGUID())
	b, err := os.ReadFile(filepath.Join(efivarsDir, name))
	if err != nil {
		return "", err
	}
	if len(b) < 4 || (len(b)-4)%2 != 0 {
		return "", fmt.Errorf("%s: %d bytes is not an efivarfs UTF-16 string", name, len(b))
	}
	var s []rune
	for i := 4; i+1 < len(b); i += 2 {
		c := rune(b[i]) | rune(b[i+1])<<8
		if c == 0 {
			break
		}
		s = append(s, c)
	}
	g, err := gpt.ParseGUID(string(s))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return g.String(), nil
}

// Size returns the size of the block device (or file) at path.
func Size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}
