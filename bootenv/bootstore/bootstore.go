package bootstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/gpt"
)

// Location says where a boot record's store is: exactly one field is set.
type Location struct {
	// EFIVars is a directory laid out like efivarfs (the mount itself on
	// a device): the record is keel's UEFI variable there.
	EFIVars string
	// FWEnvConfig is a fw_env.config (libubootenv's) naming the U-Boot
	// environment that holds the record.
	FWEnvConfig string
	// Bootstate is keel's bootstate partition as a block device, or a
	// file holding only that partition: a redundant U-Boot env
	// (ubootenv.BootstateConfig).
	Bootstate string
	// Image is a disk image: the bootstate partition is found by name in
	// its GPT.
	Image string
}

// String names the location for messages.
func (l Location) String() string {
	switch {
	case l.EFIVars != "":
		return "UEFI variables in " + l.EFIVars
	case l.FWEnvConfig != "":
		return "the U-Boot env of " + l.FWEnvConfig
	case l.Bootstate != "":
		return "the bootstate partition " + l.Bootstate
	case l.Image != "":
		return "the disk image " + l.Image
	}
	return "no store"
}

// FromCmdline is the location keel.store= names (package format/cmdline)
// on a running system whose efivarfs is mounted on efivarsDir: keel's
// UEFI variable there, or the U-Boot env of the fw_env.config keel-init
// wrote. ok is false for the zero Store (keel.store= left out).
func FromCmdline(s cmdline.Store, efivarsDir string) (l Location, ok bool) {
	switch s.Kind {
	case cmdline.StoreEFIVars:
		return Location{EFIVars: efivarsDir}, true
	case cmdline.StoreUBoot:
		return Location{FWEnvConfig: s.Path}, true
	}
	return Location{}, false
}

// Store is an opened store: the record's Load and Commit, what it is
// (Info), and for a U-Boot env the env itself (the keel env commands
// read and write its other variables).
type Store struct {
	bootenv.Store
	Info bootenv.Info
	// Env is the U-Boot environment; nil for a UEFI variable.
	Env   *ubootenv.Storage
	close func() error
}

var (
	_ bootenv.Store     = (*Store)(nil)
	_ bootenv.Describer = (*Store)(nil)
)

// Describe is Info.
func (s *Store) Describe() bootenv.Info { return s.Info }

// LoadRecord is Load, its error saying what to do when the store holds
// no record yet (bootenv.ErrNoState).
func (s *Store) LoadRecord() (bootenv.Record, error) {
	r, err := s.Load()
	if errors.Is(err, bootenv.ErrNoState) {
		return r, fmt.Errorf("%w: run `keel init --active a` (add --slots if the device has other slots than a,b)", err)
	}
	return r, err
}

// Close closes the devices Open opened.
func (s *Store) Close() error {
	if s == nil || s.close == nil {
		return nil
	}
	return s.close()
}

// Open opens the store at l.
func Open(l Location) (*Store, error) {
	n := 0
	for _, f := range []string{l.EFIVars, l.FWEnvConfig, l.Bootstate, l.Image} {
		if f != "" {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("bootstore: a location names one store, this one names %d: %+v", n, l)
	}
	switch {
	case l.EFIVars != "":
		s, err := efivars.Open(l.EFIVars)
		if err != nil {
			return nil, err
		}
		return &Store{Store: s, Info: s.Describe()}, nil
	case l.FWEnvConfig != "":
		cfg, err := ubootenv.LoadConfig(l.FWEnvConfig)
		if err != nil {
			return nil, err
		}
		return openEnv(cfg, l.FWEnvConfig)
	case l.Bootstate != "":
		size, err := fileSize(l.Bootstate)
		if err != nil {
			return nil, err
		}
		cfg, err := ubootenv.BootstateConfig(l.Bootstate, 0, size)
		if err != nil {
			return nil, err
		}
		return openEnv(cfg, l.Bootstate)
	}
	return openImage(l.Image)
}

// openEnv opens the env cfg describes, named location.
func openEnv(cfg *ubootenv.Config, location string) (*Store, error) {
	st, err := ubootenv.Open(cfg)
	if err != nil {
		return nil, err
	}
	s := ubootenv.NewStore(st, location)
	return &Store{Store: s, Info: s.Describe(), Env: st, close: st.Close}, nil
}

// fileSize is the size of a file or block device.
func fileSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// openImage finds the GPT partition "bootstate" in a disk image and opens
// the redundant env inside it (ubootenv.BootstateConfig gives the layout).
func openImage(path string) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("disk image %s does not exist: %w", path, err)
		}
		return nil, fmt.Errorf("disk image: %w", err)
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p, err := tab.Find(ubootenv.BootstatePartition)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: the image needs a GPT partition named %q for keel's state", path, err, ubootenv.BootstatePartition)
	}
	cfg, err := ubootenv.BootstateConfig(path, p.Offset(), p.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: partition %s: %w", path, ubootenv.BootstatePartition, err)
	}
	return openEnv(cfg, fmt.Sprintf("%s (partition %s)", path, ubootenv.BootstatePartition))
}
