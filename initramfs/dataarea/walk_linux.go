//go:build linux

package dataarea

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/datareport"
)

// Limits bound every walk over the data partition: the removal of a
// leftover, the size walk and the copy of a snapshot, the reading of
// slots/ and quarantine/. A zero field takes its default.
//
// The bounds are on entries and depth, not on time. Each walk is finite
// by them (a folder loop of a corrupted file system included), every entry
// pets the watchdog (Options.Progress) and so does every copyChunk a copy
// writes, and a step that hangs (an I/O that never completes) pets it no
// more, so the watchdog resets the machine. A wall-clock bound would only
// turn a slow but progressing walk (a large area on slow flash) into a
// trial that fails every time, or a leftover that is set aside instead of
// removed.
type Limits struct {
	// Entries is the most entries one walk visits: MaxEntries by
	// default, the inodes of a 64 GiB ext4 made with mke2fs's defaults
	// (one per 16 KiB). The walks keep nothing per entry but what the
	// copy's hard links need (maxLinks), so the bound is one of time: a
	// copy of that many small files takes minutes.
	Entries int
	// Depth is the deepest folder a walk enters below its top: MaxDepth
	// by default. A walk holds a folder descriptor per level (the copy
	// two: source and copy), and PID 1 has 4096 (the kernel's hard limit
	// for init, which Go raises the soft one to); no application's data
	// goes that deep, while a path beyond PATH_MAX (4096 bytes, 16 levels
	// of long names) is well within it.
	Depth int
}

// The default Limits.
const (
	MaxEntries = 1 << 22
	MaxDepth   = 256
)

func (l Limits) orDefaults() Limits {
	if l.Entries <= 0 {
		l.Entries = MaxEntries
	}
	if l.Depth <= 0 {
		l.Depth = MaxDepth
	}
	return l
}

// ErrBound: a walk over the data partition reached one of its Limits.
var ErrBound = errors.New("beyond the bounds of a walk over the data partition")

// walk counts what one walk visits and stops it at its bounds. The
// paths its functions take are relative to the walk's top, the folder
// prefix of the partition (for messages: pathError(w.path(rel))).
type walk struct {
	lim      Limits
	progress func()
	prefix   string
	n        int
}

func newWalk(o Options, prefix string) *walk {
	return &walk{lim: o.Limits, progress: o.Progress, prefix: prefix}
}

// path is rel's path on the partition.
func (w *walk) path(rel string) string { return join(w.prefix, rel) }

// visit counts the entry rel and pets the watchdog.
func (w *walk) visit(rel string) error {
	w.n++
	if w.n > w.lim.Entries {
		return fmt.Errorf("%w: more than %d entries (the last %s)", ErrBound, w.lim.Entries, datareport.Quote(w.path(rel)))
	}
	w.progress()
	return nil
}

// enter checks that the folder rel, depth levels below the walk's top,
// may be entered.
func (w *walk) enter(rel string, depth int) error {
	if depth > w.lim.Depth {
		return fmt.Errorf("%w: %s is deeper than %d folders", ErrBound, datareport.Quote(w.path(rel)), w.lim.Depth)
	}
	return nil
}

// removeTree removes name in the folder dir (rel is its path from the
// walk's top) and, if it is a folder, all it holds, never
// following a link (a link is removed, not what it points to). An entry
// that cannot be removed (immutable or append-only, chattr +i/+a) does
// not stop it: it removes what it can and returns the first error; a
// bound does stop it (ErrBound).
func removeTree(dir int, name, rel string, w *walk, depth int) error {
	var st unix.Stat_t
	if err := lstatAt(dir, name, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return pathError("lstat", w.path(rel), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return pathError("unlink", w.path(rel), err)
		}
		return nil
	}
	if err := w.enter(rel, depth); err != nil {
		return err
	}
	fd, err := openAt(dir, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return pathError("open", w.path(rel), err)
	}
	defer unix.Close(fd)
	var first error
	d := newDirNames(fd)
	// Removing while reading: getdents may in principle miss a name;
	// the folder then is not empty, and it is read again.
	for pass := 0; ; pass++ {
		for {
			n, ok, err := d.next()
			if err != nil {
				return pathError("read", w.path(rel), err)
			}
			if !ok {
				break
			}
			sub := join(rel, n)
			if err := w.visit(sub); err != nil {
				return err
			}
			err = removeTree(fd, n, sub, w, depth+1)
			if errors.Is(err, ErrBound) {
				return err
			}
			if err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
		err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case !errors.Is(err, unix.ENOTEMPTY) || pass == 2:
			return pathError("rmdir", w.path(rel), err)
		}
		if err := d.rewind(); err != nil {
			return pathError("read", w.path(rel), err)
		}
	}
}

// devIno identifies a file: the key of hard links.
type devIno struct{ dev, ino uint64 }

// linkTable remembers the files with several links in a tree, so that
// the copy links a file again instead of copying it twice (and the size
// walk counts it once), within bounds on memory: maxLinks files, and
// maxLinkBytes of their copies' paths. A file beyond them is copied (and
// counted) once for every link, as is one whose path is too long to link
// to (PATH_MAX).
type linkTable struct {
	m     map[devIno]string
	bytes int
	full  bool // reported once
}

const (
	maxLinks     = 1 << 16
	maxLinkBytes = 16 << 20
)

func newLinkTable() *linkTable { return &linkTable{m: map[devIno]string{}} }

// lookup returns the path (relative to the copy's top) of the first copy
// of k, "" for a file left out (a socket).
func (t *linkTable) lookup(k devIno) (string, bool) {
	p, ok := t.m[k]
	return p, ok
}

// add records k's first copy at rel; false when it does not fit.
func (t *linkTable) add(k devIno, rel string) bool {
	if len(rel) >= unix.PathMax || len(t.m) >= maxLinks || t.bytes+len(rel) > maxLinkBytes {
		return false
	}
	t.m[k] = rel
	t.bytes += len(rel)
	return true
}

// size is the space a copy of the folder dir (rel: its path from the
// walk's top, which is the area's folder) takes: its regular files' allocated data (their sizes
// rounded up to 4 KiB blocks, or the blocks they have when that is less:
// a sparse file's holes stay holes), a file with several hard links in the
// tree once (linkTable), and a block for every entry (folders, inodes'
// extended attributes beyond what fits in the inode).
func size(dir int, rel string, w *walk, links *linkTable, depth int) (uint64, error) {
	var total uint64
	d := newDirNames(dir)
	for {
		n, ok, err := d.next()
		if err != nil {
			return total, pathError("read", w.path(rel), err)
		}
		if !ok {
			return total, nil
		}
		sub := join(rel, n)
		if err := w.visit(sub); err != nil {
			return total, err
		}
		var st unix.Stat_t
		if err := lstatAt(dir, n, &st); err != nil {
			return total, pathError("lstat", w.path(sub), err)
		}
		total += 4096
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if st.Nlink > 1 {
				k := devIno{st.Dev, st.Ino}
				if _, ok := links.lookup(k); ok {
					continue
				}
				links.add(k, sub)
			}
			total += min((uint64(st.Size)+4095)&^4095, uint64(st.Blocks)*512)
		case unix.S_IFDIR:
			if err := w.enter(sub, depth+1); err != nil {
				return total, err
			}
			fd, err := openNoatimeAt(dir, n, unix.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				return total, pathError("open", w.path(sub), err)
			}
			s, err := size(fd, sub, w, links, depth+1)
			unix.Close(fd)
			total += s
			if err != nil {
				return total, err
			}
		}
	}
}
