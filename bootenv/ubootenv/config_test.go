package ubootenv

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []DeviceConfig
	}{
		{"single", "/dev/mmcblk0 0x3F0000 0x4000\n",
			[]DeviceConfig{{Path: "/dev/mmcblk0", Offset: 0x3F0000, Size: 0x4000}}},
		{"redundant with comments and blanks",
			"# U-Boot env\n\n/dev/mtd1\t0x0\t0x4000\t0x10000\n   # indented comment\n/dev/mtd2 0x0 0x4000 0x10000 # trailing\n",
			[]DeviceConfig{
				{Path: "/dev/mtd1", Size: 0x4000, SectorSize: 0x10000},
				{Path: "/dev/mtd2", Size: 0x4000, SectorSize: 0x10000},
			}},
		// libubootenv reads size, sector size and sector count with %zx/%lx:
		// hexadecimal even without 0x.
		{"sizes are hex without 0x", "env.img 16384 4000 20000 2\n",
			[]DeviceConfig{{Path: "env.img", Offset: 16384, Size: 0x4000, SectorSize: 0x20000, Sectors: 2}}},
		// The offset is read with %lli: 0x hex, leading 0 octal, else decimal.
		{"octal offset", "env.img 0100 0x400\n",
			[]DeviceConfig{{Path: "env.img", Offset: 64, Size: 0x400}}},
		{"negative offset", "/dev/mmcblk0 -0x20000 0x20000\n/dev/mmcblk0 -0x40000 0x20000\n",
			[]DeviceConfig{
				{Path: "/dev/mmcblk0", Offset: -0x20000, Size: 0x20000},
				{Path: "/dev/mmcblk0", Offset: -0x40000, Size: 0x20000},
			}},
		{"uppercase hex and CRLF", "/dev/mtd0 0X4000 0X4000 0x20000 0x2\r\n",
			[]DeviceConfig{{Path: "/dev/mtd0", Offset: 0x4000, Size: 0x4000, SectorSize: 0x20000, Sectors: 2}}},
		{"disable-lock field accepted", "/dev/mtd0 0 0x4000 0x10000 1 1\n",
			[]DeviceConfig{{Path: "/dev/mtd0", Size: 0x4000, SectorSize: 0x10000, Sectors: 1}}},
		{"no trailing newline", "/dev/sda 0 0x2000",
			[]DeviceConfig{{Path: "/dev/sda", Size: 0x2000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Copies, tt.want) {
				t.Fatalf("got %+v\nwant %+v", cfg.Copies, tt.want)
			}
			if cfg.Redundant() != (len(tt.want) == 2) {
				t.Fatal("Redundant()")
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, in, errHas string
	}{
		{"empty", "", "no device line"},
		{"only comments", "# nothing\n\n", "no device line"},
		{"too few fields", "/dev/mtd0 0\n", "line 1"},
		{"bad offset", "/dev/mtd0 zero 0x4000\n", `offset "zero"`},
		{"bad octal", "/dev/mtd0 08 0x4000\n", `offset "08"`},
		{"bad size", "/dev/mtd0 0 0x40g0\n", `size "0x40g0"`},
		{"negative size", "/dev/mtd0 0 -4000\n", `size "-4000"`},
		{"zero size", "/dev/mtd0 0 0\n", "no room for data"},
		{"size only header", "/dev/mtd0 0 4\n", "no room for data"},
		{"redundant size only header", "a 0 5\nb 0 5\n", "no room for data"},
		{"huge size", "/dev/mtd0 0 0x40000000\n", "over keel's limit"},
		{"bad sector size", "/dev/mtd0 0 0x4000 big\n", "sector size"},
		{"bad sector count", "/dev/mtd0 0 0x4000 0x1000 x\n", "number of sectors"},
		{"bad lock field", "/dev/mtd0 0 0x4000 0x1000 1 yes\n", "disable-lock"},
		{"too many fields", "/dev/mtd0 0 0x4000 0x1000 1 1 1\n", "7 fields"},
		{"third line", "a 0 0x400\nb 0 0x400\nc 0 0x400\n", "line 3: a third device line"},
		{"different sizes", "a 0 0x400\nb 0 0x800\n", "different sizes"},
		{"names the line", "a 0 0x400\n\nb 0 nope\n", "line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("parsed %+v, want error", cfg)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("error %q does not contain %q", err, tt.errHas)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(p, []byte("/x 0 0x400\n/y 0 400\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Copies) != 2 || cfg.Copies[1].Size != 0x400 {
		t.Fatalf("%+v", cfg)
	}
	if err := os.WriteFile(p, []byte("/x 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error does not name the file: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing config loaded")
	}
}
