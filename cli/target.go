package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/bootenv/ubootenv"
	kcmdline "github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/uefi"
)

// target is the opened state store, plus the raw env for `env` commands
// when the store is a U-Boot environment.
type target struct {
	store bootenv.Store
	info  bootenv.Info
	env   *ubootenv.Storage // nil for efivars
	close func() error
}

func (t *target) Close() error {
	if t.close != nil {
		return t.close()
	}
	return nil
}

func (t *target) load() (bootenv.Record, error) {
	r, err := t.store.Load()
	if errors.Is(err, bootenv.ErrNoState) {
		return r, fmt.Errorf("%w: run `keel init --active a` (add --slots if the device has other slots than a,b)", err)
	}
	return r, err
}

// open opens the store the global flags name, or finds the device's own.
func (c *command) open() (*target, error) {
	switch {
	case c.g.config != "":
		return openConfig(c.g.config)
	case c.g.efivars != "":
		return openEFIVars(c.g.efivars)
	case c.g.image != "":
		return openImage(c.g.image)
	}
	// On a device: keel-init says where the state is on the kernel command
	// line (keel.store=efivars or keel.store=uboot:/etc/fw_env.config); a
	// value keel cannot parse is as none.
	st, _ := kcmdline.ParseStore(c.cmdlineParam(kcmdline.KeyStore))
	switch st.Kind {
	case kcmdline.StoreEFIVars:
		return openEFIVars(c.deps.EFIVarsDir)
	case kcmdline.StoreUBoot:
		return openConfig(st.Path)
	}
	if _, err := os.Stat(filepath.Join(c.deps.EFIVarsDir, uefi.VarFile(uefi.KeelState, uefi.KeelVendorGUID()))); err == nil {
		return openEFIVars(c.deps.EFIVarsDir)
	}
	if _, err := os.Stat(c.deps.FWEnvConfig); err == nil {
		return openConfig(c.deps.FWEnvConfig)
	}
	return nil, usagef("no boot state store found: no keel.store= on the kernel command line, no %s variable in %s, no %s; give -c FW_ENV_CONFIG, --efivars DIR or --image DISK.img",
		efivars.VarName, c.deps.EFIVarsDir, c.deps.FWEnvConfig)
}

func openConfig(path string) (*target, error) {
	cfg, err := ubootenv.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	st, err := ubootenv.Open(cfg)
	if err != nil {
		return nil, err
	}
	s := ubootenv.NewStore(st, path)
	return &target{store: s, info: s.Describe(), env: st, close: st.Close}, nil
}

func openEFIVars(dir string) (*target, error) {
	s, err := efivars.Open(dir)
	if err != nil {
		return nil, err
	}
	return &target{store: s, info: s.Describe()}, nil
}

// openImage finds the GPT partition "bootstate" in a disk image and opens
// the redundant env inside it (ubootenv.BootstateConfig gives the layout).
func openImage(path string) (*target, error) {
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
	st, err := ubootenv.Open(cfg)
	if err != nil {
		return nil, err
	}
	s := ubootenv.NewStore(st, fmt.Sprintf("%s (partition %s)", path, ubootenv.BootstatePartition))
	return &target{store: s, info: s.Describe(), env: st, close: st.Close}, nil
}
