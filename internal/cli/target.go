package cli

import (
	"os"
	"path/filepath"

	"github.com/keelboot/keel/bootenv/bootstore"
	"github.com/keelboot/keel/bootenv/efivars"
	kcmdline "github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/uefi"
)

// target is the opened state store (package bootenv/bootstore), with the
// raw env for `env` commands when the store is a U-Boot environment.
type target = bootstore.Store

// open opens the store the global flags name, or finds the device's own.
func (c *command) open() (*target, error) {
	l, err := c.storeLocation()
	if err != nil {
		return nil, err
	}
	return openTarget(l)
}

func openTarget(l bootstore.Location) (*target, error) {
	s, err := bootstore.Open(l)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// storeLocation is where the store is: what the global flags name, or on
// a device what keel-init says on the kernel command line
// (keel.store=efivars or keel.store=uboot:/run/keel-fw_env.config; a
// value keel cannot parse is as none), else the UEFI variable or the
// fw_env.config found there.
func (c *command) storeLocation() (bootstore.Location, error) {
	switch {
	case c.g.config != "":
		return bootstore.Location{FWEnvConfig: c.g.config}, nil
	case c.g.efivars != "":
		return bootstore.Location{EFIVars: c.g.efivars}, nil
	case c.g.image != "":
		return bootstore.Location{Image: c.g.image}, nil
	}
	st, _ := kcmdline.ParseStore(c.cmdlineParam(kcmdline.KeyStore))
	if l, ok := bootstore.FromCmdline(st, c.deps.EFIVarsDir); ok {
		return l, nil
	}
	if _, err := os.Stat(filepath.Join(c.deps.EFIVarsDir, uefi.VarFile(uefi.KeelState, uefi.KeelVendorGUID()))); err == nil {
		return bootstore.Location{EFIVars: c.deps.EFIVarsDir}, nil
	}
	if _, err := os.Stat(c.deps.FWEnvConfig); err == nil {
		return bootstore.Location{FWEnvConfig: c.deps.FWEnvConfig}, nil
	}
	return bootstore.Location{}, usagef("no boot state store found: no keel.store= on the kernel command line, no %s variable in %s, no %s; give -c FW_ENV_CONFIG, --efivars DIR or --image DISK.img",
		efivars.VarName, c.deps.EFIVarsDir, c.deps.FWEnvConfig)
}
