package image

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/keelboot/keel/format/layout"
)

// File system types Rootfs makes and FSType recognises.
const (
	FSErofs    = "erofs"
	FSExt4     = "ext4"
	FSSquashfs = "squashfs" // recognised in prebuilt images only
)

// RootfsOptions describe a file system image.
type RootfsOptions struct {
	// Type is FSErofs (the default) or FSExt4.
	Type string
	// Dir is the directory tree to pack. It is required for erofs; for
	// ext4, "" makes an empty file system (the data partition).
	Dir string
	// Size is the image size in bytes for ext4 (required, a multiple of
	// the 4 KiB block size). erofs images are as large as their content; a Size > 0 is
	// then the most they may take.
	Size int64
	// UUID is the file system UUID (canonical text form); "" lets the
	// tool pick a random one.
	UUID string
	// Label is the volume label (ext4 only, up to 16 bytes).
	Label string
}

// Rootfs makes a file system image at out (replacing any file there) and
// returns its size in bytes. Neither type needs root or a loop device:
//
//   - erofs: mkfs.erofs -T0 --all-root -U UUID: every time stamp 0, every
//     file owned by root, a fixed UUID, so the same tree gives the same
//     bytes. Uncompressed (the slot kernels load erofs as a module and need
//     no decompressor for it).
//   - ext4: mkfs.ext4 -d DIR with the root directory owned by 0:0, a fixed
//     UUID and hash seed, and E2FSPROGS_FAKE_TIME for the superblock times.
//     Files keep their owners and times from DIR (mke2fs has no
//     --all-root).
func Rootfs(ctx context.Context, out string, o RootfsOptions) (int64, error) {
	if o.Type == "" {
		o.Type = FSErofs
	}
	if o.Dir != "" {
		st, err := os.Stat(o.Dir)
		if err != nil {
			return 0, fmt.Errorf("image: root file system tree: %w", err)
		}
		if !st.IsDir() {
			return 0, fmt.Errorf("image: root file system tree %s is not a directory", o.Dir)
		}
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("image: %w", err)
	}
	switch o.Type {
	case FSErofs:
		if o.Dir == "" {
			return 0, errors.New("image: erofs image: no directory to pack given")
		}
		if o.Label != "" {
			return 0, errors.New("image: erofs image: mkfs.erofs 1.5 cannot set a label; leave Label empty")
		}
		args := []string{"-T0", "--all-root", "--quiet"}
		if o.UUID != "" {
			args = append(args, "-U", o.UUID)
		}
		if _, err := run(ctx, "mkfs.erofs", append(args, out, o.Dir)...); err != nil {
			return 0, err
		}
		st, err := os.Stat(out)
		if err != nil {
			return 0, fmt.Errorf("image: %w", err)
		}
		if o.Size > 0 && st.Size() > o.Size {
			return st.Size(), fmt.Errorf("image: the erofs image of %s is %s, more than the %s allowed: %w",
				o.Dir, mib(st.Size()), mib(o.Size), ErrTooLarge)
		}
		return st.Size(), nil
	case FSExt4:
		if o.Size <= 0 || o.Size%4096 != 0 {
			return 0, fmt.Errorf("image: ext4 image size %d: want a positive multiple of 4096 bytes (the block size)", o.Size)
		}
		if len(o.Label) > 16 {
			return 0, fmt.Errorf("image: ext4 label %q is longer than 16 bytes", o.Label)
		}
		f, err := os.Create(out)
		if err != nil {
			return 0, fmt.Errorf("image: %w", err)
		}
		err = f.Truncate(o.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, fmt.Errorf("image: %w", err)
		}
		ext := "root_owner=0:0,nodiscard"
		// 4 KiB blocks also on small file systems (mke2fs would pick
		// 1 KiB for its "small" type).
		args := []string{"-q", "-F", "-t", "ext4", "-b", "4096"}
		if o.UUID != "" {
			args = append(args, "-U", o.UUID)
			ext += ",hash_seed=" + o.UUID
		}
		if o.Label != "" {
			args = append(args, "-L", o.Label)
		}
		args = append(args, "-E", ext)
		if o.Dir != "" {
			args = append(args, "-d", o.Dir)
		}
		args = append(args, out, strconv.FormatInt(o.Size/4096, 10))
		if _, err := run(ctx, "mkfs.ext4", args...); err != nil {
			return 0, fmt.Errorf("%w (is %s too small for the tree?)", err, mib(o.Size))
		}
		return o.Size, nil
	}
	return 0, fmt.Errorf("image: file system type %q: want %s or %s", o.Type, FSErofs, FSExt4)
}

// FSType recognises the file system in an image by its superblock magic:
// FSErofs, FSExt4 (ext2/3/4 alike), FSSquashfs, or "" for none of them.
func FSType(r io.ReaderAt) (string, error) {
	b := make([]byte, 2048)
	n, err := r.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	b = b[:n]
	switch {
	case len(b) >= 4 && string(b[:4]) == "hsqs":
		return FSSquashfs, nil
	case len(b) >= 1028 && binary.LittleEndian.Uint32(b[1024:]) == 0xE0F5E1E2:
		return FSErofs, nil
	case len(b) >= 1024+0x3a && binary.LittleEndian.Uint16(b[1024+0x38:]) == 0xEF53:
		return FSExt4, nil
	}
	return "", nil
}

// ErrTooLarge is wrapped by errors about something that does not fit into
// its partition (or its size limit); the message names both sizes.
var ErrTooLarge = errors.New("does not fit")

func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB (%d bytes)", n>>20, n)
	}
	return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/(1<<20), n)
}

// sizeOf is n for logs: "0.5 MiB".
func sizeOf(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// copyRootTree copies the tree src to dst (removed first): hard links when
// both are on one file system, else a copy (cp -a).
func copyRootTree(ctx context.Context, src, dst string) error {
	if err := removeTree(dst); err != nil {
		return err
	}
	if err := exec.CommandContext(ctx, "cp", "-al", src+"/.", dst).Run(); err == nil {
		return nil
	}
	if err := removeTree(dst); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", src+"/.", dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s: %v: %s", src, err, out)
	}
	return nil
}

// addChannel writes the channel's URL and root.json into the root tree
// (replacing what is there: a hard link is removed, not written through).
func addChannel(tree string, c *Channel) error {
	root, err := os.ReadFile(c.Root)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{layout.ChannelURLPath: []byte(c.URL + "\n"), layout.ChannelRootPath: root} {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
