package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/keelboot/keel/builder/kmod"
	"github.com/keelboot/keel/format/cpio"
	"github.com/keelboot/keel/format/layout"
)

// ModulesOrderPath is the file in the initramfs that lists the modules to
// load, one absolute path per line, in load order; lines starting with '#'
// are comments. keel-init reads it (package format/layout names it).
//
// A loader should take ENODEV from finit_module as "no such hardware" and
// go on, as modprobe does: the list can hold modules for hardware a
// machine lacks (the alias crc32c also names crc32c_intel, which needs
// SSE4.2, absent from QEMU's TCG CPU; efivarfs fails without EFI).
const ModulesOrderPath = layout.ModulesPath

// ModulesRoot is where modules go: ModulesRoot/<version>/<path in the
// kernel's tree>, as modprobe would find them.
const ModulesRoot = "/lib/modules"

// Compression is how the cpio archive is compressed. Debian's kernels
// unpack all three (CONFIG_RD_ZSTD, CONFIG_RD_GZIP).
type Compression string

const (
	// Zstd is the default: the smallest of the three here and fast to
	// unpack (github.com/klauspost/compress/zstd, pure Go).
	Zstd Compression = "zstd"
	// Gzip uses the standard library.
	Gzip Compression = "gzip"
	// None writes the plain cpio archive.
	None Compression = "none"
)

// Spec says what goes into an initramfs.
type Spec struct {
	// Init is the host path of the init binary (static: CGO_ENABLED=0),
	// placed at /init with mode 0755. Required.
	Init string
	// ModulesDir is the kernel's lib/modules/<version> folder on the host
	// (scripts/fetch-kernel.sh leaves it at OUTDIR/modules). Required when
	// Modules is not empty.
	ModulesDir string
	// KernelVersion names the folder under /lib/modules in the initramfs;
	// "" takes the base name of ModulesDir with symlinks resolved.
	KernelVersion string
	// Modules are the modules to load, by name or alias ('-' and '_'
	// equal). The initramfs gets their closure, and ModulesOrderPath lists
	// it in load order; names wanted first are loaded first. Built-in
	// modules are skipped.
	Modules []string
	// Softdeps also includes the modules' soft dependencies (softdep=).
	Softdeps bool
	// Files are added as well; parent folders are added as needed.
	Files []File
	// Compression of the archive; "" means Zstd.
	Compression Compression
}

// File is one extra entry in the initramfs.
type File struct {
	// Path is the absolute path in the initramfs, e.g. /etc/keel/board.json.
	Path string
	// Mode holds the permission bits and the type: none for a regular file,
	// fs.ModeDir, fs.ModeSymlink, fs.ModeDevice (block) or
	// fs.ModeDevice|fs.ModeCharDevice. 0 means 0644 for a regular file,
	// 0755 for a folder.
	Mode fs.FileMode
	// Data is a regular file's contents, or Source names the host file to
	// read them from (one of the two, or neither for an empty file).
	Data   []byte
	Source string
	// Target is a symlink's target.
	Target string
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
}

// Image is a planned initramfs: the archive content and what was decided
// on the way.
type Image struct {
	// Archive holds every entry.
	Archive *cpio.Archive
	// KernelVersion is the folder under /lib/modules (empty without
	// modules).
	KernelVersion string
	// Modules are the modules included, in load order, with Path relative
	// to Spec.ModulesDir.
	Modules []*kmod.Module
	// Compression is the compression Build applies.
	Compression Compression
}

// Build writes the initramfs spec describes to w: Plan, then Write.
func Build(w io.Writer, spec Spec) error {
	im, err := Plan(spec)
	if err != nil {
		return err
	}
	return im.Write(w)
}

// Plan reads every input and lays out the initramfs without writing it.
func Plan(spec Spec) (*Image, error) {
	c := spec.Compression
	if c == "" {
		c = Zstd
	}
	switch c {
	case Zstd, Gzip, None:
	default:
		return nil, fmt.Errorf("initramfs: unknown compression %q (want %q, %q or %q)", c, Zstd, Gzip, None)
	}
	im := &Image{Archive: &cpio.Archive{}, Compression: c}
	a := im.Archive

	if spec.Init == "" {
		return nil, errors.New("initramfs: Spec.Init is empty: name the init binary (keel-init, built with CGO_ENABLED=0)")
	}
	init, err := os.ReadFile(spec.Init)
	if err != nil {
		return nil, fmt.Errorf("initramfs: reading the init binary: %w", err)
	}
	if err := a.File("/init", 0o755, init); err != nil {
		return nil, err
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		if err := a.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := a.Dir("/tmp", 0o1777); err != nil {
		return nil, err
	}
	if err := a.CharDev("/dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}

	if len(spec.Modules) > 0 {
		if err := im.addModules(spec); err != nil {
			return nil, err
		}
	}

	for _, f := range spec.Files {
		if err := addFile(a, f); err != nil {
			return nil, err
		}
	}
	return im, nil
}

func (im *Image) addModules(spec Spec) error {
	if spec.ModulesDir == "" {
		return fmt.Errorf("initramfs: Spec.Modules lists %d modules but Spec.ModulesDir is empty: name the kernel's lib/modules/<version> folder (make kernel: build/kernel/amd64/modules)", len(spec.Modules))
	}
	dir, err := filepath.EvalSymlinks(spec.ModulesDir)
	if err != nil {
		return fmt.Errorf("initramfs: modules folder: %w (make kernel fetches one into build/kernel/amd64)", err)
	}
	ver := spec.KernelVersion
	if ver == "" {
		ver = filepath.Base(dir)
	}
	if ver == "" || ver == "." || ver == "/" || strings.ContainsAny(ver, "/\x00") {
		return fmt.Errorf("initramfs: kernel version %q is not a folder name: set Spec.KernelVersion", ver)
	}
	tree, err := kmod.Scan(dir)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	order, err := tree.Resolve(spec.Modules, kmod.Options{Softdeps: spec.Softdeps})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	im.KernelVersion, im.Modules = ver, order

	var list bytes.Buffer
	fmt.Fprintf(&list, "# %d kernel modules for %s, in load order (keel initramfs)\n", len(order), ver)
	for _, m := range order {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(m.Path)))
		if err != nil {
			return fmt.Errorf("initramfs: module %s: %w", m.Name, err)
		}
		p := path.Join(ModulesRoot, ver, m.Path)
		if err := im.Archive.File(p, 0o644, data); err != nil {
			return err
		}
		fmt.Fprintln(&list, p)
	}
	return im.Archive.File(ModulesOrderPath, 0o644, list.Bytes())
}

func addFile(a *cpio.Archive, f File) error {
	if !strings.HasPrefix(f.Path, "/") {
		return fmt.Errorf("initramfs: file path %q is not absolute (want /etc/..., say)", f.Path)
	}
	perm := uint32(f.Mode.Perm())
	if f.Mode&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if f.Mode&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if f.Mode&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	noData := func(kind string) error {
		if f.Data != nil || f.Source != "" || f.Target != "" {
			return fmt.Errorf("initramfs: %s: a %s takes no Data, Source or Target", f.Path, kind)
		}
		return nil
	}
	switch t := f.Mode.Type(); t {
	case 0:
		if f.Source != "" && f.Data != nil {
			return fmt.Errorf("initramfs: %s: both Data and Source set; keep one", f.Path)
		}
		if f.Target != "" {
			return fmt.Errorf("initramfs: %s: Target set on a regular file (add fs.ModeSymlink to Mode for a symlink)", f.Path)
		}
		data := f.Data
		if f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return fmt.Errorf("initramfs: %s: %w", f.Path, err)
			}
		}
		if f.Mode == 0 {
			perm = 0o644
		}
		return a.File(f.Path, perm, data)
	case fs.ModeDir:
		if err := noData("folder"); err != nil {
			return err
		}
		if perm == 0 {
			perm = 0o755
		}
		return a.Dir(f.Path, perm)
	case fs.ModeSymlink:
		if f.Target == "" || f.Data != nil || f.Source != "" {
			return fmt.Errorf("initramfs: %s: a symlink takes a Target and no Data or Source", f.Path)
		}
		return a.Symlink(f.Path, f.Target)
	case fs.ModeDevice | fs.ModeCharDevice:
		if err := noData("character device"); err != nil {
			return err
		}
		return a.CharDev(f.Path, perm, f.Major, f.Minor)
	case fs.ModeDevice:
		if err := noData("block device"); err != nil {
			return err
		}
		return a.BlockDev(f.Path, perm, f.Major, f.Minor)
	default:
		return fmt.Errorf("initramfs: %s: file type %v not supported (regular, folder, symlink or device)", f.Path, t)
	}
}

// Write writes the archive, compressed as im.Compression says.
func (im *Image) Write(w io.Writer) error {
	raw, err := im.Archive.Bytes()
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return Compress(w, raw, im.Compression)
}

// Compress writes data to w compressed with c, in a form Linux's initramfs
// unpacker reads. The output depends only on data and c.
func Compress(w io.Writer, data []byte, c Compression) error {
	switch c {
	case None:
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("initramfs: writing: %w", err)
		}
		return nil
	case Gzip:
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return err
		}
		// No name, no mtime in the header: deterministic.
		if _, err := zw.Write(data); err != nil {
			return fmt.Errorf("initramfs: writing: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("initramfs: writing: %w", err)
		}
		return nil
	case Zstd, "":
		// One frame with the content size; a window the kernel's
		// decompressor (lib/decompress_unzstd.c, up to 128 MiB) accepts.
		// EncodeAll does not depend on goroutine scheduling.
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(8<<20),
			zstd.WithEncoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("initramfs: zstd: %w", err)
		}
		out := enc.EncodeAll(data, make([]byte, 0, len(data)/2))
		enc.Close()
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("initramfs: writing: %w", err)
		}
		return nil
	}
	return fmt.Errorf("initramfs: unknown compression %q (want %q, %q or %q)", c, Zstd, Gzip, None)
}

// Decompress returns a reader of the cpio archive inside an initramfs
// compressed with any Compression, and which one it was, from the first
// bytes (zstd 28 b5 2f fd, gzip 1f 8b, cpio "070701").
func Decompress(r io.Reader) (io.Reader, Compression, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(6)
	if err != nil {
		return nil, "", fmt.Errorf("initramfs: reading the first bytes: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, "", fmt.Errorf("initramfs: zstd: %w", err)
		}
		return zr.IOReadCloser(), Zstd, nil
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("initramfs: gzip: %w", err)
		}
		return zr, Gzip, nil
	case string(magic) == cpio.Magic:
		return br, None, nil
	}
	return nil, "", fmt.Errorf("initramfs: first bytes % x are neither zstd, gzip nor a newc cpio archive", magic)
}

// ReadModulesOrder parses a ModulesOrderPath file: the module paths, in
// load order.
func ReadModulesOrder(r io.Reader) ([]string, error) {
	var paths []string
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		paths = append(paths, line)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("initramfs: reading %s: %w", ModulesOrderPath, err)
	}
	return paths, nil
}
