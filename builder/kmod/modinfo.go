package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Module is what keel knows about one kernel module: where it is and what
// its .modinfo says.
type Module struct {
	// Name is the module's name as the kernel knows it (name= in .modinfo,
	// or the file name without .ko), normalized: '-' is written '_'.
	Name string
	// Path is the .ko file. From Scan it is relative to the Tree's Dir,
	// with '/' separators (kernel/fs/ext4/ext4.ko).
	Path string
	// Depends are the modules that must be loaded first (depends=),
	// normalized, in the order .modinfo lists them.
	Depends []string
	// SoftPre and SoftPost are the optional soft dependencies
	// (softdep=pre: a b post: c): modules or aliases that modprobe would
	// load before or after this one if it can find them.
	SoftPre, SoftPost []string
	// Aliases are the names this module also answers to (alias=), as
	// written; patterns such as pci:v00001AF4d* are kept but only matched
	// literally.
	Aliases []string
}

// Normalize returns the kernel's canonical form of a module name: '-' and
// '_' are the same character in module names and are written '_'.
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// ErrNoModinfo is returned (wrapped) for an ELF file without a .modinfo
// section: it is not a kernel module.
var ErrNoModinfo = errors.New("no .modinfo section (not a kernel module)")

// ParseModinfo parses the contents of a .modinfo section: NUL-separated
// key=value strings (padding NULs between them are allowed). Keys other
// than name, depends, softdep and alias are ignored. The returned Module has
// no Path; its Name is empty when the section has no name= (modules built
// before Linux 5.x), and the caller fills it in from the file name.
func ParseModinfo(data []byte) (*Module, error) {
	m := &Module{}
	seenName := false
	for _, field := range bytes.Split(data, []byte{0}) {
		if len(field) == 0 {
			continue
		}
		key, value, ok := strings.Cut(string(field), "=")
		if !ok {
			return nil, fmt.Errorf("modinfo: field %q has no '=' (want key=value strings separated by NUL)", truncate(string(field)))
		}
		switch key {
		case "name":
			if seenName {
				return nil, fmt.Errorf("modinfo: two name= fields (%q and %q)", m.Name, value)
			}
			seenName = true
			if err := checkName(value); err != nil {
				return nil, fmt.Errorf("modinfo: name=: %w", err)
			}
			m.Name = Normalize(value)
		case "depends":
			// The kernel emits exactly one depends= (empty when there are
			// none); be lenient and merge several.
			for _, d := range strings.Split(value, ",") {
				d = strings.TrimSpace(d)
				if d == "" {
					continue
				}
				if err := checkName(d); err != nil {
					return nil, fmt.Errorf("modinfo: depends=%s: %w", truncate(value), err)
				}
				m.Depends = appendUnique(m.Depends, Normalize(d))
			}
		case "softdep":
			if err := m.parseSoftdep(value); err != nil {
				return nil, fmt.Errorf("modinfo: softdep=%s: %w", truncate(value), err)
			}
		case "alias":
			if value != "" {
				m.Aliases = append(m.Aliases, value)
			}
		}
	}
	return m, nil
}

// parseSoftdep parses "pre: a b post: c" (either part optional, in either
// order, as modprobe.d(5) describes). Names before any pre: or post: are
// ignored.
func (m *Module) parseSoftdep(value string) error {
	var list *[]string
	for _, word := range strings.Fields(value) {
		switch word {
		case "pre:":
			list = &m.SoftPre
		case "post:":
			list = &m.SoftPost
		default:
			if list == nil {
				// A bare name (cifs.ko has softdep=gcm): neither pre
				// nor post, ignored as libkmod does.
				continue
			}
			if err := checkName(word); err != nil {
				return err
			}
			*list = appendUnique(*list, word)
		}
	}
	return nil
}

// checkName rejects names that could not be a module name or alias and
// would only confuse the load-order file (NUL, whitespace, '/', ',').
func checkName(s string) error {
	if s == "" {
		return errors.New("empty module name")
	}
	if len(s) > 255 {
		return fmt.Errorf("module name %q... is %d bytes long", s[:32], len(s))
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ',' || r == 0x7f {
			return fmt.Errorf("module name %q contains %q", truncate(s), r)
		}
	}
	return nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ReadModinfo returns the raw contents of the .modinfo section of the ELF
// file r.
func ReadModinfo(r io.ReaderAt) ([]byte, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, ErrNoModinfo
	}
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf(".modinfo section has no contents (SHT_NOBITS)")
	}
	const maxModinfo = 1 << 20 // real ones are a few KiB
	if s.Size > maxModinfo {
		return nil, fmt.Errorf(".modinfo section is %d bytes, more than the %d a module can have", s.Size, maxModinfo)
	}
	return s.Data()
}

// ReadFile reads the module file path (an uncompressed .ko) and returns its
// .modinfo, with Path set to path and, when .modinfo has no name=, Name
// derived from the file name as the kernel's build does.
func ReadFile(path string) (*Module, error) {
	if c := compressedSuffix(path); c != "" {
		return nil, fmt.Errorf("kmod: %s: compressed module (%s) not supported: keel loads modules with finit_module and no decompressor; unpack it (or use a kernel built with CONFIG_MODULE_COMPRESS_NONE, as Debian's is)", path, c)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	data, err := ReadModinfo(f)
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", path, err)
	}
	m, err := ParseModinfo(data)
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", path, err)
	}
	m.Path = path
	if m.Name == "" {
		m.Name = nameFromPath(path)
	}
	return m, nil
}

// nameFromPath is the module name the kernel's build gives the file:
// its base name without .ko, normalized.
func nameFromPath(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	return Normalize(strings.TrimSuffix(base, ".ko"))
}

var compressedSuffixes = []string{".ko.xz", ".ko.zst", ".ko.gz"}

func compressedSuffix(path string) string {
	for _, s := range compressedSuffixes {
		if strings.HasSuffix(path, s) {
			return s
		}
	}
	return ""
}
