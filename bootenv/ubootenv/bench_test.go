package ubootenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkReadWrite: one Read and one Write (a whole commit, synced and
// read back) of a redundant env on a regular file, as keel does per boot
// state change. The env holds ~2 KiB of variables.
func BenchmarkReadWrite(b *testing.B) {
	for _, size := range []int64{0x4000, 0x20000} {
		b.Run(fmt.Sprintf("size=%#x", size), func(b *testing.B) {
			p := filepath.Join(b.TempDir(), "env.bin")
			if err := os.WriteFile(p, make([]byte, 2*size), 0o644); err != nil {
				b.Fatal(err)
			}
			cfg := &Config{Copies: []DeviceConfig{{Path: p, Size: size}, {Path: p, Offset: size, Size: size}}}
			s, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			e := &Env{}
			for i := 0; i < 40; i++ {
				_ = e.Set(fmt.Sprintf("var%02d", i), strings.Repeat("v", 40))
			}
			_ = e.Set("keel_gen", "0")
			if err := s.Write(e); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for i := 0; b.Loop(); i++ {
				got, err := s.Read()
				if err != nil {
					b.Fatal(err)
				}
				if err := got.Set("keel_gen", strconv.Itoa(i)); err != nil {
					b.Fatal(err)
				}
				if err := s.Write(got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
