package efivars

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/foxboron/go-uefi/efi/attributes"
	"github.com/foxboron/go-uefi/efi/util"
	"github.com/foxboron/go-uefi/efivar"
	"github.com/foxboron/go-uefi/efivarfs"
	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/uefi"
)

const (
	// VarName is keel's state variable, of vendor uefi.KeelVendorGUID.
	VarName = uefi.KeelState
	// DefaultDir is where Linux mounts efivarfs.
	DefaultDir = uefi.EfivarfsDir
	// Attributes are NV|BS|RT.
	Attributes = attributes.EFI_VARIABLE_NON_VOLATILE | attributes.EFI_VARIABLE_BOOTSERVICE_ACCESS |
		attributes.EFI_VARIABLE_RUNTIME_ACCESS
	// MaxPayload bounds the variable's data; firmware commonly limits one
	// variable to a few KiB (OVMF: 8 KiB by default).
	MaxPayload = 4096

	efivarfsMagic = 0xde5e81e4 // EFIVARFS_MAGIC, include/uapi/linux/magic.h
	magic         = "KEEL"
	headerSize    = 12
)

// Store is the UEFI variable backend.
type Store struct {
	dir      string
	efivarfs bool
	fs       *efivarfs.EFIFS
	v        efivar.Efivar
}

var (
	_ bootenv.Store     = (*Store)(nil)
	_ bootenv.Describer = (*Store)(nil)
)

// Open returns the store for the efivarfs mount or variable directory dir.
func Open(dir string) (*Store, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("efivars: %s does not exist: mount efivarfs there (mount -t efivarfs efivarfs %s) or give a directory that holds the variables: %w", dir, dir, err)
		}
		return nil, fmt.Errorf("efivars: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("efivars: %s is not a directory: give the efivarfs mount point (%s) or a directory of variables", dir, DefaultDir)
	}
	var st unix.Statfs_t
	real := unix.Statfs(dir, &st) == nil && uint32(st.Type) == efivarfsMagic
	f := efivarfs.NewFS()
	f.SetFS(newDirFS(dir, !real))
	guid := util.StringToGUID(uefi.KeelVendorGUID().String())
	return &Store{
		dir:      dir,
		efivarfs: real,
		fs:       f,
		v:        efivar.Efivar{Name: VarName, GUID: guid, Attributes: Attributes},
	}, nil
}

// Path is the file that holds the variable.
func (s *Store) Path() string {
	return filepath.Join(s.dir, uefi.VarFile(VarName, uefi.KeelVendorGUID()))
}

// Describe implements bootenv.Describer.
func (s *Store) Describe() bootenv.Info {
	kind := "directory of variables"
	if s.efivarfs {
		kind = "efivarfs"
	}
	return bootenv.Info{Backend: "efivars", Location: s.Path() + " (" + kind + ")", PowerSafe: true}
}

// payload is the variable's data, for go-uefi's (un)marshalling.
type payload struct {
	vars []bootenv.Var
	err  error
}

// Marshal implements efivar.Marshallable.
func (p *payload) Marshal(b *bytes.Buffer) {
	var data bytes.Buffer
	for _, v := range p.vars {
		data.WriteString(v.Name + "=" + v.Value + "\x00")
	}
	data.WriteByte(0)
	var hdr [headerSize]byte
	copy(hdr[:4], magic)
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(data.Len()))
	binary.LittleEndian.PutUint32(hdr[8:12], crc32.ChecksumIEEE(data.Bytes()))
	b.Write(hdr[:])
	b.Write(data.Bytes())
}

// Bytes implements efivar.Marshallable.
func (p *payload) Bytes() []byte {
	var b bytes.Buffer
	p.Marshal(&b)
	return b.Bytes()
}

// Unmarshal implements efivar.Unmarshallable.
func (p *payload) Unmarshal(b *bytes.Buffer) error {
	vars, err := decodePayload(b.Bytes())
	p.vars, p.err = vars, err
	return err
}

func decodePayload(buf []byte) ([]bootenv.Var, error) {
	if len(buf) < headerSize || string(buf[:4]) != magic {
		return nil, fmt.Errorf("%w: the variable does not start with %q (%d bytes)", bootenv.ErrCorrupt, magic, len(buf))
	}
	n := binary.LittleEndian.Uint32(buf[4:8])
	if uint64(n) > uint64(len(buf)-headerSize) {
		return nil, fmt.Errorf("%w: the variable says %d bytes of data but holds %d (a torn write?)", bootenv.ErrCorrupt, n, len(buf)-headerSize)
	}
	data := buf[headerSize : headerSize+int(n)]
	if crc := crc32.ChecksumIEEE(data); crc != binary.LittleEndian.Uint32(buf[8:12]) {
		return nil, fmt.Errorf("%w: CRC mismatch (stored %#08x, computed %#08x)", bootenv.ErrCorrupt, binary.LittleEndian.Uint32(buf[8:12]), crc)
	}
	var vars []bootenv.Var
	for len(data) > 0 {
		end := bytes.IndexByte(data, 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated entry", bootenv.ErrCorrupt)
		}
		if end == 0 {
			break // the empty entry ends the list
		}
		k, v, ok := strings.Cut(string(data[:end]), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: entry %q is not name=value", bootenv.ErrCorrupt, data[:end])
		}
		vars = append(vars, bootenv.Var{Name: k, Value: v})
		data = data[end+1:]
	}
	return vars, nil
}

// Load implements bootenv.Store.
func (s *Store) Load() (bootenv.Record, error) {
	var p payload
	attrs, err := s.fs.GetVarWithAttributes(s.v, &p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return bootenv.Record{}, fmt.Errorf("%s: %w", s.Path(), bootenv.ErrNoState)
	case errors.Is(err, efivarfs.ErrIncorrectAttributes):
		return bootenv.Record{}, fmt.Errorf("%s: %w: attributes %#x, want %#x (NV|BS|RT); run `keel init --force` to rewrite it", s.Path(), bootenv.ErrCorrupt, uint32(attrs), uint32(Attributes))
	case p.err != nil:
		return bootenv.Record{}, fmt.Errorf("%s: %w; run `keel init --force` to start over", s.Path(), p.err)
	case err != nil:
		return bootenv.Record{}, fmt.Errorf("%s: %w: %w", s.Path(), bootenv.ErrCorrupt, err)
	}
	r, err := bootenv.DecodeVars(p.vars)
	if err != nil {
		return bootenv.Record{}, fmt.Errorf("%s: %w", s.Path(), err)
	}
	// Never load a record that could not be written back (a variable
	// written by another tool can be larger than keel writes): keel-init
	// then starts over instead of failing every commit.
	if n := len((&payload{vars: bootenv.Encode(r)}).Bytes()); n > MaxPayload {
		return bootenv.Record{}, fmt.Errorf("%s: %w: the record needs %d bytes written back, more than the %d a variable may hold; run `keel init --force` to start over", s.Path(), bootenv.ErrCorrupt, n, MaxPayload)
	}
	return r, nil
}

// Commit implements bootenv.Store.
func (s *Store) Commit(r bootenv.Record) error {
	cur, err := s.Load()
	if err := bootenv.CheckCommit(cur, err, r); err != nil {
		return err
	}
	p := &payload{vars: bootenv.Encode(r)}
	if n := len(p.Bytes()); n > MaxPayload {
		return fmt.Errorf("%s: the record needs %d bytes, more than the %d a variable may hold: use fewer slots or shorter versions", s.Path(), n, MaxPayload)
	}
	if s.efivarfs {
		// efivarfs makes variables of unknown GUIDs immutable
		// (fs/efivarfs/inode.c): clear the flag to rewrite it.
		if err := uefi.ClearImmutable(s.Path()); err != nil {
			return fmt.Errorf("%s: %w", s.Path(), err)
		}
	}
	if err := s.fs.WriteVar(s.v, p); err != nil {
		return fmt.Errorf("%s: writing the variable: %w", s.Path(), err)
	}
	return nil
}
