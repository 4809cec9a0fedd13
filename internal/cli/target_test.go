package cli

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"
)

// TestStoreFromCmdlineUBoot: keel.store=uboot:PATH on the kernel command
// line opens the U-Boot env that fw_env.config at PATH describes; a value
// keel cannot parse names no store, and keel looks for one as without it.
func TestStoreFromCmdlineUBoot(t *testing.T) {
	cfg := envConfig(t, true)
	dir := t.TempDir()
	deps := func(line string) Deps {
		return Deps{
			Cmdline:        func() (string, error) { return line, nil },
			EFIVarsDir:     dir,
			FWEnvConfig:    filepath.Join(dir, "none"),
			DisarmWatchdog: func() error { return nil },
			OpenTPM:        func() (transport.TPMCloser, error) { return nil, fmt.Errorf("TPM: %w", fs.ErrNotExist) },
		}
	}
	keelDeps(t, deps("console=ttyS0 keel.store=uboot:"+cfg), "init", "--active", "b").ok(t)
	if s := status(t, "-c", cfg); s.Active == nil || *s.Active != "b" {
		t.Errorf("the env at %s after init through keel.store=: %+v", cfg, s)
	}
	for _, v := range []string{"uboot:", "uboot", "nvram:" + cfg} {
		keelDeps(t, deps("keel.store="+v), "status").fails(t, ExitUsage, "no boot state store found")
	}
}

// TestPCRPredictStore: --store takes a keel.store= value (the line keel-init
// builds gets it verbatim) and refuses anything keel-init does not write.
func TestPCRPredictStore(t *testing.T) {
	for _, v := range []string{"uboot:", "nvram", "uboot:/a b"} {
		keel(t, "pcr", "predict", "--store", v, "manifest.json").fails(t, ExitUsage, "keel.store=")
	}
}
