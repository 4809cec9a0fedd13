package image

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ESPBootPath is where UEFI firmware looks for the removable-media boot
// loader on x86-64 (UEFI 2.10 section 3.5.1.1), relative to the ESP root.
const ESPBootPath = "EFI/BOOT/BOOTX64.EFI"

// ESPOptions describe a FAT EFI system partition image.
type ESPOptions struct {
	// Size is the image size in bytes: the partition's size. It must be a
	// multiple of 1 KiB. From 40 MiB up the file system is FAT32 (what
	// UEFI 2.10 section 13.3.1.1 asks of an ESP); below, mkfs.vfat picks
	// FAT12 or FAT16, which UEFI firmware reads as well.
	Size int64
	// Files maps paths inside the ESP ("EFI/BOOT/BOOTX64.EFI", always
	// with forward slashes) to files on the host.
	Files map[string]string
	// VolumeID is the FAT volume serial number; Label the volume label
	// (up to 11 characters; "" means "ESP").
	VolumeID uint32
	Label    string
}

// ESP makes a FAT image at out (which must not exist) with mkfs.vfat and
// fills it with mmd and mcopy: no root, no loop device. Directories are
// created as needed. Time stamps are fixed (mkfs.vfat --invariant,
// SOURCE_DATE_EPOCH for mtools, mcopy -m from a fixed mtime), so the same
// inputs give the same bytes.
func ESP(ctx context.Context, out string, o ESPOptions) error {
	if o.Size <= 0 || o.Size%1024 != 0 {
		return fmt.Errorf("image: ESP size %d: want a positive multiple of 1024 bytes", o.Size)
	}
	if o.Label == "" {
		o.Label = "ESP"
	}
	if len(o.Label) > 11 {
		return fmt.Errorf("image: ESP label %q is longer than 11 characters", o.Label)
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("image: ESP image %s already exists: mkfs.vfat -C would refuse it; remove it first", out)
	}
	args := []string{"-C", "--invariant", "-i", fmt.Sprintf("%08x", o.VolumeID), "-n", o.Label}
	if o.Size >= 40<<20 {
		args = append(args, "-F", "32")
	}
	args = append(args, out, fmt.Sprint(o.Size/1024))
	if _, err := run(ctx, "mkfs.vfat", args...); err != nil {
		return err
	}

	names := make([]string, 0, len(o.Files))
	for p := range o.Files {
		names = append(names, p)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	var mkdirs []string
	for _, p := range names {
		clean := path.Clean("/" + strings.TrimPrefix(p, "/"))
		if clean == "/" || strings.Contains(p, `\`) {
			return fmt.Errorf("image: ESP path %q: want a file path with forward slashes, like %s", p, ESPBootPath)
		}
		for d := path.Dir(clean); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			mkdirs = append(mkdirs, d)
		}
	}
	sort.Strings(mkdirs) // parents sort before their children
	if len(mkdirs) > 0 {
		args := []string{"-i", out}
		for _, d := range mkdirs {
			args = append(args, "::"+d)
		}
		if _, err := run(ctx, "mmd", args...); err != nil {
			return err
		}
	}
	stamp := time.Unix(sourceDateEpoch, 0)
	for _, p := range names {
		src := o.Files[p]
		st, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("image: ESP file %s: %w", p, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("image: ESP file %s: %s is not a regular file", p, src)
		}
		if st.Size() > o.Size {
			return fmt.Errorf("image: ESP file %s (%s, %d bytes) is larger than the %d-byte ESP: grow the esp partition", p, src, st.Size(), o.Size)
		}
		// mcopy -m keeps the source's mtime: copy through a file whose
		// mtime is fixed rather than touching the caller's file.
		if !st.ModTime().Equal(stamp) {
			tmp, err := copyTemp(src, out+".src")
			if err != nil {
				return fmt.Errorf("image: ESP file %s: %w", p, err)
			}
			defer os.Remove(tmp)
			if err := os.Chtimes(tmp, stamp, stamp); err != nil {
				return fmt.Errorf("image: ESP file %s: %w", p, err)
			}
			src = tmp
		}
		if _, err := run(ctx, "mcopy", "-m", "-i", out, src, "::"+path.Clean("/"+strings.TrimPrefix(p, "/"))); err != nil {
			return fmt.Errorf("%w (does the file fit into the %d-byte ESP?)", err, o.Size)
		}
	}
	return nil
}

// copyTemp copies src to a new file next to prefix and returns its name.
func copyTemp(src, prefix string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(prefix), filepath.Base(prefix)+"-*")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
