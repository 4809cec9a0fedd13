package ubootenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// DeviceConfig is one line of fw_env.config: where one copy of the env is.
type DeviceConfig struct {
	// Path is the device or file. libubootenv resolves it against the
	// working directory; so does Open.
	Path string
	// Offset of the copy in the device. Negative: counted back from the end
	// of the device (libubootenv does this for block devices).
	Offset int64
	// Size of the copy, header (CRC, and flag when redundant) included.
	Size int64
	// SectorSize is the flash erase unit for this copy; 0 means the MTD
	// erase block size. Files and block devices ignore it, as libubootenv
	// does.
	SectorSize int64
	// Sectors is how many sectors the copy may use (raw NAND: spare
	// blocks to skip bad ones); 0 means as many as the size needs.
	Sectors int
}

// Config says where the env is: one copy, or two for a redundant env.
type Config struct {
	Copies []DeviceConfig // 1 or 2
	// Owned says keel owns this env's geometry (its bootstate partition):
	// Write may replace copies that fail their CRC even when they would
	// check at another size or layout. For an fw_env.config (a device's
	// U-Boot env) that is refused, as it would destroy an env U-Boot can
	// still read; on keel's own partition it would leave keel unable to
	// ever write its state again.
	Owned bool
}

// Redundant reports whether the config has two copies.
func (c *Config) Redundant() bool { return len(c.Copies) == 2 }

// maxEnvSize bounds the configured env size: U-Boot envs are a few KiB to
// a few hundred KiB, and a larger number is a typo.
const maxEnvSize = 16 << 20

// LoadConfig reads a fw_env.config file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ubootenv: reading env config: %w", err)
	}
	defer f.Close()
	cfg, err := parseConfig(f, path)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseConfig parses the fw_env.config format of libubootenv (and of
// U-Boot's tools/env), one copy per line:
//
//	device offset size [sectorsize [nsectors [disablelock]]]
//
// Numbers are read as libubootenv reads them (uboot_env.c
// libuboot_read_config: sscanf "%ms %lli %zx %zx %lx"):
//
//   - offset is C integer syntax: "0x" hex, a leading "0" octal, otherwise
//     decimal; it may be negative (from the end of the device);
//   - size, sectorsize and nsectors are always hexadecimal, with or
//     without "0x": "4000" means 0x4000, not 4000;
//   - a sixth field (libubootenv >= 0.3.3: 1 disables MTD locking) is
//     accepted and ignored.
//
// Lines starting with '#' (after blanks) and blank lines are skipped, and a
// field starting with '#' starts a trailing comment. Two device lines make a
// redundant env; both must have the same size (libubootenv
// check_compatible_devices). Where libubootenv silently skips a line it
// cannot read (too few fields, bad numbers) or a third device line,
// ParseConfig fails and names the line, so a config keel accepts means the
// same to fw_printenv.
func ParseConfig(r io.Reader) (*Config, error) {
	return parseConfig(r, "fw_env.config")
}

func parseConfig(r io.Reader, name string) (*Config, error) {
	cfg := &Config{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		dc, err := parseLine(fields)
		if err != nil {
			return nil, fmt.Errorf("ubootenv: %s line %d: %v; expected `device offset size [sectorsize [nsectors]]` (size, sectorsize, nsectors in hex)", name, lineNo, err)
		}
		if len(cfg.Copies) == 2 {
			return nil, fmt.Errorf("ubootenv: %s line %d: a third device line; an env has one copy or two (redundant)", name, lineNo)
		}
		cfg.Copies = append(cfg.Copies, dc)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ubootenv: reading %s: %w", name, err)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ubootenv: %s: %w", name, err)
	}
	return cfg, nil
}

func parseLine(fields []string) (DeviceConfig, error) {
	var dc DeviceConfig
	if len(fields) < 3 {
		return dc, fmt.Errorf("%d field(s)", len(fields))
	}
	if len(fields) > 6 {
		return dc, fmt.Errorf("%d fields", len(fields))
	}
	dc.Path = fields[0]
	var err error
	if dc.Offset, err = parseCInt(fields[1]); err != nil {
		return dc, fmt.Errorf("offset %q: %v", fields[1], err)
	}
	if dc.Size, err = parseHex(fields[2]); err != nil {
		return dc, fmt.Errorf("size %q: %v", fields[2], err)
	}
	if len(fields) > 3 {
		if dc.SectorSize, err = parseHex(fields[3]); err != nil {
			return dc, fmt.Errorf("sector size %q: %v", fields[3], err)
		}
	}
	if len(fields) > 4 {
		n, err := parseHex(fields[4])
		if err != nil || n > 1<<20 {
			return dc, fmt.Errorf("number of sectors %q: not a hex number up to 0x100000", fields[4])
		}
		dc.Sectors = int(n)
	}
	if len(fields) > 5 {
		if fields[5] != "0" && fields[5] != "1" {
			return dc, fmt.Errorf("disable-lock field %q: want 0 or 1", fields[5])
		}
	}
	return dc, nil
}

// parseCInt reads an integer the way strtoll(s, NULL, 0) (sscanf "%lli")
// does, but the whole field must be the number.
func parseCInt(s string) (int64, error) {
	neg := false
	t := s
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	base := 10
	switch {
	case len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X'):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	if t == "" || !allDigits(t, base) {
		return 0, fmt.Errorf("not an integer (0x... hex, 0... octal, or decimal)")
	}
	v, err := strconv.ParseInt(t, base, 64)
	if err != nil {
		return 0, fmt.Errorf("out of range")
	}
	if neg {
		v = -v
	}
	return v, nil
}

// parseHex reads a non-negative hexadecimal number with an optional 0x, as
// sscanf "%zx" does for sizes.
func parseHex(s string) (int64, error) {
	t := s
	if len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X') {
		t = t[2:]
	}
	if t == "" || !allDigits(t, 16) {
		return 0, fmt.Errorf("not a hexadecimal number")
	}
	v, err := strconv.ParseInt(t, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("out of range")
	}
	return v, nil
}

func allDigits(s string, base int) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		default:
			return false
		}
		if d >= base {
			return false
		}
	}
	return true
}

// validate checks what does not depend on the devices.
func (c *Config) validate() error {
	switch len(c.Copies) {
	case 1, 2:
	case 0:
		return fmt.Errorf("no device line; add `device offset size`")
	default:
		return fmt.Errorf("%d copies; an env has one copy or two (redundant)", len(c.Copies))
	}
	hdr := int64(headerSize(c.Redundant()))
	for i, d := range c.Copies {
		switch {
		case d.Path == "":
			return fmt.Errorf("copy %d: empty device path", i+1)
		case d.Size <= hdr:
			return fmt.Errorf("copy %d (%s): size 0x%x leaves no room for data after the %d-byte header", i+1, d.Path, d.Size, hdr)
		case d.Size > maxEnvSize:
			return fmt.Errorf("copy %d (%s): size 0x%x is over keel's limit 0x%x (sizes in fw_env.config are hexadecimal)", i+1, d.Path, d.Size, maxEnvSize)
		case d.SectorSize < 0 || d.Sectors < 0:
			return fmt.Errorf("copy %d (%s): negative sector size or count", i+1, d.Path)
		case d.SectorSize > maxEnvSize*8:
			return fmt.Errorf("copy %d (%s): sector size 0x%x is too large", i+1, d.Path, d.SectorSize)
		}
	}
	if len(c.Copies) == 2 && c.Copies[0].Size != c.Copies[1].Size {
		return fmt.Errorf("the two copies have different sizes (0x%x, 0x%x); libubootenv and U-Boot need equal sizes", c.Copies[0].Size, c.Copies[1].Size)
	}
	return nil
}
