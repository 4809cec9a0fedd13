package initrd

import (
	"bytes"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/kmod/kmodtest"
	"github.com/keelboot/keel/format/cpio"
)

var m = kmodtest.M

// fakeKernel lays out build/kernel/<arch> the way fetch-kernel.sh does:
// root/lib/modules/<version> with a modules symlink to it.
func fakeKernel(t *testing.T) (modulesLink string) {
	t.Helper()
	out := t.TempDir()
	dir := filepath.Join(out, "root/lib/modules/6.1.0-99-test")
	kmodtest.Build(t, dir,
		m("kernel/drivers/virtio/virtio_pci.ko", "name=virtio_pci", "depends=virtio_pci_modern_dev,virtio"),
		m("kernel/drivers/virtio/virtio_pci_modern_dev.ko", "name=virtio_pci_modern_dev", "depends="),
		m("kernel/drivers/virtio/virtio.ko", "name=virtio", "depends="),
		m("kernel/drivers/block/virtio_blk.ko", "name=virtio_blk", "depends=virtio"),
		m("kernel/crypto/crc32c_generic.ko", "name=crc32c_generic", "depends=", "alias=crc32c"),
		m("kernel/drivers/md/dm-verity.ko", "name=dm_verity", "depends=dm-mod"),
		m("kernel/drivers/md/dm-mod.ko", "name=dm_mod", "depends="),
		m("kernel/fs/unused.ko", "name=unused", "depends="),
	)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/nls/nls_ascii.ko\n"), 0o644)
	link := filepath.Join(out, "modules")
	if err := os.Symlink("root/lib/modules/6.1.0-99-test", link); err != nil {
		t.Fatal(err)
	}
	return link
}

func dummyInit(t *testing.T, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(b[size/2:]) // half zeros, half noise: like a binary
	copy(b, "\x7fELF")
	p := filepath.Join(t.TempDir(), "keel-init")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testSpec(t *testing.T) Spec {
	src := filepath.Join(t.TempDir(), "board.json")
	os.WriteFile(src, []byte(`{"name":"qemu"}`), 0o600)
	return Spec{
		Init:       dummyInit(t, 256<<10),
		ModulesDir: fakeKernel(t),
		Modules:    []string{"crc32c", "nls-ascii", "virtio_pci", "virtio_blk", "dm-verity"},
		Files: []File{
			{Path: "/etc/keel/board.json", Source: src},
			{Path: "/etc/motd", Data: []byte("hello\n"), Mode: 0o600},
			{Path: "/newroot", Mode: fs.ModeDir | 0o700},
			{Path: "/bin/sh", Mode: fs.ModeSymlink, Target: "/init"},
			{Path: "/dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
			{Path: "/dev/vda", Mode: fs.ModeDevice | 0o600, Major: 254},
		},
	}
}

// readImage decompresses and reads an initramfs back.
func readImage(t *testing.T, b []byte) (map[string]*cpio.Record, []string, Compression) {
	t.Helper()
	r, c, err := Decompress(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*cpio.Record{}
	var names []string
	for _, r := range recs {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	return byName, names, c
}

var wantOrder = []string{
	"/lib/modules/6.1.0-99-test/kernel/crypto/crc32c_generic.ko",
	"/lib/modules/6.1.0-99-test/kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"/lib/modules/6.1.0-99-test/kernel/drivers/virtio/virtio.ko",
	"/lib/modules/6.1.0-99-test/kernel/drivers/virtio/virtio_pci.ko",
	"/lib/modules/6.1.0-99-test/kernel/drivers/block/virtio_blk.ko",
	"/lib/modules/6.1.0-99-test/kernel/drivers/md/dm-mod.ko",
	"/lib/modules/6.1.0-99-test/kernel/drivers/md/dm-verity.ko",
}

func TestBuild(t *testing.T) {
	spec := testSpec(t)
	init, _ := os.ReadFile(spec.Init)
	for _, c := range []Compression{"", Zstd, Gzip, None} {
		spec.Compression = c
		var out bytes.Buffer
		if err := Build(&out, spec); err != nil {
			t.Fatal(err)
		}
		recs, names, got := readImage(t, out.Bytes())
		if want := map[Compression]Compression{"": Zstd}[c]; got != c && got != want {
			t.Errorf("Compression %q: the output is %s", c, got)
		}
		check := func(name string, mode uint32, data string) {
			t.Helper()
			r := recs[name]
			if r == nil {
				t.Errorf("%s: %s missing; archive has %q", c, name, names)
				return
			}
			if r.Mode != mode || string(r.Data) != data || r.UID != 0 || r.GID != 0 || r.Mtime != 0 {
				t.Errorf("%s: %s is %v (uid %d gid %d mtime %d), want mode %06o, %d bytes", c, name, r, r.UID, r.GID, r.Mtime, mode, len(data))
			}
		}
		check("init", cpio.TypeReg|0o755, string(init))
		for _, d := range []string{"dev", "proc", "sys", "run"} {
			check(d, cpio.TypeDir|0o755, "")
		}
		check("tmp", cpio.TypeDir|0o1777, "")
		check("dev/console", cpio.TypeChar|0o600, "")
		if r := recs["dev/console"]; r == nil || r.RDevMajor != 5 || r.RDevMinor != 1 {
			t.Errorf("dev/console: %v", r)
		}
		check("etc/keel/board.json", cpio.TypeReg|0o644, `{"name":"qemu"}`)
		check("etc/motd", cpio.TypeReg|0o600, "hello\n")
		check("newroot", cpio.TypeDir|0o700, "")
		check("bin/sh", cpio.TypeSymlink|0o777, "/init")
		check("dev/null", cpio.TypeChar|0o666, "")
		check("dev/vda", cpio.TypeBlock|0o600, "")
		if r := recs["dev/vda"]; r == nil || r.RDevMajor != 254 {
			t.Errorf("dev/vda: %v", r)
		}
		order := recs[strings.TrimPrefix(ModulesOrderPath, "/")]
		if order == nil {
			t.Fatalf("%s: no %s", c, ModulesOrderPath)
		}
		paths, err := ReadModulesOrder(bytes.NewReader(order.Data))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(paths, wantOrder) {
			t.Errorf("%s: %s lists\n%q\nwant\n%q", c, ModulesOrderPath, paths, wantOrder)
		}
		for _, p := range paths {
			r := recs[strings.TrimPrefix(p, "/")]
			if r == nil || r.Mode != cpio.TypeReg|0o644 || !bytes.HasPrefix(r.Data, []byte("\x7fELF")) {
				t.Errorf("%s: module %s missing or not an ELF file: %v", c, p, r)
			}
		}
		if recs["lib/modules/6.1.0-99-test/kernel/fs/unused.ko"] != nil {
			t.Errorf("%s: a module nobody wants is in the archive", c)
		}
	}
}

func TestPlan(t *testing.T) {
	spec := testSpec(t)
	im, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	if im.KernelVersion != "6.1.0-99-test" || len(im.Modules) != len(wantOrder) || im.Compression != Zstd {
		t.Errorf("Plan: version %q, %d modules, %s", im.KernelVersion, len(im.Modules), im.Compression)
	}
	spec.KernelVersion = "custom"
	im, err = Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	if im.Archive.Get("/lib/modules/custom/kernel/drivers/md/dm-mod.ko") == nil {
		t.Errorf("KernelVersion custom: got %q", im.Archive.Names())
	}
	// No modules: no modules.order either (keel-init loads none).
	im, err = Plan(Spec{Init: spec.Init})
	if err != nil {
		t.Fatal(err)
	}
	if im.Archive.Get(ModulesOrderPath) != nil || len(im.Modules) != 0 {
		t.Errorf("Plan without modules wrote %s", ModulesOrderPath)
	}
}

func TestDeterministic(t *testing.T) {
	spec := testSpec(t)
	for _, c := range []Compression{Zstd, Gzip, None} {
		spec.Compression = c
		var first []byte
		for i := 0; i < 3; i++ {
			rand.Shuffle(len(spec.Files), func(i, j int) { spec.Files[i], spec.Files[j] = spec.Files[j], spec.Files[i] })
			var out bytes.Buffer
			if err := Build(&out, spec); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = out.Bytes()
			} else if !bytes.Equal(first, out.Bytes()) {
				t.Fatalf("%s: build %d (%d bytes) differs from build 0 (%d bytes)", c, i, out.Len(), len(first))
			}
		}
	}
}

// TestExternalTools unpacks the output with Debian's zstd, gzip and cpio:
// what the kernel does, done by independent implementations.
func TestExternalTools(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal("cpio not installed (scripts/install-deps.sh installs it)")
	}
	spec := testSpec(t)
	for _, tc := range []struct {
		c    Compression
		tool []string
	}{
		{Zstd, []string{"zstd", "-dc"}},
		{Gzip, []string{"gzip", "-dc"}},
		{None, []string{"cat"}},
	} {
		tool, err := exec.LookPath(tc.tool[0])
		if err != nil {
			t.Logf("%s not installed: %s output not checked with it", tc.tool[0], tc.c)
			continue
		}
		spec.Compression = tc.c
		var out bytes.Buffer
		if err := Build(&out, spec); err != nil {
			t.Fatal(err)
		}
		dec := exec.Command(tool, tc.tool[1:]...)
		dec.Stdin = &out
		raw, err := dec.Output()
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(tc.tool, " "), err)
		}
		list := exec.Command(cpioBin, "-itvn", "--quiet")
		list.Stdin = bytes.NewReader(raw)
		var stderr bytes.Buffer
		list.Stderr = &stderr
		listing, err := list.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%s: cpio -itvn: %v\n%s", tc.c, err, stderr.Bytes())
		}
		for _, want := range []string{
			"-rwxr-xr-x   1 0        0          262144 Jan  1  1970 init\n",
			"crw-------   1 0        0          5,   1 Jan  1  1970 dev/console\n",
			"lrwxrwxrwx   1 0        0               5 Jan  1  1970 bin/sh -> /init\n",
			"etc/keel/modules.order\n",
			"lib/modules/6.1.0-99-test/kernel/drivers/md/dm-verity.ko\n",
		} {
			if !strings.Contains(string(listing), want) {
				t.Errorf("%s: cpio -itvn output lacks %q:\n%s", tc.c, want, listing)
			}
		}
		get := exec.Command(cpioBin, "-i", "--quiet", "--to-stdout", "etc/keel/modules.order")
		get.Stdin = bytes.NewReader(raw)
		order, err := get.Output()
		if err != nil {
			t.Fatal(err)
		}
		if paths, _ := ReadModulesOrder(bytes.NewReader(order)); !reflect.DeepEqual(paths, wantOrder) {
			t.Errorf("%s: modules.order through cpio -i: %q", tc.c, order)
		}
	}
}

func TestErrors(t *testing.T) {
	spec := testSpec(t)
	for _, tc := range []struct {
		name   string
		change func(s *Spec)
		want   string
	}{
		{"no init", func(s *Spec) { s.Init = "" }, "Spec.Init is empty"},
		{"init missing", func(s *Spec) { s.Init = "/nonexistent/keel-init" }, "/nonexistent/keel-init"},
		{"no modules dir", func(s *Spec) { s.ModulesDir = "" }, "Spec.ModulesDir is empty"},
		{"modules dir missing", func(s *Spec) { s.ModulesDir = "/nonexistent/modules" }, "make kernel"},
		{"missing module", func(s *Spec) { s.Modules = append(s.Modules, "ext4") }, "module ext4 (wanted) not found"},
		{"compression", func(s *Spec) { s.Compression = "lz4" }, `unknown compression "lz4"`},
		{"relative", func(s *Spec) { s.Files = append(s.Files, File{Path: "etc/x"}) }, "not absolute"},
		{"init twice", func(s *Spec) { s.Files = append(s.Files, File{Path: "/init", Data: []byte("x")}) }, "init added twice"},
		{"source missing", func(s *Spec) { s.Files = append(s.Files, File{Path: "/x", Source: "/nonexistent/x"}) }, "/nonexistent/x"},
		{"data and source", func(s *Spec) { s.Files = append(s.Files, File{Path: "/x", Source: spec.Init, Data: []byte{}}) }, "both Data and Source"},
		{"symlink no target", func(s *Spec) { s.Files = append(s.Files, File{Path: "/x", Mode: fs.ModeSymlink}) }, "takes a Target"},
		{"target on file", func(s *Spec) { s.Files = append(s.Files, File{Path: "/x", Target: "y"}) }, "add fs.ModeSymlink"},
		{"dir with data", func(s *Spec) { s.Files = append(s.Files, File{Path: "/x", Mode: fs.ModeDir, Data: []byte("y")}) }, "takes no Data"},
		{"fifo", func(s *Spec) { s.Files = append(s.Files, File{Path: "/x", Mode: fs.ModeNamedPipe}) }, "not supported"},
	} {
		s := spec
		s.Files = append([]File(nil), spec.Files...)
		tc.change(&s)
		err := Build(io.Discard, s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestDecompressErrors(t *testing.T) {
	for _, in := range []string{"", "abc", "PK\x03\x04zip file"} {
		if _, _, err := Decompress(strings.NewReader(in)); err == nil {
			t.Errorf("Decompress(%q) succeeded", in)
		}
	}
}

func TestOpenKernel(t *testing.T) {
	link := fakeKernel(t)
	dir := filepath.Dir(link)
	if _, err := OpenKernel(dir); err == nil || !strings.Contains(err.Error(), "make kernel") {
		t.Errorf("OpenKernel without version: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "version"), []byte("6.1.0-99-amd64\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "package"), []byte("linux-image-6.1.0-99-amd64=6.1.999-1\n"), 0o644)
	if _, err := OpenKernel(dir); err == nil || !strings.Contains(err.Error(), "vmlinuz") {
		t.Errorf("OpenKernel without vmlinuz: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("MZ"), 0o644)
	k, err := OpenKernel(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Kernel{Dir: dir, Vmlinuz: filepath.Join(dir, "vmlinuz"), ModulesDir: link, Version: "6.1.0-99-amd64", Arch: "amd64", Package: "linux-image-6.1.0-99-amd64=6.1.999-1"}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("OpenKernel = %+v, want %+v", k, want)
	}
	os.WriteFile(filepath.Join(dir, "version"), []byte("6.1.0-99-riscv64\n"), 0o644)
	if _, err := OpenKernel(dir); err == nil || !strings.Contains(err.Error(), "-amd64 or -arm64") {
		t.Errorf("OpenKernel(riscv64): %v", err)
	}
}
