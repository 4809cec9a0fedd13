package ubootenv

// Compatibility with the real tools: mkenvimage (u-boot-tools) and
// fw_printenv / fw_setenv (libubootenv-tool). The tests fail, not skip,
// when the tools are missing: CI installs them.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (apt-get install u-boot-tools libubootenv-tool): %v", name, err)
	}
	return p
}

func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(needTool(t, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// writeConfig writes a fw_env.config for cfg (sizes in hex, as both tools
// read them) next to the devices.
func writeConfig(t testing.TB, cfg *Config) string {
	t.Helper()
	var b strings.Builder
	for _, c := range cfg.Copies {
		fmt.Fprintf(&b, "%s %#x %#x\n", c.Path, c.Offset, c.Size)
	}
	p := filepath.Join(filepath.Dir(cfg.Copies[0].Path), "fw_env.config")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fwPrintenv returns what fw_printenv -c sees, sorted by name as it prints.
func fwPrintenv(t testing.TB, cfgPath string) []Var {
	t.Helper()
	out := runTool(t, "fw_printenv", "-c", cfgPath)
	var vs []Var
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("fw_printenv line %q", line)
		}
		vs = append(vs, Var{name, value})
	}
	return vs
}

func sortedVars(e *Env) []Var {
	vs := e.Vars()
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	return vs
}

func keelRead(t testing.TB, cfg *Config) *Env {
	t.Helper()
	s := openT(t, cfg)
	e, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func keelWrite(t testing.TB, cfg *Config, e *Env) {
	t.Helper()
	if err := openT(t, cfg).Write(e); err != nil {
		t.Fatal(err)
	}
}

func flagsOf(t testing.TB, cfg *Config) [2]byte {
	t.Helper()
	var f [2]byte
	for i, c := range cfg.Copies {
		raw := readFile(t, c.Path)
		f[i] = raw[c.Offset+flagOffset]
	}
	return f
}

const mkenvInput = `# comment lines and blank lines are skipped by mkenvimage

bootcmd=run keel_boot; reset
bootargs=console=ttyS0,115200 root=/dev/mmcblk0p2 rw
keel_slot_a=good
empty=
zlast=a=b=c
`

var mkenvVars = []Var{
	{"bootcmd", "run keel_boot; reset"},
	{"bootargs", "console=ttyS0,115200 root=/dev/mmcblk0p2 rw"},
	{"keel_slot_a", "good"},
	{"empty", ""},
	{"zlast", "a=b=c"},
}

// mkenvimage images (single -s, redundant -r, 0xFF and zero padding) are
// read by keel, and keel's encoder makes the same bytes as mkenvimage -p 0.
func TestMkenvimageImages(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "env.txt")
	if err := os.WriteFile(txt, []byte(mkenvInput), 0o644); err != nil {
		t.Fatal(err)
	}
	want := &Env{vars: mkenvVars}
	for _, tc := range []struct {
		redundant bool
		size      int64
		pad       string
	}{
		{false, 0x4000, ""}, {true, 0x4000, ""}, {false, 0x2000, "0"}, {true, 0x20000, "0"}, {true, 0x1000, "0x5a"},
	} {
		name := fmt.Sprintf("redundant=%v/size=%#x/pad=%q", tc.redundant, tc.size, tc.pad)
		t.Run(name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "env.bin")
			args := []string{"-s", fmt.Sprint(tc.size), "-o", img}
			if tc.redundant {
				args = append(args, "-r")
			}
			if tc.pad != "" {
				args = append(args, "-p", tc.pad)
			}
			runTool(t, "mkenvimage", append(args, txt)...)
			raw := readFile(t, img)
			if int64(len(raw)) != tc.size {
				t.Fatalf("mkenvimage wrote %d bytes", len(raw))
			}
			cfg := &Config{Copies: []DeviceConfig{{Path: img, Size: tc.size}}}
			if tc.redundant {
				// The image goes into copy 1; copy 2 is blank.
				other := filepath.Join(filepath.Dir(img), "copy2.bin")
				if err := os.WriteFile(other, make([]byte, tc.size), 0o644); err != nil {
					t.Fatal(err)
				}
				cfg.Copies = append(cfg.Copies, DeviceConfig{Path: other, Size: tc.size})
			}
			assertVars(t, keelRead(t, cfg), want)
			if tc.redundant {
				if raw[flagOffset] != 1 {
					t.Fatalf("mkenvimage -r flag %#x", raw[flagOffset])
				}
				// Both copies holding the image (equal flags): copy 1.
				if err := os.WriteFile(cfg.Copies[1].Path, raw, 0o644); err != nil {
					t.Fatal(err)
				}
				assertVars(t, keelRead(t, cfg), want)
			}
			if tc.pad == "0" {
				mine, err := encodeImage(want, tc.size, tc.redundant, 1)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(mine, raw) {
					t.Fatalf("keel's image differs from mkenvimage -p 0:\nkeel %q\nmkenvimage %q", mine[:64], raw[:64])
				}
			}
		})
	}
}

// Env written by keel is read by fw_printenv, single and redundant, over
// several writes (so both copies and rising flags are involved).
func TestKeelWritesFwPrintenvReads(t *testing.T) {
	for _, copies := range []int{1, 2} {
		t.Run(fmt.Sprintf("copies=%d", copies), func(t *testing.T) {
			cfg, _ := makeFiles(t, copies, 0x4000, 0x4000, 0xFF)
			cfgPath := writeConfig(t, cfg)
			for i := 0; i < 4; i++ {
				e := mustEnv(t, "bootcmd", "run keel_boot", "keel_gen", fmt.Sprint(i),
					"spaces", "a b  c", "eq", "x=y=z", "unicode", "héllo", "empty", "")
				if i%2 == 1 {
					e.Delete("spaces")
					_ = e.Set("odd", "1")
				}
				keelWrite(t, cfg, e)
				if got := fwPrintenv(t, cfgPath); !reflect.DeepEqual(got, sortedVars(e)) {
					t.Fatalf("write %d: fw_printenv sees %q\nwant %q", i, got, sortedVars(e))
				}
				if got := runTool(t, "fw_printenv", "-c", cfgPath, "-n", "eq"); got != "x=y=z\n" {
					t.Fatalf("fw_printenv -n eq = %q", got)
				}
			}
		})
	}
}

// Env written by fw_setenv is read by keel, single and redundant, starting
// from blank storage (fw_setenv then needs a default env file: -f).
func TestFwSetenvWritesKeelReads(t *testing.T) {
	for _, copies := range []int{1, 2} {
		t.Run(fmt.Sprintf("copies=%d", copies), func(t *testing.T) {
			cfg, _ := makeFiles(t, copies, 0x4000, 0x4000, 0x00)
			cfgPath := writeConfig(t, cfg)
			defenv := filepath.Join(t.TempDir(), "empty-default-env")
			if err := os.WriteFile(defenv, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			want := &Env{}
			steps := [][2]string{{"bootcmd", "run keel_boot"}, {"keel_gen", "1"}, {"spaces", "a b  c"}, {"keel_gen", "2"}, {"aaa", "first by name"}}
			for _, kv := range steps {
				runTool(t, "fw_setenv", "-c", cfgPath, "-f", defenv, kv[0], kv[1])
				_ = want.Set(kv[0], kv[1])
				if got := sortedVars(keelRead(t, cfg)); !reflect.DeepEqual(got, sortedVars(want)) {
					t.Fatalf("after fw_setenv %s: keel reads %q\nwant %q", kv[0], got, sortedVars(want))
				}
			}
			// fw_setenv with no value deletes.
			runTool(t, "fw_setenv", "-c", cfgPath, "spaces")
			want.Delete("spaces")
			if got := sortedVars(keelRead(t, cfg)); !reflect.DeepEqual(got, sortedVars(want)) {
				t.Fatalf("after delete: keel reads %q", got)
			}
		})
	}
}

// The flag counter crosses 0xFF -> 0x00 with keel and fw_setenv taking
// turns, in both orders, so each of them makes the wrapping write once and
// reads the other's wrapped copy.
func TestFlagWrapAlternating(t *testing.T) {
	for _, keelFirst := range []bool{true, false} {
		// current: the copy holding flag 0xFD at the start, so that the
		// 0x00 lands in either copy (both branches of the wrap rule).
		for _, cur := range []int{0, 1} {
			t.Run(fmt.Sprintf("keelFirst=%v/current=copy%d", keelFirst, cur+1), func(t *testing.T) {
				cfg, _ := makeFiles(t, 2, 0x2000, 0x2000, 0x00)
				cfgPath := writeConfig(t, cfg)
				writeImage(t, cfg.Copies[1-cur].Path, 0, mustEnv(t, "gen", "older"), 0x2000, true, 0xFC)
				writeImage(t, cfg.Copies[cur].Path, 0, mustEnv(t, "gen", "start"), 0x2000, true, 0xFD)
				if got := runTool(t, "fw_printenv", "-c", cfgPath, "-n", "gen"); got != "start\n" {
					t.Fatalf("fw_printenv before: %q", got)
				}
				want := mustEnv(t, "gen", "start")
				flag := byte(0xFD)
				target := 1 - cur
				for step := 0; step < 6; step++ {
					byKeel := (step%2 == 0) == keelFirst
					val := fmt.Sprintf("step%d", step)
					if byKeel {
						e := want.Clone()
						_ = e.Set("gen", val)
						keelWrite(t, cfg, e)
					} else {
						runTool(t, "fw_setenv", "-c", cfgPath, "gen", val)
					}
					_ = want.Set("gen", val)
					flag++
					f := flagsOf(t, cfg)
					if f[target] != flag {
						t.Fatalf("step %d (keel=%v): flags %#x, want %#x in copy %d", step, byKeel, f, flag, target+1)
					}
					if got := sortedVars(keelRead(t, cfg)); !reflect.DeepEqual(got, sortedVars(want)) {
						t.Fatalf("step %d flags %#x: keel reads %q, want %q", step, f, got, sortedVars(want))
					}
					if got := runTool(t, "fw_printenv", "-c", cfgPath, "-n", "gen"); got != val+"\n" {
						t.Fatalf("step %d flags %#x: fw_printenv reads %q, want %q", step, f, got, val)
					}
					target = 1 - target
				}
				if flag != 0x03 {
					t.Fatalf("did not cross the wrap: last flag %#x", flag)
				}
			})
		}
	}
}

// A corrupted copy is skipped by keel and by fw_printenv alike.
func TestCorruptCopyBothTools(t *testing.T) {
	for _, victim := range []string{"newer", "older"} {
		t.Run(victim, func(t *testing.T) {
			cfg, paths := makeFiles(t, 2, 0x2000, 0x2000, 0x00)
			cfgPath := writeConfig(t, cfg)
			keelWrite(t, cfg, mustEnv(t, "gen", "older")) // copy 1
			keelWrite(t, cfg, mustEnv(t, "gen", "newer")) // copy 2
			p, want := paths[1], "older"
			if victim == "older" {
				p, want = paths[0], "newer"
			}
			flipByte(t, p, 0x100) // in the padding: the CRC covers it
			if got := keelRead(t, cfg); got.vars[0].Value != want {
				t.Fatalf("keel reads %q, want %q", got.Vars(), want)
			}
			if got := runTool(t, "fw_printenv", "-c", cfgPath, "-n", "gen"); got != want+"\n" {
				t.Fatalf("fw_printenv reads %q, want %q", got, want)
			}
			// Both tools then write over the corrupted copy.
			runTool(t, "fw_setenv", "-c", cfgPath, "gen", "by-fw_setenv")
			if st := decodeCopy(readFile(t, p), true); !st.valid() {
				t.Fatalf("fw_setenv did not rewrite the corrupted copy: %v", st.bad)
			}
			if got, _ := keelRead(t, cfg).Get("gen"); got != "by-fw_setenv" {
				t.Fatalf("keel reads %q after fw_setenv", got)
			}
		})
	}
}

// Both tools refuse a blank env the same way: keel with ErrBlank,
// fw_printenv with an error exit (it falls back to a default env file,
// which is absent here).
func TestBlankBothTools(t *testing.T) {
	cfg, _ := makeFiles(t, 2, 0x2000, 0x2000, 0xFF)
	cfgPath := writeConfig(t, cfg)
	if _, err := openT(t, cfg).Read(); err == nil {
		t.Fatal("keel read a blank env")
	}
	cmd := exec.Command(needTool(t, "fw_printenv"), "-c", cfgPath, "-f", filepath.Join(t.TempDir(), "none"))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("fw_printenv read a blank env: %s", out)
	}
}

// A redundant env on a real block device (a loop device), placed with
// negative offsets (from the end, as libubootenv does with BLKGETSIZE64):
// keel and fw_printenv/fw_setenv agree on where the copies are and what
// they hold.
func TestBlockDeviceNegativeOffsets(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(runTool(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	cfg := &Config{Copies: []DeviceConfig{{Path: dev, Offset: -0x8000, Size: 0x4000}, {Path: dev, Offset: -0x4000, Size: 0x4000}}}
	cfgPath := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("%s -0x8000 0x4000\n%s -0x4000 0x4000\n", dev, dev)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openT(t, cfg)
	if _, err := s.Read(); !errors.Is(err, ErrBlank) {
		t.Fatalf("fresh loop device: %v", err)
	}
	e := mustEnv(t, "bootcmd", "run keel_boot", "keel_gen", "1")
	if err := s.Write(e); err != nil {
		t.Fatal(err)
	}
	if got := fwPrintenv(t, cfgPath); !reflect.DeepEqual(got, sortedVars(e)) {
		t.Fatalf("fw_printenv on %s: %q", dev, got)
	}
	runTool(t, "fw_setenv", "-c", cfgPath, "keel_gen", "2")
	got, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("keel_gen"); v != "2" {
		t.Fatalf("keel reads keel_gen=%q after fw_setenv", v)
	}
	// The copies are where both tools think: the last 32 KiB of the disk.
	raw := readFile(t, img)
	for i, off := range []int{1<<20 - 0x8000, 1<<20 - 0x4000} {
		if st := decodeCopy(raw[off:off+0x4000], true); !st.valid() {
			t.Fatalf("copy %d not at %#x: %v", i+1, off, st.bad)
		}
	}
}

// libubootenv pads with whatever its buffer held (libuboot_env_store
// mallocs the image and does not clear it): after a delete, the bytes of
// the deleted variable can follow the end of the env. keel stops at the
// empty entry and never reads them.
func TestFwSetenvStalePadding(t *testing.T) {
	cfg, paths := makeFiles(t, 2, 0x4000, 0x4000, 0x00)
	cfgPath := writeConfig(t, cfg)
	defenv := filepath.Join(t.TempDir(), "empty-default-env")
	if err := os.WriteFile(defenv, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 200)
	runTool(t, "fw_setenv", "-c", cfgPath, "-f", defenv, "longvariable", long)
	runTool(t, "fw_setenv", "-c", cfgPath, "other", "1")
	runTool(t, "fw_setenv", "-c", cfgPath, "longvariable")
	assertVars(t, keelRead(t, cfg), mustEnv(t, "other", "1"))
	// Copy 2 holds the last write (flags 1, 2, 3 alternate from copy 2).
	raw := readFile(t, paths[0])
	if raw[flagOffset] != 3 {
		raw = readFile(t, paths[1])
	}
	end := hdrRedundant + len("other=1\x00\x00")
	if bytes.Contains(raw[end:], []byte("xxxxxxxx")) {
		t.Logf("fw_setenv left stale bytes of the deleted variable after the end of the env: %q...", raw[end:end+24])
	} else {
		t.Logf("this libubootenv build left no stale bytes this time")
	}
}
