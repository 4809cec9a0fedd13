package ubootenv

import (
	"errors"
	"fmt"

	"github.com/keelboot/keel/bootenv"
)

// BootstatePartition is the GPT name of the partition that holds keel's
// state on U-Boot boards and in disk images.
const BootstatePartition = "bootstate"

// BootstateEnvSize is the size of each of the two env copies in the
// bootstate partition: copy 1 at offset 0, copy 2 right after it.
const BootstateEnvSize = 0x10000

// BootstateConfig is the redundant env layout inside a bootstate partition
// that starts at offset and is size bytes long, on the file or block device
// at path: the same as this fw_env.config would say:
//
//	path  offset             0x10000
//	path  offset+0x10000     0x10000
func BootstateConfig(path string, offset, size int64) (*Config, error) {
	if size < 2*BootstateEnvSize {
		return nil, fmt.Errorf("%d bytes is too small for two %#x-byte env copies: make the partition at least %d KiB",
			size, BootstateEnvSize, 2*BootstateEnvSize/1024)
	}
	return &Config{Copies: []DeviceConfig{
		{Path: path, Offset: offset, Size: BootstateEnvSize},
		{Path: path, Offset: offset + BootstateEnvSize, Size: BootstateEnvSize},
	}, Owned: true}, nil
}

// BootstateFWEnvConfig is the libubootenv fw_env.config that reads the
// redundant env on the bootstate partition at dev (a block device or a
// file holding only that partition): the layout BootstateConfig(dev, 0,
// size) describes. keel-init and stage 2 write it for the OS's tools
// (keel.store=uboot:PATH); fw_printenv -c reads it.
func BootstateFWEnvConfig(dev string) []byte {
	return fmt.Appendf(nil, "%s 0x0 %#x\n%s %#x %#x\n", dev, BootstateEnvSize, dev, BootstateEnvSize, BootstateEnvSize)
}

// Store keeps the keel record as keel_* variables in a U-Boot environment,
// next to the env's other variables, which it preserves byte for byte.
type Store struct {
	st       *Storage
	location string
}

var (
	_ bootenv.Store     = (*Store)(nil)
	_ bootenv.Describer = (*Store)(nil)
)

// NewStore returns the store over an opened env; location names it in
// errors and in Describe.
func NewStore(st *Storage, location string) *Store {
	return &Store{st: st, location: location}
}

// Describe implements bootenv.Describer.
func (s *Store) Describe() bootenv.Info {
	if s.st.Redundant() {
		return bootenv.Info{Backend: "uboot-env", Location: s.location + " (redundant)", PowerSafe: true}
	}
	return bootenv.Info{Backend: "uboot-env", Location: s.location + " (single copy)", PowerSafe: false,
		Note: "single-copy U-Boot env: a power cut during a write can corrupt it and lose the boot state; configure a redundant env (two lines in fw_env.config)"}
}

func (s *Store) read() (*Env, bootenv.Record, error) {
	e, err := s.st.Read()
	if errors.Is(err, ErrBlank) {
		return nil, bootenv.Record{}, fmt.Errorf("%s: %w (the env is blank)", s.location, bootenv.ErrNoState)
	}
	if err != nil {
		return nil, bootenv.Record{}, fmt.Errorf("%w: %w (fix the env, or write a new state with `keel init --force`)", bootenv.ErrCorrupt, err)
	}
	m := make(map[string]string, e.Len())
	for _, v := range e.Vars() {
		m[v.Name] = v.Value
	}
	for _, name := range e.Duplicates() {
		if bootenv.IsRecordVar(name) {
			return e, bootenv.Record{}, fmt.Errorf("%s: %w: %s is set twice in the env", s.location, bootenv.ErrCorrupt, name)
		}
	}
	r, err := bootenv.Decode(m)
	if err != nil {
		return e, bootenv.Record{}, fmt.Errorf("%s: %w", s.location, err)
	}
	// Never load a record that could not be written back into this env.
	w, err := withRecord(e, r)
	if err != nil {
		return e, bootenv.Record{}, fmt.Errorf("%s: %w: %w", s.location, bootenv.ErrCorrupt, err)
	}
	if _, err := encodeData(w, int(s.st.size)-headerSize(s.st.Redundant())); err != nil {
		return e, bootenv.Record{}, fmt.Errorf("%s: %w: the record would not fit when written back: %w", s.location, bootenv.ErrCorrupt, err)
	}
	return e, r, nil
}

// withRecord returns a copy of e with the keel_* variables replaced by r's
// (an existing variable keeps its place; other variables are untouched).
func withRecord(e *Env, r bootenv.Record) (*Env, error) {
	if e == nil {
		e = &Env{}
	} else {
		e = e.Clone()
	}
	keep := map[string]bool{}
	for _, v := range bootenv.Encode(r) {
		keep[v.Name] = true
		if err := e.Set(v.Name, v.Value); err != nil { // keeps an existing variable's place
			return nil, err
		}
	}
	for _, v := range e.Vars() {
		if bootenv.IsRecordVar(v.Name) && !keep[v.Name] {
			e.Delete(v.Name)
		}
	}
	return e, nil
}

// Load implements bootenv.Store.
func (s *Store) Load() (bootenv.Record, error) {
	_, r, err := s.read()
	return r, err
}

// Commit implements bootenv.Store: it replaces the keel_* variables in the
// env and writes the whole env in one commit (to the other copy of a
// redundant env). Over a blank or unreadable env it starts a new one.
func (s *Store) Commit(r bootenv.Record) error {
	e, cur, err := s.read()
	if err := bootenv.CheckCommit(cur, err, r); err != nil {
		return err
	}
	e, err = withRecord(e, r)
	if err != nil {
		return fmt.Errorf("%s: %w", s.location, err)
	}
	if err := s.st.Write(e); err != nil {
		return fmt.Errorf("%s: %w", s.location, err)
	}
	return nil
}
