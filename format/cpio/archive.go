package cpio

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Archive is a set of records keyed by path, written deterministically:
// sorted by name (a folder before what it holds), inodes numbered in that
// order, mtime 0 unless a record sets one. Parent folders are added as
// needed (mode 0755, owner 0).
//
// The zero Archive is empty and ready to use.
type Archive struct {
	recs map[string]*Record
}

// Clean turns an absolute or relative path into an archive name: no
// leading "/", no "." or ".." elements, no trailing "/". It reports an
// error for a path that is empty, the root itself, or escapes the root.
func Clean(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("cpio: empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("cpio: path %q contains NUL", p)
	}
	rel := strings.TrimLeft(p, "/")
	c := path.Clean(rel)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("cpio: path %q is the root or outside it", p)
	}
	if !strings.HasPrefix(p, "/") && c != rel {
		// A relative path that needed cleaning is probably a mistake.
		return "", fmt.Errorf("cpio: path %q is not clean (want %q or /%s)", p, c, c)
	}
	return c, nil
}

// Add adds r under the cleaned r.Name, adding its missing parent folders.
// Adding a folder that is already there with the same mode and owner is
// allowed (and replaces an implied parent); any other second record for a
// path is an error, as is a record under a path that is not a folder.
func (a *Archive) Add(r Record) error {
	name, err := Clean(r.Name)
	if err != nil {
		return err
	}
	r.Name = name
	if r.Type() == 0 {
		return fmt.Errorf("cpio: %s: mode %06o has no file type", name, r.Mode)
	}
	if a.recs == nil {
		a.recs = map[string]*Record{}
	}
	if err := a.parents(name); err != nil {
		return err
	}
	if old, ok := a.recs[name]; ok {
		if old.Type() == TypeDir && r.Type() == TypeDir {
			if old.implied || (old.Mode == r.Mode && old.UID == r.UID && old.GID == r.GID) {
				a.recs[name] = &r
				return nil
			}
		}
		return fmt.Errorf("cpio: %s added twice (%s, then %s)", name, old.String(), r.String())
	}
	a.recs[name] = &r
	return nil
}

// parents adds the folders above name that are missing, marked implied so
// an explicit folder later may replace them.
func (a *Archive) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if old, ok := a.recs[dir]; ok {
		if old.Type() != TypeDir {
			return fmt.Errorf("cpio: %s: parent %s is a %s, not a folder", name, dir, typeName(old.Type()))
		}
		return nil
	}
	if err := a.parents(dir); err != nil {
		return err
	}
	a.recs[dir] = &Record{Name: dir, Mode: TypeDir | 0o755, implied: true}
	return nil
}

// Dir adds a folder.
func (a *Archive) Dir(name string, perm uint32) error {
	return a.Add(Record{Name: name, Mode: TypeDir | perm&0o7777})
}

// File adds a regular file.
func (a *Archive) File(name string, perm uint32, data []byte) error {
	return a.Add(Record{Name: name, Mode: TypeReg | perm&0o7777, Data: data})
}

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(name, target string) error {
	return a.Add(Record{Name: name, Mode: TypeSymlink | 0o777, Data: []byte(target)})
}

// CharDev adds a character device node, such as dev/console 5,1.
func (a *Archive) CharDev(name string, perm, major, minor uint32) error {
	return a.Add(Record{Name: name, Mode: TypeChar | perm&0o7777, RDevMajor: major, RDevMinor: minor})
}

// BlockDev adds a block device node.
func (a *Archive) BlockDev(name string, perm, major, minor uint32) error {
	return a.Add(Record{Name: name, Mode: TypeBlock | perm&0o7777, RDevMajor: major, RDevMinor: minor})
}

// Get returns the record for a path, or nil.
func (a *Archive) Get(name string) *Record {
	c, err := Clean(name)
	if err != nil {
		return nil
	}
	return a.recs[c]
}

// Names returns the paths in the archive, in the order WriteTo writes them.
func (a *Archive) Names() []string {
	names := make([]string, 0, len(a.recs))
	for n := range a.recs {
		names = append(names, n)
	}
	// Byte order puts "lib" before "lib/x"; the kernel needs no more.
	sort.Strings(names)
	return names
}

// WriteTo writes the archive, trailer included, and returns the byte count.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := NewWriter(w)
	for _, n := range a.Names() {
		r := *a.recs[n]
		r.implied = false
		if err := cw.WriteRecord(&r); err != nil {
			return cw.Size(), err
		}
	}
	err := cw.Close()
	return cw.Size(), err
}

// Bytes returns the written archive.
func (a *Archive) Bytes() ([]byte, error) {
	var b bytes.Buffer
	_, err := a.WriteTo(&b)
	return b.Bytes(), err
}
