package efivars

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/foxboron/go-uefi/efi/attributes"
	"github.com/spf13/afero"
)

// dirFS lets go-uefi, which names variables by their path under
// /sys/firmware/efi/efivars, work on any directory: it maps that prefix to
// dir. In a plain directory (atomic) writes go to a temporary file renamed
// over the variable on Close, as a firmware variable write is atomic.
type dirFS struct {
	base   afero.Fs
	dir    string
	atomic bool
}

var _ afero.Fs = (*dirFS)(nil)

func newDirFS(dir string, atomic bool) *dirFS {
	return &dirFS{base: afero.NewBasePathFs(afero.NewOsFs(), dir), dir: dir, atomic: atomic}
}

func (d *dirFS) rel(name string) string {
	name = path.Clean(name)
	if r, ok := strings.CutPrefix(name, attributes.Efivars); ok {
		name = r
	}
	if name == "" {
		name = "/"
	}
	return name
}

func (d *dirFS) Create(name string) (afero.File, error) {
	return d.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}
func (d *dirFS) Mkdir(name string, perm os.FileMode) error { return d.base.Mkdir(d.rel(name), perm) }
func (d *dirFS) MkdirAll(p string, perm os.FileMode) error { return d.base.MkdirAll(d.rel(p), perm) }
func (d *dirFS) Open(name string) (afero.File, error)      { return d.base.Open(d.rel(name)) }
func (d *dirFS) Remove(name string) error                  { return d.base.Remove(d.rel(name)) }
func (d *dirFS) RemoveAll(p string) error                  { return d.base.RemoveAll(d.rel(p)) }
func (d *dirFS) Rename(o, n string) error                  { return d.base.Rename(d.rel(o), d.rel(n)) }
func (d *dirFS) Stat(name string) (os.FileInfo, error)     { return d.base.Stat(d.rel(name)) }
func (d *dirFS) Name() string                              { return "keel-efivars-dir" }
func (d *dirFS) Chmod(name string, m os.FileMode) error    { return d.base.Chmod(d.rel(name), m) }
func (d *dirFS) Chown(name string, uid, gid int) error     { return d.base.Chown(d.rel(name), uid, gid) }
func (d *dirFS) Chtimes(name string, a, m time.Time) error { return d.base.Chtimes(d.rel(name), a, m) }

func (d *dirFS) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	if !d.atomic || flag&(os.O_WRONLY|os.O_RDWR) == 0 || flag&os.O_APPEND != 0 {
		return d.base.OpenFile(d.rel(name), flag, perm)
	}
	final := filepath.Join(d.dir, filepath.FromSlash(strings.TrimPrefix(d.rel(name), "/")))
	tmp, err := os.CreateTemp(filepath.Dir(final), ".keel-tmp-*")
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: tmp, final: final, perm: perm}, nil
}

// atomicFile is written in full, then renamed over the final name.
type atomicFile struct {
	*os.File
	final string
	perm  os.FileMode
}

func (f *atomicFile) Close() error {
	tmp := f.File.Name()
	err := f.File.Chmod(f.perm)
	if err == nil {
		err = f.File.Sync()
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.final)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if dir, err := os.Open(filepath.Dir(f.final)); err == nil {
		defer dir.Close()
		return dir.Sync()
	}
	return nil
}
