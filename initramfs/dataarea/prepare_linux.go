//go:build linux

package dataarea

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
		err = replace(slots, s.Slot, "", s.Install, o)
	case Snapshot:
		err = replace(slots, s.Slot, filepath.Join(slots, p.Source, AreaData), s.Install, o)
	}
	if err != nil {
		return p, "", fmt.Errorf("data: %s of slot %s's area: %w", p.Action, s.Slot, err)
	}
	return p, area, nil
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
// folder and removes the old one. src is only read.
func replace(slots, slot, src, install string, o Options) error {
	dst := filepath.Join(slots, slot)
	tmp := dst + newSuffix
	if src != "" {
		need, err := size(src)
		if err != nil {
			return fmt.Errorf("measuring slot area %s: %w", src, err)
		}
		free, err := o.Free(slots)
		if err != nil {
			return fmt.Errorf("free space on the data partition: %w", err)
		}
		if need+Reserve > free {
			return fmt.Errorf("%w: %d MiB to copy and %d MiB to keep free, %d MiB free: free space in %s or the other slot's area, then install again",
				ErrNoSpace, need>>20, Reserve>>20, free>>20, SharedDir)
		}
		o.Logf("data: copying %.1f MiB into %s", float64(need)/(1<<20), tmp)
	}
	if err := mkdir(o, tmp); err != nil {
		return err
	}
	if src != "" {
		if err := copyTree(src, filepath.Join(tmp, AreaData), o); err != nil {
			return err
		}
	} else if err := mkdir(o, filepath.Join(tmp, AreaData)); err != nil {
		return err
	}
	if err := o.Cut(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, InstallFile), []byte(install+"\n"), 0o644); err != nil {
		return err
	}
	if err := syncFS(tmp); err != nil {
		return err
	}
	old := dst + oldSuffix
	if _, err := os.Lstat(dst); err == nil {
		if err := o.Cut(); err != nil {
			return err
		}
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := o.Cut(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if err := syncDir(slots); err != nil {
		return err
	}
	if err := o.Cut(); err != nil {
		return err
	}
	return os.RemoveAll(old)
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

// size is the space a copy of the tree at dir takes: its files' sizes
// rounded up to 4 KiB blocks, and a block for every other entry.
func size(dir string) (uint64, error) {
	var n uint64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += 4096
		if fi.Mode().IsRegular() {
			n += (uint64(fi.Size()) + 4095) &^ 4095
		}
		return nil
	})
	return n, err
}

// copyTree copies the tree at src to dst (which must not exist):
// folders, regular files (a reflink where the file system has them),
// symbolic links and FIFOs, with their modes, owners and modification
// times. Sockets and device nodes are not copied (logged): they belong to
// a running system. Hard links become separate files; extended
// attributes are not copied.
func copyTree(src, dst string, o Options) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		o.Progress()
		if err := o.Cut(); err != nil {
			return err
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			if err := os.Mkdir(to, m.Perm()); err != nil {
				return err
			}
		case m.IsRegular():
			if err := copyFile(p, to, m.Perm(), o.Progress); err != nil {
				return err
			}
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case m&fs.ModeNamedPipe != 0:
			if err := unix.Mkfifo(to, uint32(m.Perm())); err != nil {
				return &fs.PathError{Op: "mkfifo", Path: to, Err: err}
			}
		default:
			o.Logf("data: not copying %s (%s): not a file, folder, link or FIFO", rel, m.Type())
			return nil
		}
		return attrs(to, fi)
	})
}

// attrs gives to the owner, mode and modification time of fi.
func attrs(to string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*unix.Stat_t)
	if !ok {
		st = new(unix.Stat_t)
		if err := unix.Lstat(to, st); err != nil {
			return err
		}
	}
	if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		if err := os.Chmod(to, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(fi.ModTime().UnixNano()), unix.NsecToTimespec(fi.ModTime().UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, to, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copyFile copies a regular file: a reflink (FICLONE) when the file
// system can, else the bytes, calling progress every copyChunk bytes.
func copyFile(src, dst string, perm fs.FileMode, progress func()) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) != nil {
		for {
			n, err := io.CopyN(out, in, copyChunk)
			if err == io.EOF || (err == nil && n < copyChunk) {
				break
			}
			if err != nil {
				out.Close()
				return err
			}
			progress()
		}
	}
	return out.Close()
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
