package bootstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/storetest"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/gpt"
)

// bootstateFile is an empty bootstate partition as a file.
func bootstateFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bootstate")
	if err := os.WriteFile(p, make([]byte, 2*ubootenv.BootstateEnvSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// diskImage is a disk image whose GPT has a partition named part (the
// bootstate partition, or another) between two others.
func diskImage(t *testing.T, part string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 4 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	typ, _ := gpt.ParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	specs := []gpt.Spec{{Name: "first", Type: typ, Size: 64 << 10}, {Name: part, Type: typ, Size: 2 * ubootenv.BootstateEnvSize}, {Name: "last", Type: typ, Size: 64 << 10}}
	if _, err := gpt.CreateWith(f, size, specs, gpt.Options{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// locations are the ways to name a new, empty store.
func locations() map[string]func(t *testing.T) Location {
	return map[string]func(t *testing.T) Location{
		"efivars":   func(t *testing.T) Location { return Location{EFIVars: t.TempDir()} },
		"bootstate": func(t *testing.T) Location { return Location{Bootstate: bootstateFile(t)} },
		"fw_env.config": func(t *testing.T) Location {
			cfg := filepath.Join(t.TempDir(), "fw_env.config")
			if err := os.WriteFile(cfg, ubootenv.BootstateFWEnvConfig(bootstateFile(t)), 0o644); err != nil {
				t.Fatal(err)
			}
			return Location{FWEnvConfig: cfg}
		},
		"image": func(t *testing.T) Location { return Location{Image: diskImage(t, ubootenv.BootstatePartition)} },
	}
}

// TestConformance: a store opened at every kind of location passes the
// stores' conformance suite.
func TestConformance(t *testing.T) {
	for name, loc := range locations() {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Opener {
				l := loc(t)
				return func() (bootenv.Store, error) {
					s, err := Open(l)
					if err != nil {
						return nil, err
					}
					t.Cleanup(func() { s.Close() })
					return s, nil
				}
			})
		})
	}
}

// TestSameBytes: the bootstate partition opened as a device and through
// the fw_env.config keel-init writes for it (BootstateFWEnvConfig) is one
// store; its Env is the raw U-Boot env, and a UEFI variable has none.
func TestSameBytes(t *testing.T) {
	dev := bootstateFile(t)
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(cfg, ubootenv.BootstateFWEnvConfig(dev), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Open(Location{Bootstate: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r, _ := bootenv.Init(nil, "b")
	if err := a.Commit(r); err != nil {
		t.Fatal(err)
	}
	b, err := Open(Location{FWEnvConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.Load()
	if err != nil || !got.Equal(r) {
		t.Fatalf("through the fw_env.config: %+v, %v; want %+v", got, err, r)
	}
	if b.Env == nil || b.Info.Backend != "uboot-env" || !strings.HasPrefix(b.Info.Location, cfg) || !strings.HasPrefix(a.Info.Location, dev) {
		t.Errorf("env %v, info %+v and %+v", b.Env, a.Info, b.Info)
	}
	e, err := b.Env.Read()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := e.Get("keel_active"); !ok || v != "b" {
		t.Errorf("the raw env's keel_active = %q, %v", v, ok)
	}
	efi, err := Open(Location{EFIVars: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if efi.Env != nil || efi.Info.Backend != "efivars" || efi.Close() != nil {
		t.Errorf("efivars: env %v, info %+v", efi.Env, efi.Info)
	}
}

func TestOpenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.img")
	for _, c := range []struct {
		name string
		l    Location
		want string
		is   error
	}{
		{"none", Location{}, "names 0", nil},
		{"two", Location{EFIVars: "/x", Image: "/y"}, "names 2", nil},
		{"no image", Location{Image: missing}, "disk image " + missing + " does not exist", fs.ErrNotExist},
		{"image without bootstate", Location{Image: diskImage(t, "other")}, `needs a GPT partition named "bootstate"`, nil},
		{"no fw_env.config", Location{FWEnvConfig: missing}, "missing.img", fs.ErrNotExist},
		{"no bootstate device", Location{Bootstate: missing}, "missing.img", fs.ErrNotExist},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(c.l)
			if err == nil {
				s.Close()
				t.Fatalf("opened %+v", c.l)
			}
			if !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Errorf("%v; want %q (%v)", err, c.want, c.is)
			}
		})
	}
}

func TestFromCmdline(t *testing.T) {
	for _, c := range []struct {
		v    string
		want Location
		ok   bool
	}{
		{"efivars", Location{EFIVars: "/sys/firmware/efi/efivars"}, true},
		{"uboot:/run/keel-fw_env.config", Location{FWEnvConfig: "/run/keel-fw_env.config"}, true},
		{"", Location{}, false},
	} {
		s, err := cmdline.ParseStore(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := FromCmdline(s, "/sys/firmware/efi/efivars"); got != c.want || ok != c.ok {
			t.Errorf("keel.store=%s: %+v, %v; want %+v, %v", c.v, got, ok, c.want, c.ok)
		}
	}
	if got := (Location{Image: "d.img"}).String(); got != "the disk image d.img" {
		t.Errorf("String: %q", got)
	}
}
