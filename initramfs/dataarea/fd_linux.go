//go:build linux

package dataarea

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/datareport"
)

// Everything on the data partition is reached from a folder's descriptor,
// one name at a time (the *at calls, openat2): a path of any length works,
// and nothing is looked up through a link. The OS owns the partition:
// stage 2, root before the switch, must never follow a link it planted
// (to /dev/zero, out of the partition), open a FIFO that blocks, or read a
// file of any size it likes.

// resolveBeneath keeps an openat2 under the folder it starts from: no
// symbolic link (nor /proc magic link) is followed anywhere in the path,
// and no mount is crossed.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openAt opens name (a name, or a relative path of names) under the
// folder dir with openat2 and resolveBeneath, never following a link
// (O_NOFOLLOW), never blocking (O_NONBLOCK: a FIFO opens at once), never
// making a terminal its controlling one; O_PATH opens take only
// O_DIRECTORY beside. mode is the new file's with O_CREAT.
func openAt(dir int, name string, flags int, mode uint32) (int, error) {
	f := flags | unix.O_CLOEXEC | unix.O_NOFOLLOW
	if flags&unix.O_PATH == 0 {
		f |= unix.O_NONBLOCK | unix.O_NOCTTY
	}
	how := unix.OpenHow{Flags: uint64(f), Resolve: resolveBeneath}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode)
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dir, name, &how)
		// EAGAIN: a rename elsewhere raced the lookup (openat2(2)).
		if (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)) && i < 16 {
			continue
		}
		if err != nil {
			return -1, err
		}
		return fd, nil
	}
}

// openNoatimeAt is openAt for reading without changing the access time
// (O_NOATIME: root may on every file; without it, plainly).
func openNoatimeAt(dir int, name string, flags int) (int, error) {
	fd, err := openAt(dir, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = openAt(dir, name, flags, 0)
	}
	return fd, err
}

// lstatAt stats name in dir without following a link.
func lstatAt(dir int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dir, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// typeName names the kind of a file mode's type for a sentence.
func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFREG:
		return "a file"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("a file of unknown type %#o", mode&unix.S_IFMT)
}

// what says what name in dir is, for a sentence: "a symbolic link", or
// why it cannot be said.
func what(dir int, name string) string {
	var st unix.Stat_t
	if err := lstatAt(dir, name, &st); err != nil {
		return fmt.Sprintf("unreadable (%v)", err)
	}
	return typeName(st.Mode)
}

// pathError is an error of op on a path of the data partition, the path
// quoted (datareport.Quote): a name cannot forge a console line.
func pathError(op, rel string, err error) error {
	return fmt.Errorf("%s %s: %w", op, datareport.Quote(rel), err)
}

// dirNames reads a folder's names a batch at a time (getdents64), "."
// and ".." left out: a folder of millions of entries costs one buffer, not
// all its names at once.
type dirNames struct {
	fd      int
	buf     []byte
	pending []string
}

func newDirNames(fd int) *dirNames { return &dirNames{fd: fd, buf: make([]byte, 32<<10)} }

// next returns the next name, or false at the end.
func (d *dirNames) next() (string, bool, error) {
	for len(d.pending) == 0 {
		n, err := unix.Getdents(d.fd, d.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		if n <= 0 {
			return "", false, nil
		}
		_, _, d.pending = unix.ParseDirent(d.buf[:n], -1, d.pending[:0])
	}
	name := d.pending[0]
	d.pending = d.pending[1:]
	return name, true, nil
}

// rewind starts the folder again from its first name.
func (d *dirNames) rewind() error {
	d.pending = d.pending[:0]
	_, err := unix.Seek(d.fd, 0, 0)
	return err
}

// procPath names the entry name of the folder dir through /proc (stage
// 2 mounts it): a short path however deep the folder is, for the calls
// that have no *at form (the l*xattr calls, which do not follow the last
// name's link).
func procPath(dir int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dir) + "/" + name
}

// join is rel/name (name when rel is "", rel when name is "").
func join(rel, name string) string {
	switch {
	case rel == "":
		return name
	case name == "":
		return rel
	}
	return rel + "/" + name
}
