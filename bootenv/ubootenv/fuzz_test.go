package ubootenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"github.com/keelboot/keel/testkit/faultdev"
)

// FuzzParse feeds arbitrary bytes as a data area and as whole storage
// (one copy, or two halves of a redundant env, counter and boolean flags;
// with fixCRC the CRC of each copy is made to match, so that the fuzzer
// gets past it to the flags and the entries). Seeds in
// testdata/fuzz/FuzzParse include mkenvimage and fw_setenv output.
func FuzzParse(f *testing.F) {
	f.Add([]byte("a=1\x00b=2\x00\x00"), false, false, false)
	f.Add([]byte("\x00\x00\x00\x00\x00"), true, false, true)
	f.Fuzz(func(t *testing.T, data []byte, redundant, boolean, fixCRC bool) {
		if len(data) > 1<<16 {
			return
		}
		// As a data area.
		e, err := parseData(data)
		if err == nil {
			checkEnvInvariants(t, e)
			// Whatever was parsed encodes into the same area (plus the
			// final empty entry, which a reader does not insist on) and
			// parses back to the same variables.
			enc, err := encodeData(e, len(data)+1)
			if err != nil {
				t.Fatalf("re-encoding a parsed env into its own area: %v", err)
			}
			e2, err := parseData(enc)
			if err != nil || !reflect.DeepEqual(e.Vars(), e2.Vars()) {
				t.Fatalf("round trip: %v %q -> %q", err, e.Vars(), e2.Vars())
			}
		}
		// As whole storage.
		copies := 1
		if redundant {
			copies = 2
		}
		size := int64(len(data) / copies)
		if size <= int64(headerSize(redundant)) {
			return
		}
		cfg := &Config{}
		var devs []Device
		for i := 0; i < copies; i++ {
			cfg.Copies = append(cfg.Copies, DeviceConfig{Path: fmt.Sprintf("copy%d", i), Size: size})
			c := append([]byte(nil), data[int64(i)*size:int64(i+1)*size]...)
			if fixCRC {
				binary.LittleEndian.PutUint32(c, crc32.ChecksumIEEE(c[headerSize(redundant):]))
			}
			devs = append(devs, faultdev.NewMem(faultdev.File, c, 0))
		}
		flags := FlagCounter
		if boolean {
			flags = FlagBoolean
		}
		s, err := OpenDevices(cfg, devs, flags)
		if err != nil {
			t.Fatalf("OpenDevices: %v", err)
		}
		got, err := s.Read()
		if err != nil {
			if !errors.Is(err, ErrBlank) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read: unexpected error kind: %v", err)
			}
			return
		}
		checkEnvInvariants(t, got)
		// What was read can be written back and read again, unless it
		// filled the area without the final empty entry.
		if got.encodedLen() > int(size)-headerSize(redundant) {
			if err := s.Write(got); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("writing back an env without room for its end: %v", err)
			}
			return
		}
		if err := s.Write(got); err != nil {
			t.Fatalf("writing back what was read: %v", err)
		}
		again, err := s.Read()
		if err != nil || !reflect.DeepEqual(again.Vars(), got.Vars()) {
			t.Fatalf("write/read round trip: %v %q -> %q", err, got.Vars(), again.Vars())
		}
	})
}

func checkEnvInvariants(t *testing.T, e *Env) {
	t.Helper()
	seen := map[string]bool{}
	for _, v := range e.Vars() {
		if checkName(v.Name) != nil || checkValue(v.Name, v.Value) != nil {
			t.Fatalf("parsed an invalid variable %q=%q", v.Name, v.Value)
		}
		if seen[v.Name] {
			t.Fatalf("parsed %q twice", v.Name)
		}
		seen[v.Name] = true
	}
}

// formatConfig writes cfg back in fw_env.config syntax.
func formatConfig(cfg *Config) string {
	var b strings.Builder
	for _, c := range cfg.Copies {
		fmt.Fprintf(&b, "%s %d %#x %#x %#x\n", c.Path, c.Offset, c.Size, c.SectorSize, c.Sectors)
	}
	return b.String()
}

// FuzzConfig: ParseConfig never panics, accepts only configs that pass
// validation, and what it accepts formats back to the same config.
func FuzzConfig(f *testing.F) {
	f.Add("/dev/mtd1 0x0 0x4000 0x10000\n/dev/mtd2 0x0 0x4000 0x10000\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := ParseConfig(strings.NewReader(text))
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error")
			}
			return
		}
		if err := cfg.validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		for _, c := range cfg.Copies {
			if c.Path == "" || strings.ContainsAny(c.Path, " \t\n\r") || strings.HasPrefix(c.Path, "#") {
				t.Fatalf("bad path %q", c.Path)
			}
		}
		text2 := formatConfig(cfg)
		cfg2, err := ParseConfig(strings.NewReader(text2))
		if err != nil {
			t.Fatalf("reparse of %q: %v", text2, err)
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatalf("round trip %+v -> %q -> %+v", cfg, text2, cfg2)
		}
	})
}
