package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// UnpackTar unpacks the tar archive at archive (uncompressed, gzip or
// zstd, told by its first bytes) into dir, which must not exist: the tree
// a slot's root_tar gives, then packed like a root_dir.
//
// Only what stays inside dir is unpacked: an entry with an absolute name
// or a ".." in it, below a symbolic link of the archive, or a hard link to
// anything but a regular file unpacked before it is refused, and so is a
// name given twice (a directory may be repeated). Regular files, hard
// links, directories, symbolic links (their targets as they are: they are
// resolved in the slot), device nodes and FIFOs are unpacked; device nodes
// need CAP_MKNOD (root), which the error says. Every entry gets its mode
// (set-user-ID and friends included), its modification time and its
// SCHILY.xattr extended attributes (GNU tar --xattrs) from the archive,
// and its owner when the builder runs as root; otherwise the builder owns
// the files, as a root_dir it unpacked itself would be (erofs roots are
// all root-owned either way: mkfs.erofs --all-root). Directories the
// archive does not list get mode 0755 and SOURCE_DATE_EPOCH as their
// time, so the same archive gives the same tree.
func UnpackTar(ctx context.Context, archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("image: root tar: %w", err)
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return fmt.Errorf("image: root tar %s: %w", archive, err)
	}
	defer r.Close()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("image: root tar: %w", err)
	}
	u := &untar{dir: dir, root: os.Geteuid() == 0, kind: map[string]byte{}}
	if err := u.unpack(ctx, tar.NewReader(r)); err != nil {
		return fmt.Errorf("image: root tar %s: %w", archive, err)
	}
	return nil
}

// decompress returns the tar stream of f: as it is, or gunzipped, or
// zstd-decompressed.
func decompress(f io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}), bytes.HasPrefix(magic, []byte("BZh")):
		return nil, errors.New("xz or bzip2 compressed: give it uncompressed, gzip or zstd compressed (mmdebstrap picks the compression from the file name: ROOT.tar, ROOT.tar.gz, ROOT.tar.zst)")
	}
	return io.NopCloser(br), nil
}

// untar is one UnpackTar.
type untar struct {
	dir  string
	root bool // running as root: owners from the archive
	// kind is the tar type of every name unpacked, directories the
	// archive does not list included (tar.TypeDir).
	kind map[string]byte
	// dirs are the directories, with their headers (nil: not listed),
	// whose mode and time are set at the end (files unpacked into them
	// would change the time; a read-only one would refuse them).
	dirs map[string]*tar.Header
}

func (u *untar) unpack(ctx context.Context, tr *tar.Reader) error {
	u.dirs = map[string]*tar.Header{".": nil}
	u.kind["."] = tar.TypeDir
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := u.entry(h, tr); err != nil {
			return err
		}
	}
	// Directories last, deepest first.
	names := make([]string, 0, len(u.dirs))
	for n := range u.dirs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] > names[j] })
	for _, n := range names {
		h := u.dirs[n]
		if h == nil {
			h = &tar.Header{Mode: 0o755, ModTime: time.Unix(sourceDateEpoch, 0)}
		}
		if err := u.attrs(n, h); err != nil {
			return err
		}
	}
	return nil
}

// name checks an entry's name and returns it cleaned, relative to the
// tree ("." for the tree itself).
func (u *untar) name(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("an entry without a name")
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("entry %q has an absolute name: a root archive names its files relative to the root (tar -C ROOT -c .)", raw)
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", fmt.Errorf("entry %q has a \"..\" in its name: it could point outside the root", raw)
		}
	}
	n := path.Clean(raw)
	// Nothing may be unpacked through a symbolic link: it could point
	// anywhere on the build host.
	for p := path.Dir(n); p != "."; p = path.Dir(p) {
		switch u.kind[p] {
		case tar.TypeSymlink:
			return "", fmt.Errorf("entry %q is below %q, a symbolic link of the archive: unpacking through it could write outside the root", raw, p)
		case tar.TypeDir, 0:
		default:
			return "", fmt.Errorf("entry %q is below %q, which is not a directory", raw, p)
		}
	}
	return n, nil
}

func (u *untar) entry(h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	n, err := u.name(h.Name)
	if err != nil {
		return err
	}
	if k, ok := u.kind[n]; ok && !(k == tar.TypeDir && h.Typeflag == tar.TypeDir) {
		return fmt.Errorf("entry %q is in the archive twice (or below a file): give every file once", h.Name)
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
			return fmt.Errorf("entry %q: extended attributes in libarchive's encoding (bsdtar) are not read: write the archive with GNU tar --xattrs", h.Name)
		}
	}
	p := filepath.Join(u.dir, filepath.FromSlash(n))
	if err := u.parents(n); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if n != "." {
			if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
		u.kind[n], u.dirs[n] = tar.TypeDir, h
		return nil
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	case tar.TypeLink:
		target, err := u.name(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", h.Name, err)
		}
		if k := u.kind[target]; k != tar.TypeReg {
			return fmt.Errorf("hard link %q to %q: want a regular file unpacked before it", h.Name, h.Linkname)
		}
		if err := os.Link(filepath.Join(u.dir, filepath.FromSlash(target)), p); err != nil {
			return err
		}
		// The file's mode, owner and time are its target's.
		u.kind[n] = tar.TypeLink
		return nil
	case tar.TypeSymlink:
		if err := os.Symlink(h.Linkname, p); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		if err := unix.Mknod(p, mode|0o600, dev); err != nil {
			if errors.Is(err, unix.EPERM) && h.Typeflag != tar.TypeFifo {
				return fmt.Errorf("entry %q is a device node, and making one needs root (CAP_MKNOD): build as root, or leave /dev out of the archive (mmdebstrap --skip=output/dev; the slot's /dev is a devtmpfs)", h.Name)
			}
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	default:
		return fmt.Errorf("entry %q has tar type %q, which a root file system cannot hold", h.Name, h.Typeflag)
	}
	u.kind[n] = h.Typeflag
	if h.Typeflag == tar.TypeRegA {
		u.kind[n] = tar.TypeReg
	}
	return u.attrs(n, h)
}

// parents makes the directories above n that the archive has not listed
// (yet).
func (u *untar) parents(n string) error {
	var missing []string
	for p := path.Dir(n); p != "." && u.kind[p] == 0; p = path.Dir(p) {
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(filepath.Join(u.dir, filepath.FromSlash(missing[i])), 0o755); err != nil {
			return err
		}
		u.kind[missing[i]], u.dirs[missing[i]] = tar.TypeDir, nil
	}
	return nil
}

// attrs gives the unpacked n its owner (as root), mode, extended
// attributes and modification time from h.
func (u *untar) attrs(n string, h *tar.Header) error {
	p := filepath.Join(u.dir, filepath.FromSlash(n))
	symlink := h.Typeflag == tar.TypeSymlink
	if u.root {
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
	}
	if !symlink {
		// After chown, which clears set-user-ID.
		if err := unix.Chmod(p, uint32(h.Mode&0o7777)); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
	var xattrs []string
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			xattrs = append(xattrs, k)
		}
	}
	sort.Strings(xattrs)
	for _, k := range xattrs {
		attr := strings.TrimPrefix(k, "SCHILY.xattr.")
		if err := unix.Lsetxattr(p, attr, []byte(h.PAXRecords[k]), 0); err != nil {
			return fmt.Errorf("entry %q: extended attribute %s: %w (security.* and trusted.* attributes need root; the file system under the work folder must take them)", h.Name, attr, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("entry %q: %w", h.Name, err)
	}
	return nil
}

// removeTree removes a tree UnpackTar made, its read-only directories
// included.
func removeTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
