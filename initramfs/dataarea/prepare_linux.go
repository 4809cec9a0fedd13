//go:build linux

package dataarea

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options are Prepare's inputs beyond the state.
type Options struct {
	// Free returns the bytes available on the file system of dir; nil:
	// statfs.
	Free func(dir string) (uint64, error)
	// Cut, when set, is called before every change Prepare makes to the
	// partition; an error stops Prepare there (the power-cut tests).
	Cut func() error
	// Logf prints one line to the console.
	Logf func(format string, args ...any)
	// Progress, when set, is called after every entry and every
	// copyChunk bytes a snapshot copies: stage 2 pets the watchdog, so
	// that a long copy is not reset while a hung one still is.
	Progress func()
}

// copyChunk is how much of a file is copied between two Progress calls.
const copyChunk = 64 << 20

// ErrNoSpace: the data partition cannot hold a snapshot.
var ErrNoSpace = errors.New("not enough free space on the data partition for the snapshot")

// Reserve is kept free beyond a snapshot's size: the trial must be able
// to write.
const Reserve = 16 << 20

// Prepare makes the booted slot's area under root (the data partition's
// mount) ready: it removes what a power cut left (.new, .old), decides
// (Decide) and carries the plan out, and makes shared/ and the mount
// point slot/. It returns the plan and the area's path
// (root/slots/<slot>/data) to bind-mount at root/slot.
func Prepare(root string, s State, o Options) (Plan, string, error) {
	if o.Free == nil {
		o.Free = statfsFree
	}
	if o.Cut == nil {
		o.Cut = func() error { return nil }
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Progress == nil {
		o.Progress = func() {}
	}
	slots := filepath.Join(root, SlotsDir)
	for _, d := range []string{root + "/" + SharedDir, root + "/" + MountDir, slots} {
		if err := mkdir(o, d); err != nil {
			return Plan{}, "", err
		}
	}
	if err := cleanup(slots, o); err != nil {
		return Plan{}, "", err
	}
	var err error
	if s.HasArea, s.AreaInstall, err = readArea(slots, s.Slot); err != nil {
		return Plan{}, "", err
	}
	if s.Source != "" && s.Source != s.Slot {
		if s.HasSource, _, err = readArea(slots, s.Source); err != nil {
			return Plan{}, "", err
		}
	}
	p := Decide(s)
	o.Logf("data: slot %s's area: %s (%s)", s.Slot, p.Action, p.Why)
	area := filepath.Join(slots, s.Slot, AreaData)
	switch p.Action {
	case Create:
		_, err = replace(slots, s.Slot, "", s.Install, o)
	case Snapshot:
		start := time.Now()
		var st copyStats
		st, err = replace(slots, s.Slot, filepath.Join(slots, p.Source, AreaData), s.Install, o)
		if err == nil {
			o.Logf("%s", st.line(p.Source, s.Slot, time.Since(start)))
		}
	}
	if err != nil {
		return p, "", fmt.Errorf("data: %s of slot %s's area: %w", p.Action, s.Slot, err)
	}
	return p, area, nil
}

// copyStats counts what a snapshot copied.
type copyStats struct {
	// files: the entries created in the copy (files, folders, symbolic
	// links, device nodes, FIFOs and every further hard link; not the
	// area's top folder, not what was skipped).
	files int
	// bytes: the regular files' data copied (a hard-linked file once,
	// holes not counted, a reflinked file's size).
	bytes int64
}

// line is the console's summary of a snapshot of slot src's area to slot
// dst that took d, in a fixed form the VM tests parse:
//
//	data: snapshot of slot a's area to slot b: 12 files, 200.0 MiB in 3.21 s (16.44 s/GiB)
//
// The rate is 0.00 s/GiB when no data was copied.
func (c copyStats) line(src, dst string, d time.Duration) string {
	secs := d.Seconds()
	perGiB := 0.0
	if c.bytes > 0 {
		perGiB = secs / (float64(c.bytes) / (1 << 30))
	}
	return fmt.Sprintf("data: snapshot of slot %s's area to slot %s: %d files, %.1f MiB in %.2f s (%.2f s/GiB)",
		src, dst, c.files, float64(c.bytes)/(1<<20), secs, perGiB)
}

// cleanup removes what a power cut left in slots: a snapshot being made
// (redone from the start), an area being replaced (the new one is in
// place, or the old one still is).
func cleanup(slots string, o Options) error {
	entries, err := os.ReadDir(slots)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, newSuffix) || strings.HasSuffix(n, oldSuffix) {
			if err := o.Cut(); err != nil {
				return err
			}
			o.Logf("data: removing %s, left by a power cut", n)
			if err := os.RemoveAll(filepath.Join(slots, n)); err != nil {
				return fmt.Errorf("removing %s: %w", n, err)
			}
		}
	}
	return nil
}

// readArea says whether slots/<slot> holds an area and whose install it is.
func readArea(slots, slot string) (bool, string, error) {
	for _, d := range []string{filepath.Join(slots, slot), filepath.Join(slots, slot, AreaData)} {
		ok, err := realDir(d)
		if err != nil || !ok {
			return false, "", err
		}
	}
	b, err := os.ReadFile(filepath.Join(slots, slot, InstallFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, "", err
	}
	return true, strings.TrimSpace(string(b)), nil
}

// replace makes slots/<slot> a new area for install: a copy of src (an
// empty one when src is ""). It builds slots/<slot>.new, syncs the file
// system, moves the old area aside, renames .new into place, syncs the
// folder and removes the old one. src is only read. It returns what it
// copied.
func replace(slots, slot, src, install string, o Options) (copyStats, error) {
	var st copyStats
	dst := filepath.Join(slots, slot)
	tmp := dst + newSuffix
	if src != "" {
		need, err := size(src)
		if err != nil {
			return st, fmt.Errorf("measuring slot area %s: %w", src, err)
		}
		free, err := o.Free(slots)
		if err != nil {
			return st, fmt.Errorf("free space on the data partition: %w", err)
		}
		if need+Reserve > free {
			return st, fmt.Errorf("%w: %d MiB to copy and %d MiB to keep free, %d MiB free: free space in %s or the other slot's area, then install again",
				ErrNoSpace, need>>20, Reserve>>20, free>>20, SharedDir)
		}
		o.Logf("data: copying %.1f MiB into %s", float64(need)/(1<<20), tmp)
	}
	if err := mkdir(o, tmp); err != nil {
		return st, err
	}
	if src != "" {
		c := copier{src: src, dst: filepath.Join(tmp, AreaData), o: o, links: map[devIno]string{}}
		if err := c.copy("."); err != nil {
			return st, err
		}
		st = c.stats
		st.files-- // the area's top folder
	} else if err := mkdir(o, filepath.Join(tmp, AreaData)); err != nil {
		return st, err
	}
	if err := o.Cut(); err != nil {
		return st, err
	}
	if err := os.WriteFile(filepath.Join(tmp, InstallFile), []byte(install+"\n"), 0o644); err != nil {
		return st, err
	}
	if err := syncFS(tmp); err != nil {
		return st, err
	}
	old := dst + oldSuffix
	if _, err := os.Lstat(dst); err == nil {
		if err := o.Cut(); err != nil {
			return st, err
		}
		if err := os.Rename(dst, old); err != nil {
			return st, err
		}
	}
	if err := o.Cut(); err != nil {
		return st, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return st, err
	}
	if err := syncDir(slots); err != nil {
		return st, err
	}
	if err := o.Cut(); err != nil {
		return st, err
	}
	return st, os.RemoveAll(old)
}

func mkdir(o Options, dir string) error {
	if ok, err := realDir(dir); ok || err != nil {
		return err
	}
	if err := o.Cut(); err != nil {
		return err
	}
	return os.Mkdir(dir, 0o755)
}

// realDir reports whether dir exists as a folder. A symbolic link (or
// anything else) there is an error: the OS owns the data partition, and
// stage 2, which runs as root before the switch, must never follow a link
// it planted out of the partition (copying, or bind-mounting, /proc say).
func realDir(dir string) (bool, error) {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !st.IsDir():
		return false, fmt.Errorf("%s is not a folder (%s): remove it (keel makes it again)", dir, st.Mode().Type())
	}
	return true, nil
}

// devIno identifies a file: the key of hard links.
type devIno struct{ dev, ino uint64 }

// size is the space a copy of the tree at dir takes: its regular files'
// allocated data (their sizes rounded up to 4 KiB blocks, or the blocks
// they have when that is less: a sparse file's holes stay holes), a file
// with several hard links in the tree once, and a block for every entry
// (folders, inodes' extended attributes beyond what fits in the inode).
func size(dir string) (uint64, error) {
	var n uint64
	seen := map[devIno]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += 4096
		if !fi.Mode().IsRegular() {
			return nil
		}
		data := (uint64(fi.Size()) + 4095) &^ 4095
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if st.Nlink > 1 {
				k := devIno{uint64(st.Dev), st.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			data = min(data, uint64(st.Blocks)*512)
		}
		n += data
		return nil
	})
	return n, err
}

// copier copies the tree at src to dst (which must not exist), keeping
// what an OS's data needs:
//
//   - folders, regular files (a reflink where the file system has them,
//     else the bytes with the holes of sparse files kept), symbolic links,
//     FIFOs, and character and block device nodes (an OS keeps some in its
//     data: overlayfs marks a deleted file with a 0:0 character device in
//     container storage; the data partition is mounted nodev, so they open
//     no device there);
//   - owners, modes (set-user-ID, set-group-ID, sticky), access and
//     modification times, folders' too (set after their content);
//   - every extended attribute root may read and write: user.*,
//     trusted.* (overlayfs), security.* (file capabilities, SELinux
//     labels, IMA), and POSIX ACLs (system.posix_acl_access, _default);
//     an entry of the copy has exactly the source's (no ACL inherited from
//     a default ACL of the copy's folders), and one the file system cannot
//     store fails the copy, naming it, rather than being lost;
//   - hard links: a file with several links in the tree is copied once
//     and linked again, so the copy has the same link structure and takes
//     the same space.
//
// Sockets are not copied (logged): a socket file is the address of a
// process that listened before the reboot, dead now; its program makes it
// again, and a stale one would only be in its way. A hard link to a
// socket is left out with it.
//
// Before creating an entry, and before setting a folder's attributes
// after its content, it calls o.Cut; after every entry, and every
// copyChunk bytes, o.Progress. The source is only read: files and folders
// are opened with O_NOATIME where the kernel allows it.
type copier struct {
	src, dst string
	o        Options
	// links maps a file with several links (the source's device and
	// inode) to its copy's path; "" when it was not copied.
	links map[devIno]string
	stats copyStats
}

// copy copies the entry at rel under c.src (a folder with its content) to
// rel under c.dst.
func (c *copier) copy(rel string) error {
	p, to := filepath.Join(c.src, rel), filepath.Join(c.dst, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	c.o.Progress()
	if err := c.o.Cut(); err != nil {
		return err
	}
	typ := st.Mode & unix.S_IFMT
	var key devIno
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		key = devIno{st.Dev, st.Ino}
		if first, ok := c.links[key]; ok {
			if first == "" {
				return nil // a socket, left out
			}
			if err := os.Link(first, to); err != nil {
				return err
			}
			c.stats.files++
			return nil
		}
		c.links[key] = ""
	}
	perm := st.Mode & 0o7777
	switch typ {
	case unix.S_IFDIR:
		if err := os.Mkdir(to, 0o700); err != nil {
			return err
		}
		names, err := readNames(p)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := c.copy(filepath.Join(rel, n)); err != nil {
				return err
			}
		}
		// The folder's attributes after its content: its modification
		// time stays, and its default ACL is not inherited by its copy's
		// entries (each gets its own source's).
		if err := c.o.Cut(); err != nil {
			return err
		}
	case unix.S_IFREG:
		n, err := copyFile(p, to, st.Size, c.o.Progress)
		if err != nil {
			return err
		}
		c.stats.bytes += n
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, to); err != nil {
			return err
		}
	case unix.S_IFIFO:
		if err := unix.Mkfifo(to, perm); err != nil {
			return &fs.PathError{Op: "mkfifo", Path: to, Err: err}
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknod(to, typ|perm, int(st.Rdev)); err != nil {
			return &fs.PathError{Op: "mknod", Path: to, Err: err}
		}
	case unix.S_IFSOCK:
		c.o.Logf("data: not copying %s: a socket, made again by its program", rel)
		return nil
	default:
		c.o.Logf("data: not copying %s: of unknown type %#o", rel, typ)
		return nil
	}
	if err := attrs(p, to, &st); err != nil {
		return err
	}
	if st.Nlink > 1 && typ != unix.S_IFDIR {
		c.links[key] = to
	}
	c.stats.files++
	return nil
}

// readNames lists the folder dir, sorted.
func readNames(dir string) ([]string, error) {
	f, err := openNoatime(dir, unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// openNoatime opens path to read without changing its access time
// (O_NOATIME: root may on every file; without it, plainly).
func openNoatime(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|flag|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(path, os.O_RDONLY|flag, 0)
	}
	return f, err
}

// attrs gives to, the copy of from, the owner, extended attributes, mode
// and times of st, in that order: a change of owner drops
// security.capability and the set-ID bits, and setting an ACL sets the
// group bits of the mode.
func attrs(from, to string, st *unix.Stat_t) error {
	// EPERM: not root (tests); stage 2 is.
	if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	if err := copyXattrs(from, to); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(to, st.Mode&0o7777); err != nil {
			return &fs.PathError{Op: "chmod", Path: to, Err: err}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, to, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: to, Err: err}
	}
	return nil
}

// copyXattrs makes the extended attributes of to those of from: it
// removes what to has and from has not (an ACL inherited from a folder's
// default ACL, say), then sets from's. A file system that cannot store one
// is an error naming it: the copy would lose it.
func copyXattrs(from, to string) error {
	names, err := listXattrs(from)
	if err != nil {
		return err
	}
	have, err := listXattrs(to)
	if err != nil {
		return err
	}
	for _, n := range have {
		if !slices.Contains(names, n) {
			if err := unix.Lremovexattr(to, n); err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("removing extended attribute %s of %s (not on %s): %w", n, to, from, err)
			}
		}
	}
	var buf []byte
	for _, n := range names {
		if buf, err = getXattr(from, n, buf); errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		} else if err != nil {
			return err
		}
		if err := unix.Lsetxattr(to, n, buf, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("copying extended attribute %s of %s to %s: the file system does not support it (%w): the copy would lose it (mount the data partition with extended attributes and ACLs)", n, from, to, err)
			}
			return fmt.Errorf("copying extended attribute %s of %s to %s: %w", n, from, to, err)
		}
	}
	return nil
}

// listXattrs lists the names of path's extended attributes (not following
// a symbolic link); none where the file system has none.
func listXattrs(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Llistxattr(path, nil); err != nil {
				return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
			}
			buf = make([]byte, n+256)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "llistxattr", Path: path, Err: err}
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

// getXattr reads path's extended attribute name into buf (grown as
// needed).
func getXattr(path, name string, buf []byte) ([]byte, error) {
	if cap(buf) < 256 {
		buf = make([]byte, 256)
	}
	buf = buf[:cap(buf)]
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Lgetxattr(path, name, nil); err != nil {
				return nil, fmt.Errorf("reading extended attribute %s of %s: %w", name, path, err)
			}
			buf = make([]byte, n+256)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading extended attribute %s of %s: %w", name, path, err)
		}
		return buf[:n], nil
	}
}

// copyFile copies the regular file src of size bytes to dst: a reflink
// (FICLONE) when the file system can, else the bytes, keeping holes,
// calling progress every copyChunk bytes. It returns the bytes copied (a
// reflink's: size).
func copyFile(src, dst string, size int64, progress func()) (int64, error) {
	in, err := openNoatime(src, 0)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return size, out.Close()
	}
	n, err := copyData(out, in, size, progress)
	if err != nil {
		out.Close()
		return n, fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return n, out.Close()
}

// copyData copies the size bytes of in to the empty out: only in's data
// (SEEK_DATA, SEEK_HOLE), so that a hole stays one, in copyChunk pieces
// (copy_file_range, within the kernel), calling progress after each.
func copyData(out, in *os.File, size int64, progress func()) (int64, error) {
	var copied int64
	for off := int64(0); off < size; {
		data, err := in.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // a hole to the end
		}
		hole := size
		if err != nil {
			data = off // no SEEK_DATA: all data
		} else if hole, err = in.Seek(data, unix.SEEK_HOLE); err != nil {
			return copied, err
		}
		hole = min(hole, size)
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return copied, err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return copied, err
		}
		for data < hole {
			n, err := io.CopyN(out, in, min(copyChunk, hole-data))
			copied += n
			data += n
			if err != nil {
				return copied, err
			}
			progress()
		}
		off = hole
	}
	return copied, out.Truncate(size)
}

// syncFS flushes the whole file system holding dir (syncfs).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return &fs.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func statfsFree(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return st.Bavail * uint64(st.Bsize), nil
}
