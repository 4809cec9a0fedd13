//go:build linux

package dataarea

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/datareport"
)

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

// copier copies a tree to a new folder (relative to folder descriptors:
// paths of any length), keeping what an OS's data needs:
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
//     and linked again (within linkTable's bounds), so the copy has the
//     same link structure and takes the same space.
//
// Sockets are not copied (logged): a socket file is the address of a
// process that listened before the reboot, dead now; its program makes it
// again, and a stale one would only be in its way. A hard link to a
// socket is left out with it. Inode flags (chattr: immutable,
// append-only...) are not copied either: an immutable copy could not be
// removed when the next update replaces the area, and an application's
// immutable file must not block every future snapshot.
//
// Before creating an entry, and before setting a folder's attributes
// after its content, it calls o.Cut; for every entry, and every copyChunk
// bytes, the walk pets the watchdog (o.Progress) and counts it against
// the walk's bounds (Limits). The source is only read: files and folders
// are opened with O_NOATIME where the kernel allows it, never through a
// link, never blocking.
type copier struct {
	o     Options
	w     *walk // its prefix is the source area's path on the partition
	links *linkTable
	stats copyStats
	// top is the copy's top folder: linkTable's paths are relative to
	// it.
	top int
}

// tree copies what the folder src holds into the empty folder dst; rel
// is src's path from the area's top ("" for the top), depth its level.
func (c *copier) tree(src, dst int, rel string, depth int) error {
	d := newDirNames(src)
	for {
		name, ok, err := d.next()
		if err != nil {
			return pathError("read", c.w.path(rel), err)
		}
		if !ok {
			return nil
		}
		if err := c.entry(src, dst, name, join(rel, name), depth); err != nil {
			return err
		}
	}
}

// entry copies name of the folder src (rel: its path from the area's
// top) to name in dst.
func (c *copier) entry(src, dst int, name, rel string, depth int) error {
	var st unix.Stat_t
	if err := lstatAt(src, name, &st); err != nil {
		return pathError("lstat", c.w.path(rel), err)
	}
	if err := c.w.visit(rel); err != nil {
		return err
	}
	if err := c.o.Cut(); err != nil {
		return err
	}
	typ := st.Mode & unix.S_IFMT
	key := devIno{st.Dev, st.Ino}
	linked := typ != unix.S_IFDIR && st.Nlink > 1
	if linked {
		if first, ok := c.links.lookup(key); ok {
			if first == "" {
				return nil // a socket, left out
			}
			if err := c.link(first, dst, name); err != nil {
				return pathError("link", c.w.path(rel), err)
			}
			c.stats.files++
			return nil
		}
	}
	perm := st.Mode & 0o7777
	switch typ {
	case unix.S_IFDIR:
		if err := c.w.enter(rel, depth+1); err != nil {
			return err
		}
		if err := c.dir(src, dst, name, rel, depth+1); err != nil {
			return err
		}
		// The folder's attributes after its content: its modification
		// time stays, and its default ACL is not inherited by its copy's
		// entries (each gets its own source's).
		if err := c.o.Cut(); err != nil {
			return err
		}
	case unix.S_IFREG:
		n, err := copyFileAt(src, dst, name, &st, c.o.Progress)
		if err != nil {
			return pathError("copy", c.w.path(rel), err)
		}
		c.stats.bytes += n
	case unix.S_IFLNK:
		// ext4 keeps a link's target in at most a block: PATH_MAX
		// bytes; more is not a link's.
		buf := make([]byte, unix.PathMax+1)
		n, err := unix.Readlinkat(src, name, buf)
		if err != nil {
			return pathError("readlink", c.w.path(rel), err)
		}
		if n > unix.PathMax {
			return pathError("readlink", c.w.path(rel), unix.ENAMETOOLONG)
		}
		if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
			return pathError("symlink", c.w.path(rel), err)
		}
	case unix.S_IFIFO:
		if err := unix.Mknodat(dst, name, unix.S_IFIFO|perm, 0); err != nil {
			return pathError("mkfifo", c.w.path(rel), err)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknodat(dst, name, typ|perm, int(st.Rdev)); err != nil {
			return pathError("mknod", c.w.path(rel), err)
		}
	case unix.S_IFSOCK:
		c.o.Logf("data: not copying %s: a socket, made again by its program", datareport.Quote(c.w.path(rel)))
		if linked {
			c.links.add(key, "")
		}
		return nil
	default:
		c.o.Logf("data: not copying %s: %s", datareport.Quote(c.w.path(rel)), typeName(st.Mode))
		return nil
	}
	if err := attrsAt(src, dst, name, &st); err != nil {
		return fmt.Errorf("%s: %w", datareport.Quote(c.w.path(rel)), err)
	}
	if linked && !c.links.add(key, rel) && !c.links.full {
		c.links.full = true
		c.o.Logf("data: %s and the files with several links after it are copied once for every link: the copy remembers %d such files (or a path too long to link to)", datareport.Quote(c.w.path(rel)), maxLinks)
	}
	c.stats.files++
	return nil
}

// dir copies the folder name of src (rel, at depth) to a new folder name
// in dst, its content and then its attributes.
func (c *copier) dir(src, dst int, name, rel string, depth int) error {
	if err := unix.Mkdirat(dst, name, 0o700); err != nil {
		return pathError("mkdir", c.w.path(rel), err)
	}
	sfd, err := openNoatimeAt(src, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return pathError("open", c.w.path(rel), err)
	}
	defer unix.Close(sfd)
	dfd, err := openAt(dst, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return pathError("open the copy of", c.w.path(rel), err)
	}
	defer unix.Close(dfd)
	return c.tree(sfd, dfd, rel, depth)
}

// link makes name in dst a further link to the copy at first (relative
// to the copy's top).
func (c *copier) link(first string, dst int, name string) error {
	parent, base := ".", first
	if i := strings.LastIndexByte(first, '/'); i >= 0 {
		parent, base = first[:i], first[i+1:]
	}
	pfd, err := openAt(c.top, parent, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return unix.Linkat(pfd, base, dst, name, 0)
}

// attrsAt gives name in dst, the copy of name in src, the owner,
// extended attributes, mode and times of st, in that order: a change of
// owner drops security.capability and the set-ID bits, and setting an ACL
// sets the group bits of the mode.
func attrsAt(src, dst int, name string, st *unix.Stat_t) error {
	// EPERM: not root (tests); stage 2 is.
	if err := unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("chown: %w", err)
	}
	if err := copyXattrs(procPath(src, name), procPath(dst, name)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(dst, name, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dst, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimensat: %w", err)
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
				return fmt.Errorf("removing extended attribute %s (not on the source): %w", datareport.Quote(n), err)
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
				return fmt.Errorf("copying extended attribute %s of %s to %s: the file system does not support it (%w): the copy would lose it (mount the data partition with extended attributes and ACLs)", datareport.Quote(n), datareport.Quote(from), datareport.Quote(to), err)
			}
			return fmt.Errorf("copying extended attribute %s: %w", datareport.Quote(n), err)
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
				return nil, fmt.Errorf("llistxattr %s: %w", datareport.Quote(path), err)
			}
			// The kernel's bound on a list (XATTR_LIST_MAX) keeps this
			// small.
			buf = make([]byte, n+256)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("llistxattr %s: %w", datareport.Quote(path), err)
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
// needed; the kernel bounds a value at XATTR_SIZE_MAX, 64 KiB).
func getXattr(path, name string, buf []byte) ([]byte, error) {
	if cap(buf) < 256 {
		buf = make([]byte, 256)
	}
	buf = buf[:cap(buf)]
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Lgetxattr(path, name, nil); err != nil {
				return nil, fmt.Errorf("reading extended attribute %s: %w", datareport.Quote(name), err)
			}
			buf = make([]byte, n+256)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading extended attribute %s: %w", datareport.Quote(name), err)
		}
		return buf[:n], nil
	}
}

// copyFileAt copies the regular file name of the folder src, as st
// describes it, to a new file name in dst: a reflink (FICLONE) when the
// file system can, else the bytes, keeping holes, calling progress every
// copyChunk bytes. It returns the bytes copied (a reflink's: the size).
func copyFileAt(src, dst int, name string, st *unix.Stat_t, progress func()) (int64, error) {
	ifd, err := openNoatimeAt(src, name, unix.O_RDONLY)
	if err != nil {
		return 0, err
	}
	in := os.NewFile(uintptr(ifd), name)
	defer in.Close()
	var ist unix.Stat_t
	if err := unix.Fstat(ifd, &ist); err != nil {
		return 0, err
	}
	if ist.Mode&unix.S_IFMT != unix.S_IFREG || ist.Ino != st.Ino || ist.Dev != st.Dev {
		return 0, errors.New("replaced while being copied")
	}
	ofd, err := openAt(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	out := os.NewFile(uintptr(ofd), name)
	if unix.IoctlFileClone(ofd, ifd) == nil {
		return ist.Size, out.Close()
	}
	n, err := copyData(out, in, ist.Size, progress)
	if err != nil {
		out.Close()
		return n, err
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
