//go:build linux

package dataarea

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/datareport"
)

// Options are Prepare's inputs beyond the state.
type Options struct {
	// Free returns the bytes available on the file system of dir (the
	// partition's slots/); nil: fstatfs.
	Free func(dir string) (uint64, error)
	// Cut, when set, is called before every change Prepare makes to the
	// partition; an error stops Prepare there (the power-cut tests).
	Cut func() error
	// Logf prints one line to the console (Prepare makes every line
	// printable: datareport.Printable).
	Logf func(format string, args ...any)
	// Progress, when set, is called for every entry a walk over the
	// partition visits and every copyChunk bytes a snapshot copies:
	// stage 2 pets the watchdog, so that a long copy is not reset while
	// a hung one still is.
	Progress func()
	// Limits bound every walk (zero fields: the defaults).
	Limits Limits
	// Now names what is set aside in quarantine/ (nil: time.Now).
	Now func() time.Time
}

// copyChunk is how much of a file is copied between two Progress calls.
const copyChunk = 64 << 20

// ErrNoSpace: the data partition cannot hold a snapshot.
var ErrNoSpace = errors.New("not enough free space on the data partition for the snapshot")

// Reserve is kept free beyond a snapshot's size: the trial must be able
// to write.
const Reserve = 16 << 20

// MaxInstallSize bounds slots/<slot>/install: an install's id on a line.
// A larger file, or anything but a regular file, is an unknown install.
const MaxInstallSize = 256

// maxLeftovers is the most leftovers of power cuts one boot removes (the
// rest at the next boots).
const maxLeftovers = 64

// Result is what Prepare did.
type Result struct {
	// Plan is the decision (Decide).
	Plan Plan
	// Area is the slot's area, root/slots/<slot>/data, for Bind; ""
	// when the OS gets none (Report.Unavailable says why).
	Area string
	// Report is what stage 2 tells the OS (package format/datareport);
	// Mounted is the caller's to set once the area is mounted.
	Report datareport.Report
}

// cutError marks the error of Options.Cut: Prepare returns it as it is,
// whatever the mode.
type cutError struct{ err error }

func (c cutError) Error() string { return c.err.Error() }
func (c cutError) Unwrap() error { return c.err }

func (o Options) withDefaults() Options {
	if cut := o.Cut; cut == nil {
		o.Cut = func() error { return nil }
	} else {
		o.Cut = func() error {
			if err := cut(); err != nil {
				return cutError{err}
			}
			return nil
		}
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	o.Logf = func(format string, args ...any) { logf("%s", datareport.Printable(fmt.Sprintf(format, args...))) }
	if o.Progress == nil {
		o.Progress = func() {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Limits = o.Limits.orDefaults()
	return o
}

// Prepare makes the booted slot's area under root (the data partition's
// mount) ready: it makes the folders keel keeps (shared/, slot/, slots/),
// removes what a power cut left (slots/*.new, *.old), decides (Decide)
// and carries the plan out. It never follows a link, never blocks on what
// it opens, reads no file larger than it expects, and bounds every walk
// (Options.Limits); anything on the partition that is not what keel keeps
// there is reported and set aside or ignored:
//
//   - an object where keel keeps a folder (shared/, slot/, slots/) is
//     set aside in quarantine/ and the folder made again;
//   - a slot's folder or area that is not a folder is "no area"; an
//     install file that is not a regular file of at most MaxInstallSize
//     bytes holding an id is "unknown install";
//   - what keel cannot remove (immutable or append-only files in a
//     leftover or in the area a snapshot replaces, or more entries than
//     the bounds) is moved into quarantine/, which keel never reads again,
//     and reported: the OS keeps its data on every boot.
//
// Only a trial fails (an error) when its area cannot be made: a snapshot
// that does not fit, or cannot be copied, must not be committed. For any
// other mode Prepare returns no error: the slot boots, without its area
// if it cannot have one (Result.Area "", Report.Unavailable says why).
// The error of Options.Cut is returned in every mode.
func Prepare(root string, s State, o Options) (Result, error) {
	p := &prep{
		o: o.withDefaults(), s: s, rootPath: root, root: -1, slots: -1, quarantine: -1,
		res: Result{Report: datareport.Report{Format: datareport.Format, Slot: s.Slot, Mode: s.Mode}},
	}
	defer p.close()
	err := p.run()
	p.listQuarantine()
	var cut cutError
	switch {
	case err == nil:
		return p.res, nil
	case errors.As(err, &cut):
		return p.res, err
	}
	p.res.Area = ""
	p.res.Report.Unavailable = err.Error()
	if s.Mode == ModeTrial {
		return p.res, err
	}
	return p.res, nil
}

// prep is one Prepare.
type prep struct {
	o        Options
	s        State
	res      Result
	rootPath string
	// Folder descriptors: the partition's root, slots/, quarantine/ (-1:
	// not open).
	root, slots, quarantine int
}

func (p *prep) close() {
	for _, fd := range []int{p.root, p.slots, p.quarantine} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// ignore notes something found on the partition and not used: on the
// console and in the report.
func (p *prep) ignore(format string, args ...any) {
	msg := datareport.Printable(fmt.Sprintf(format, args...))
	p.o.Logf("data: %s", msg)
	r := &p.res.Report
	switch {
	case len(r.Ignored) < datareport.MaxNotes-1:
		r.Ignored = append(r.Ignored, msg)
	case len(r.Ignored) == datareport.MaxNotes-1:
		r.Ignored = append(r.Ignored, "more on the console")
	}
}

// validSlotName: a slot's name is one name on the partition.
func validSlotName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00") && datareport.Printable(s) == s
}

func (p *prep) run() error {
	s := p.s
	if !validSlotName(s.Slot) || s.Source != "" && !validSlotName(s.Source) {
		return fmt.Errorf("data: slot %s (source %s): not a slot's name", datareport.Quote(s.Slot), datareport.Quote(s.Source))
	}
	fd, err := unix.Open(p.rootPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("data: open the data partition at %s: %w", p.rootPath, err)
	}
	p.root = fd
	if p.slots, err = p.folder(SlotsDir); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if fd, err := p.folder(SharedDir); err != nil {
		if isCut(err) {
			return err
		}
		p.ignore("the shared area: %v: the OS has no /data/shared", err)
	} else {
		unix.Close(fd)
	}
	mnt, err := p.folder(MountDir)
	if err != nil {
		return fmt.Errorf("data: the mount point of the slot's area: %w", err)
	}
	unix.Close(mnt)
	if err := p.cleanup(); err != nil {
		return err
	}
	trial := s.Mode == ModeTrial
	s.HasArea, s.AreaInstall = p.area(s.Slot, trial)
	if trial && s.Source != "" && s.Source != s.Slot {
		s.HasSource, _ = p.area(s.Source, false)
	}
	plan := Decide(s)
	p.res.Plan = plan
	p.res.Report.Action, p.res.Report.Why = plan.Action.String(), plan.Why
	p.o.Logf("data: slot %s's area: %s (%s)", s.Slot, plan.Action, plan.Why)
	switch plan.Action {
	case Create:
		_, err = p.replace(s.Slot, "", s.Install)
	case Snapshot:
		start := time.Now()
		var st copyStats
		st, err = p.replace(s.Slot, plan.Source, s.Install)
		if err == nil {
			p.o.Logf("%s", st.line(plan.Source, s.Slot, time.Since(start)))
		}
	}
	if err != nil {
		return fmt.Errorf("data: %s of slot %s's area: %w", plan.Action, s.Slot, err)
	}
	p.res.Area = filepath.Join(p.rootPath, SlotsDir, s.Slot, AreaData)
	return nil
}

func isCut(err error) bool {
	var cut cutError
	return errors.As(err, &cut)
}

// notFolder says whether an openat2 of a folder failed because something
// else is there (a link: ELOOP; anything else: ENOTDIR).
func notFolder(err error) bool {
	return errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}

// folder opens the folder name of the partition's root, making it; an
// object of another kind there is set aside first.
func (p *prep) folder(name string) (int, error) {
	fd, err := openAt(p.root, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	switch {
	case err == nil:
		return fd, nil
	case notFolder(err):
		why := fmt.Sprintf("%s is %s, not a folder", datareport.Quote(name), what(p.root, name))
		if err := p.setAside(p.root, name, name, why+" (keel keeps a folder there)"); err != nil {
			return -1, fmt.Errorf("%s, and cannot be set aside: %w", why, err)
		}
	case !errors.Is(err, unix.ENOENT):
		return -1, pathError("open", name, err)
	}
	if err := p.o.Cut(); err != nil {
		return -1, err
	}
	if err := unix.Mkdirat(p.root, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, pathError("mkdir", name, err)
	}
	fd, err = openAt(p.root, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, pathError("open", name, err)
	}
	return fd, nil
}

// isLeftover says whether a name in slots/ is what a power cut left: a
// snapshot being made, an area being replaced.
func isLeftover(name string) bool {
	return strings.HasSuffix(name, newSuffix) || strings.HasSuffix(name, oldSuffix)
}

// cleanup removes what a power cut left in slots/ (a snapshot being
// made: it is made again from the start; an area being replaced: the new
// one is in place, or the old one still is), setting aside what it cannot
// remove. Only Options.Cut's error is returned.
func (p *prep) cleanup() error {
	w := newWalk(p.o, SlotsDir)
	d := newDirNames(p.slots)
	var left []string
	for {
		n, ok, err := d.next()
		if err != nil {
			p.ignore("reading %s: %v: its leftovers of power cuts stay until the next boot", datareport.Quote(SlotsDir), err)
			break
		}
		if !ok {
			break
		}
		if err := w.visit(n); err != nil {
			p.ignore("%s holds more than %d entries: the rest were not looked at", datareport.Quote(SlotsDir), p.o.Limits.Entries)
			break
		}
		if isLeftover(n) && len(left) < maxLeftovers {
			left = append(left, n)
		}
	}
	for _, n := range left {
		if err := p.o.Cut(); err != nil {
			return err
		}
		p.o.Logf("data: removing %s, left by a power cut", datareport.Quote(join(SlotsDir, n)))
		if err := p.discard(n); isCut(err) {
			return err
		}
	}
	return nil
}

// discard removes slots/<name>, or sets it aside when it cannot: an error
// when it stays.
func (p *prep) discard(name string) error {
	rel := join(SlotsDir, name)
	err := removeTree(p.slots, name, name, newWalk(p.o, SlotsDir), 0)
	if err == nil {
		return nil
	}
	why := fmt.Sprintf("keel could not remove it: %v", err)
	if serr := p.setAside(p.slots, name, rel, why); serr != nil {
		if isCut(serr) {
			return serr
		}
		p.ignore("%s stays: %s, nor set it aside: %v (remove it: chattr -i, rm -r)", datareport.Quote(rel), why, serr)
		return fmt.Errorf("%s stays: %s, nor set it aside: %w", datareport.Quote(rel), why, serr)
	}
	return nil
}

// clear makes room for slots/<name>: what is there is discarded.
func (p *prep) clear(name string) error {
	var st unix.Stat_t
	if err := lstatAt(p.slots, name, &st); errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err := p.o.Cut(); err != nil {
		return err
	}
	p.o.Logf("data: removing %s, left over", datareport.Quote(join(SlotsDir, name)))
	return p.discard(name)
}

// area says whether slots/<slot> holds an area, and, with readInstall,
// whose install it is ("" when unknown).
func (p *prep) area(slot string, readInstall bool) (bool, string) {
	rel := join(SlotsDir, slot)
	sfd, err := openAt(p.slots, slot, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			p.ignore("%s is %s, not a slot's folder: slot %s has no area", datareport.Quote(rel), what(p.slots, slot), slot)
		}
		return false, ""
	}
	defer unix.Close(sfd)
	dfd, err := openAt(sfd, AreaData, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			p.ignore("%s is %s, not a folder: slot %s has no area", datareport.Quote(join(rel, AreaData)), what(sfd, AreaData), slot)
		}
		return false, ""
	}
	unix.Close(dfd)
	if !readInstall {
		return true, ""
	}
	return true, p.install(sfd, join(rel, InstallFile))
}

// install reads the install id in slots/<slot>/install (slot: the
// slot's folder; rel: the file's path, for messages): "" when there is
// none or it is not a regular file of at most MaxInstallSize bytes holding
// one line of printable characters.
func (p *prep) install(slot int, rel string) string {
	unknown := func(format string, args ...any) string {
		p.ignore("%s %s: the area's install is unknown", datareport.Quote(rel), fmt.Sprintf(format, args...))
		return ""
	}
	var st unix.Stat_t
	if err := lstatAt(slot, InstallFile, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return ""
		}
		return unknown("cannot be read (%v)", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return unknown("is %s, not a file", typeName(st.Mode))
	}
	if st.Size > MaxInstallSize {
		return unknown("is %d bytes, more than an install's id (%d)", st.Size, MaxInstallSize)
	}
	fd, err := openAt(slot, InstallFile, unix.O_RDONLY, 0)
	if err != nil {
		return unknown("cannot be opened (%v)", err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFREG || fst.Ino != st.Ino {
		return unknown("changed while it was read")
	}
	buf := make([]byte, MaxInstallSize+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return unknown("cannot be read (%v)", err)
		}
		if m <= 0 {
			break
		}
		n += m
	}
	if n > MaxInstallSize {
		return unknown("grew while it was read")
	}
	v := strings.TrimSpace(string(buf[:n]))
	if !validInstall(v) {
		return unknown("holds no install's id")
	}
	return v
}

// validInstall: an install's id is printable ASCII without spaces.
func validInstall(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// replace makes slots/<slot> a new area for install: a copy of slot
// src's area (an empty one when src is ""). It builds slots/<slot>.new,
// syncs the file system, exchanges it with the slot's folder in one
// rename (RENAME_EXCHANGE: the slot has its old area or the new one,
// never none), syncs slots/ and removes the old area, now at
// slots/<slot>.new (a power cut before: the next boot's cleanup removes
// it). An old area that cannot be removed (an application's immutable
// file) is set aside: it never fails the snapshot. src's area is only
// read. It returns what it copied.
func (p *prep) replace(slot, src, install string) (copyStats, error) {
	var st copyStats
	tmp := slot + newSuffix
	if err := p.clear(tmp); err != nil {
		return st, err
	}
	srcSlot, srcData := -1, -1
	defer func() {
		for _, fd := range []int{srcSlot, srcData} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	srcRel := join(join(SlotsDir, src), AreaData)
	if src != "" {
		var err error
		if srcSlot, err = openAt(p.slots, src, unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
			return st, pathError("open", join(SlotsDir, src), err)
		}
		if srcData, err = openNoatimeAt(srcSlot, AreaData, unix.O_RDONLY|unix.O_DIRECTORY); err != nil {
			return st, pathError("open", srcRel, err)
		}
		need, err := size(srcData, "", newWalk(p.o, srcRel), newLinkTable(), 0)
		if err != nil {
			return st, fmt.Errorf("measuring slot %s's area: %w", src, err)
		}
		if _, err := unix.Seek(srcData, 0, 0); err != nil { // the copy reads it again
			return st, pathError("read", srcRel, err)
		}
		free, err := p.free()
		if err != nil {
			return st, fmt.Errorf("free space on the data partition: %w", err)
		}
		if need+Reserve > free {
			return st, fmt.Errorf("%w: %d MiB to copy and %d MiB to keep free, %d MiB free: free space in %s or the other slot's area, then install again",
				ErrNoSpace, need>>20, Reserve>>20, free>>20, SharedDir)
		}
		p.o.Logf("data: copying %.1f MiB into %s", float64(need)/(1<<20), join(SlotsDir, tmp))
	}
	if err := p.o.Cut(); err != nil {
		return st, err
	}
	if err := unix.Mkdirat(p.slots, tmp, 0o755); err != nil {
		return st, pathError("mkdir", join(SlotsDir, tmp), err)
	}
	tfd, err := openAt(p.slots, tmp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return st, pathError("open", join(SlotsDir, tmp), err)
	}
	defer unix.Close(tfd)
	if err := p.o.Cut(); err != nil {
		return st, err
	}
	dataMode := uint32(0o755)
	if src != "" {
		dataMode = 0o700 // its attributes are the source's, set after the copy
	}
	if err := unix.Mkdirat(tfd, AreaData, dataMode); err != nil {
		return st, pathError("mkdir", join(join(SlotsDir, tmp), AreaData), err)
	}
	if src != "" {
		if st, err = p.copyArea(srcSlot, srcData, tfd, srcRel); err != nil {
			return st, err
		}
	}
	if err := p.o.Cut(); err != nil {
		return st, err
	}
	if err := writeInstall(tfd, install); err != nil {
		return st, pathError("write", join(join(SlotsDir, tmp), InstallFile), err)
	}
	if err := unix.Syncfs(tfd); err != nil {
		return st, fmt.Errorf("syncfs: %w", err)
	}
	var old unix.Stat_t
	exists := lstatAt(p.slots, slot, &old) == nil
	if err := p.o.Cut(); err != nil {
		return st, err
	}
	discard := ""
	switch {
	case !exists:
		err = renameNoReplace(p.slots, tmp, p.slots, slot)
	default:
		discard = tmp
		err = unix.Renameat2(p.slots, tmp, p.slots, slot, unix.RENAME_EXCHANGE)
		if errors.Is(err, unix.EINVAL) {
			// No RENAME_EXCHANGE in this file system: the old area aside
			// first, then the new one in.
			discard = slot + oldSuffix
			if err = p.clear(discard); err == nil {
				if err = unix.Renameat(p.slots, slot, p.slots, discard); err == nil {
					if err = p.o.Cut(); err == nil {
						err = unix.Renameat(p.slots, tmp, p.slots, slot)
					}
				}
			}
		}
	}
	if err != nil {
		return st, fmt.Errorf("renaming %s into place: %w", datareport.Quote(join(SlotsDir, tmp)), err)
	}
	if err := unix.Fsync(p.slots); err != nil {
		return st, fmt.Errorf("fsync %s: %w", SlotsDir, err)
	}
	if discard != "" {
		if err := p.o.Cut(); err != nil {
			return st, err
		}
		if err := p.discard(discard); isCut(err) {
			return st, err
		}
	}
	return st, nil
}

// copyArea copies the area srcData (in the slot's folder srcSlot; srcRel
// is its path) into the new, empty folder data of tmp.
func (p *prep) copyArea(srcSlot, srcData, tmp int, srcRel string) (copyStats, error) {
	dfd, err := openAt(tmp, AreaData, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return copyStats{}, err
	}
	defer unix.Close(dfd)
	c := copier{o: p.o, w: newWalk(p.o, srcRel), links: newLinkTable(), top: dfd}
	if err := c.tree(srcData, dfd, "", 0); err != nil {
		return c.stats, err
	}
	var sst unix.Stat_t
	if err := lstatAt(srcSlot, AreaData, &sst); err != nil {
		return c.stats, pathError("lstat", srcRel, err)
	}
	if err := p.o.Cut(); err != nil {
		return c.stats, err
	}
	if err := attrsAt(srcSlot, tmp, AreaData, &sst); err != nil {
		return c.stats, fmt.Errorf("%s: %w", datareport.Quote(srcRel), err)
	}
	return c.stats, nil
}

// renameNoReplace renames, refusing to replace what is at the target
// (RENAME_NOREPLACE; where the file system has it not, a check first:
// nothing else runs in stage 2).
func renameNoReplace(from int, fromName string, to int, toName string) error {
	err := unix.Renameat2(from, fromName, to, toName, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) {
		var st unix.Stat_t
		if lstatAt(to, toName, &st) == nil {
			return unix.EEXIST
		}
		err = unix.Renameat(from, fromName, to, toName)
	}
	return err
}

// writeInstall writes the install file of a new area in its folder dir.
func writeInstall(dir int, install string) error {
	fd, err := openAt(dir, InstallFile, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	b := []byte(install + "\n")
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		b = b[n:]
	}
	return unix.Close(fd)
}

// free is the space available on the partition.
func (p *prep) free() (uint64, error) {
	if p.o.Free != nil {
		return p.o.Free(filepath.Join(p.rootPath, SlotsDir))
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(p.slots, &st); err != nil {
		return 0, fmt.Errorf("fstatfs: %w", err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// quarantineDir opens quarantine/, making it. Anything else there is
// removed (a name keel keeps; a link is removed, not followed).
func (p *prep) quarantineDir() (int, error) {
	if p.quarantine >= 0 {
		return p.quarantine, nil
	}
	fd, err := openAt(p.root, QuarantineDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if notFolder(err) {
		kind := what(p.root, QuarantineDir)
		if err := unix.Unlinkat(p.root, QuarantineDir, 0); err != nil {
			return -1, fmt.Errorf("%s is %s, not a folder, and cannot be removed: %w", datareport.Quote(QuarantineDir), kind, err)
		}
		p.ignore("%s was %s, not a folder: removed", datareport.Quote(QuarantineDir), kind)
		err = unix.ENOENT
	}
	if errors.Is(err, unix.ENOENT) {
		if err := p.o.Cut(); err != nil {
			return -1, err
		}
		if err := unix.Mkdirat(p.root, QuarantineDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, pathError("mkdir", QuarantineDir, err)
		}
		fd, err = openAt(p.root, QuarantineDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	}
	if err != nil {
		return -1, pathError("open", QuarantineDir, err)
	}
	p.quarantine = fd
	return fd, nil
}

// setAside moves name of the folder dir (rel: its path on the
// partition) into quarantine/, under a name made of the time and rel, and
// reports it (why: why it could not stay or be removed).
func (p *prep) setAside(dir int, name, rel, why string) error {
	q, err := p.quarantineDir()
	if err != nil {
		return err
	}
	if err := p.o.Cut(); err != nil {
		return err
	}
	base := p.o.Now().UTC().Format("20060102T150405Z") + "-" + safeName(rel)
	target := base
	for k := 1; ; k++ {
		err = renameNoReplace(dir, name, q, target)
		if !errors.Is(err, unix.EEXIST) || k == 100 {
			break
		}
		target = fmt.Sprintf("%s.%d", base, k)
	}
	if err != nil {
		return fmt.Errorf("moving it into %s: %w", QuarantineDir, err)
	}
	// Durable: the name is gone from dir, and in quarantine/.
	_ = unix.Fsync(dir)
	_ = unix.Fsync(q)
	sa := datareport.SetAside{From: datareport.Quote(rel), To: datareport.Quote(join(QuarantineDir, target)), Why: datareport.Printable(why)}
	if r := &p.res.Report; len(r.SetAside) < datareport.MaxNotes {
		r.SetAside = append(r.SetAside, sa)
	}
	p.o.Logf("data: set %s aside as %s: %s; keel never reads it again: look at it, then remove it", sa.From, sa.To, sa.Why)
	return nil
}

// safeName makes rel a name for quarantine/: letters, digits, '.', '-'
// and '_' (anything else becomes '_'), at most 64 bytes.
func safeName(rel string) string {
	b := []byte(rel)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// listQuarantine puts what quarantine/ holds in the report (its first
// names, how many: never what they hold) and on the console.
func (p *prep) listQuarantine() {
	if p.root < 0 {
		return
	}
	fd, err := openAt(p.root, QuarantineDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	r := &p.res.Report
	w := newWalk(p.o, QuarantineDir)
	d := newDirNames(fd)
	more := ""
	for {
		n, ok, err := d.next()
		if err != nil || !ok {
			break
		}
		if err := w.visit(n); err != nil {
			more = "more than "
			break
		}
		r.QuarantineCount++
		if len(r.Quarantine) < datareport.MaxNames {
			r.Quarantine = append(r.Quarantine, datareport.Quote(n))
		}
	}
	if r.QuarantineCount > 0 {
		p.o.Logf("data: %s holds %s%d %s keel set aside (%s): look at them, then remove them",
			QuarantineDir, more, r.QuarantineCount, plural(r.QuarantineCount, "entry", "entries"), strings.Join(r.Quarantine, ", "))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Bind mounts slot's area on the mount point slot/ of the data partition
// mounted at root, through descriptors (open_tree, move_mount): neither
// path is looked up through a link.
func Bind(root, slot string) error {
	if !validSlotName(slot) {
		return fmt.Errorf("data: %s is not a slot's name", datareport.Quote(slot))
	}
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("data: open %s: %w", root, err)
	}
	defer unix.Close(rfd)
	rel := SlotsDir + "/" + slot + "/" + AreaData
	afd, err := openAt(rfd, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return pathError("open", rel, err)
	}
	defer unix.Close(afd)
	tree, err := unix.OpenTree(afd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return pathError("open_tree", rel, err)
	}
	defer unix.Close(tree)
	mnt, err := openAt(rfd, MountDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return pathError("open", MountDir, err)
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(tree, "", mnt, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("data: mounting %s on %s: %w", rel, MountDir, err)
	}
	return nil
}
