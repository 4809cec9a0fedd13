package bootimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage/bootimagetest"
	"github.com/keelboot/keel/builder/initrd"
	"github.com/keelboot/keel/format/cpio"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/testkit/testkernel"
)

var update = flag.Bool("update", false, "rewrite the golden listings in testdata/")

// inputs are one set of inputs for the tests: the host's board, a fake
// kernel for it, keel-init for its architecture and two key files.
type inputs struct {
	board     boards.Board
	kernelDir string
	keelInit  string
	keys      []string
}

func newInputs(t *testing.T) inputs {
	t.Helper()
	b := bootimagetest.HostBoard(t)
	dir := t.TempDir()
	return inputs{
		board:     b,
		kernelDir: bootimagetest.Kernel(t, b),
		keelInit:  bootimagetest.KeelInit(t, b.Arch),
		keys:      []string{bootimagetest.PublicKey(t, dir, "release"), bootimagetest.PublicKey(t, dir, "next")},
	}
}

func (in inputs) spec(stage layout.Stage) Spec {
	return Spec{Board: in.board, Stage: stage, KeelInit: in.keelInit, KernelDir: in.kernelDir, TrustedKeys: in.keys}
}

func build(t *testing.T, s Spec) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Build(&out, s); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// read unpacks an archive with builder/initrd's reader.
func read(t *testing.T, data []byte) map[string]*cpio.Record {
	t.Helper()
	r, c, err := initrd.Decompress(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if c != initrd.Zstd {
		t.Errorf("compression %s, want zstd", c)
	}
	recs, err := cpio.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*cpio.Record{}
	for _, r := range recs {
		m["/"+r.Name] = r
	}
	return m
}

// listing is the golden form of an archive: every entry's mode and path,
// in archive order, then the stage file and the module list. The bytes of
// keel-init, the modules (gcc's), the board and the keys are checked
// apart.
func listing(t *testing.T, data []byte) string {
	t.Helper()
	r, _, err := initrd.Decompress(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var stage, order []byte
	for _, r := range recs {
		fmt.Fprintf(&b, "%06o /%s\n", r.Mode, r.Name)
		switch "/" + r.Name {
		case layout.StagePath:
			stage = r.Data
		case layout.ModulesPath:
			order = r.Data
		}
	}
	fmt.Fprintf(&b, "\n%s:\n%s\n%s:\n%s", layout.StagePath, stage, layout.ModulesPath, order)
	return b.String()
}

// TestBuild builds both stages and checks every file keel-init reads,
// and the file set against testdata/<board>-stageN.txt (go test -update
// rewrites them).
func TestBuild(t *testing.T) {
	in := newInputs(t)
	keelInit, err := os.ReadFile(in.keelInit)
	if err != nil {
		t.Fatal(err)
	}
	var keys []byte
	for _, k := range in.keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b...)
	}
	boardJSON, err := BoardJSON(in.board)
	if err != nil {
		t.Fatal(err)
	}
	for _, stage := range []layout.Stage{layout.Stage1, layout.Stage2} {
		data := build(t, in.spec(stage))
		recs := read(t, data)
		for path, want := range map[string][]byte{
			"/init":                keelInit,
			layout.BoardPath:       boardJSON,
			layout.TrustedKeysPath: keys,
			layout.StagePath:       stage.FileData(),
		} {
			r := recs[path]
			if r == nil || !bytes.Equal(r.Data, want) {
				t.Errorf("stage %s: %s differs from its input (%v)", stage, path, r)
			}
		}
		if r := recs["/init"]; r == nil || r.Mode != cpio.TypeReg|0o755 {
			t.Errorf("stage %s: /init: %v", stage, r)
		}
		golden := filepath.Join("testdata", fmt.Sprintf("%s-stage%s.txt", in.board.Name, stage))
		got := listing(t, data)
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if got != string(want) {
			t.Errorf("stage %s: the archive differs from %s (go test -update rewrites it):\n%s", stage, golden, got)
		}
	}
}

// TestSameAsHandAssembled: the archive is, byte for byte, the one the VM
// harness assembled by hand with builder/initrd before this package
// existed: keel-init, the stage's modules, board.json, trusted-keys and
// the stage file.
func TestSameAsHandAssembled(t *testing.T) {
	in := newInputs(t)
	k, err := initrd.OpenKernel(in.kernelDir)
	if err != nil {
		t.Fatal(err)
	}
	boardJSON, err := BoardJSON(in.board)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := TrustedKeys(in.keys)
	if err != nil {
		t.Fatal(err)
	}
	for stage, modules := range map[layout.Stage][]string{layout.Stage1: in.board.InitModules, layout.Stage2: in.board.StageModules} {
		var want bytes.Buffer
		err := initrd.Build(&want, initrd.Spec{
			Init:       in.keelInit,
			ModulesDir: k.ModulesDir,
			Modules:    modules,
			Files: []initrd.File{
				{Path: "/etc/keel/board.json", Data: boardJSON},
				{Path: "/etc/keel/trusted-keys", Data: keys},
				{Path: layout.StagePath, Data: stage.FileData()},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := build(t, in.spec(stage)); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("stage %s: %d bytes, the hand-assembled archive %d", stage, len(got), want.Len())
		}
	}
}

// TestReproducible: the same inputs give the same bytes, whether the
// kernel is named by its folder or by its modules folder, and whatever
// the input files' times.
func TestReproducible(t *testing.T) {
	in := newInputs(t)
	for _, stage := range []layout.Stage{layout.Stage1, layout.Stage2} {
		first := build(t, in.spec(stage))
		if again := build(t, in.spec(stage)); !bytes.Equal(first, again) {
			t.Errorf("stage %s: a second build differs", stage)
		}
		s := in.spec(stage)
		s.KernelDir, s.ModulesDir = "", filepath.Join(in.kernelDir, "modules")
		for _, p := range append([]string{in.keelInit}, in.keys...) {
			if err := os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if again := build(t, s); !bytes.Equal(first, again) {
			t.Errorf("stage %s: the build from the modules folder differs", stage)
		}
	}
	if bytes.Equal(build(t, in.spec(layout.Stage1)), build(t, in.spec(layout.Stage2))) {
		t.Error("stage 1 and stage 2 are the same archive")
	}
}

// otherArch is the board architecture that is not the host's.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// TestKeelInitRefused: a keel-init that could not run as PID 1 on the
// board is refused with the reason.
func TestKeelInitRefused(t *testing.T) {
	in := newInputs(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "keel-init.txt")
	os.WriteFile(text, []byte("#!/bin/sh\necho not a binary\n"), 0o755)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	sh, _ = filepath.EvalSymlinks(sh)
	if f, err := elf.Open(sh); err != nil || !hasInterp(f) {
		t.Fatalf("%s is not a dynamically linked ELF executable (%v): the test needs one", sh, err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"wrong arch", bootimagetest.KeelInit(t, otherArch()), "built for EM_"},
		{"dynamic", sh, "dynamically linked (interpreter /lib"},
		{"script", text, "not an ELF executable"},
		{"another Go program", bootimagetest.GoBuild(t, "./builder/initrd/testdata/bootcheck", in.board.Arch), "builder/initrd/testdata/bootcheck, not keel-init"},
		{"missing", filepath.Join(dir, "nonexistent"), "nonexistent"},
	} {
		s := in.spec(layout.Stage1)
		s.KeelInit = tc.path
		err := Build(new(bytes.Buffer), s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		} else if tc.name != "missing" && !strings.Contains(err.Error(), "make build") {
			t.Errorf("%s: %v does not say how to build keel-init", tc.name, err)
		}
		if tc.name != "missing" {
			if err := CheckKeelInitFile(tc.path, in.board.Arch); err == nil {
				t.Errorf("%s: CheckKeelInitFile passed", tc.name)
			}
		}
	}
	if err := CheckKeelInitFile(in.keelInit, in.board.Arch); err != nil {
		t.Errorf("the right keel-init: %v", err)
	}
	if err := CheckKeelInitFile(bootimagetest.KeelInit(t, otherArch()), otherArch()); err != nil {
		t.Errorf("keel-init for %s: %v", otherArch(), err)
	}
}

func hasInterp(f *elf.File) bool {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

// TestErrors: inputs that would make a useless archive are refused, and
// the error says what to do.
func TestErrors(t *testing.T) {
	in := newInputs(t)
	dir := t.TempDir()
	priv := strings.TrimSuffix(in.keys[0], ".pub") + ".key"
	dup := filepath.Join(dir, "dup.pub")
	if data, err := os.ReadFile(in.keys[0]); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(dup, append([]byte("# the release key again\n"), data...), 0o644); err != nil {
		t.Fatal(err)
	}

	// A kernel of the other architecture.
	other := in.board
	other.Arch = otherArch()
	otherKernel := bootimagetest.Kernel(t, other)

	// The host's kernel with one module claiming another machine.
	wrongModule := bootimagetest.Kernel(t, in.board)
	ko := filepath.Join(wrongModule, "modules", "kernel/drivers/virtio/virtio.ko")
	data, err := os.ReadFile(ko)
	if err != nil {
		t.Fatal(err)
	}
	m := elf.EM_AARCH64
	if in.board.Arch == "arm64" {
		m = elf.EM_X86_64
	}
	binary.LittleEndian.PutUint16(data[18:], uint16(m)) // e_machine
	if err := os.WriteFile(ko, data, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		change func(s *Spec)
		want   string
	}{
		{"stage", func(s *Spec) { s.Stage = 3 }, "stage 3: want 1"},
		{"no keys", func(s *Spec) { s.TrustedKeys = nil }, "no trusted public keys given"},
		{"private key", func(s *Spec) { s.TrustedKeys = []string{priv} }, "this is a private key"},
		{"key twice", func(s *Spec) { s.TrustedKeys = append(s.TrustedKeys, dup) }, "give it once"},
		{"key missing", func(s *Spec) { s.TrustedKeys = []string{filepath.Join(dir, "none.pub")} }, "none.pub"},
		{"no kernel", func(s *Spec) { s.KernelDir = "" }, "no kernel was given"},
		{"two kernels", func(s *Spec) { s.ModulesDir = filepath.Join(s.KernelDir, "modules") }, "give one"},
		{"not a kernel", func(s *Spec) { s.KernelDir = dir }, "fetch-kernel.sh"},
		{"kernel arch", func(s *Spec) { s.KernelDir = otherKernel }, "give the board's kernel"},
		{"module arch", func(s *Spec) { s.KernelDir = wrongModule }, "module virtio (kernel/drivers/virtio/virtio.ko) is for EM_"},
		{"board", func(s *Spec) { s.Board.Arch = "riscv64" }, "arch \"riscv64\""},
	} {
		s := in.spec(layout.Stage2)
		tc.change(&s)
		err := Build(new(bytes.Buffer), s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestTrustedKeys: the files' bytes in order, a newline added where one
// is missing, and the result parses as keel-init parses it.
func TestTrustedKeys(t *testing.T) {
	dir := t.TempDir()
	a := bootimagetest.PublicKey(t, dir, "a")
	b := bootimagetest.PublicKey(t, dir, "b")
	bData, _ := os.ReadFile(b)
	noNL := filepath.Join(dir, "b-nonl.pub")
	os.WriteFile(noNL, append([]byte("# rotation key\n"), bytes.TrimSuffix(bData, []byte("\n"))...), 0o644)
	got, err := TrustedKeys([]string{noNL, a})
	if err != nil {
		t.Fatal(err)
	}
	aData, _ := os.ReadFile(a)
	want := "# rotation key\n" + string(bData) + string(aData)
	if string(got) != want {
		t.Errorf("TrustedKeys = %q, want %q", got, want)
	}
	keys, err := manifest.ParsePublicKeys(got, layout.TrustedKeysPath)
	if err != nil || len(keys) != 2 || keys[0].Comment != "b" || keys[1].Comment != "a" {
		t.Errorf("keel-init would parse %v, %v", keys, err)
	}
}

// TestDefaultKeelInit: keel-init is found beside keel as make build lays
// it out, and the error names the flag and make build.
func TestDefaultKeelInit(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "keel")
	touch := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	touch(exe)
	if _, err := defaultKeelInit(exe, "amd64", "amd64"); err == nil || !strings.Contains(err.Error(), "--keel-init PATH") || !strings.Contains(err.Error(), "make build") {
		t.Errorf("nothing beside keel: %v", err)
	}
	touch(filepath.Join(dir, "keel-init"))
	if p, err := defaultKeelInit(exe, "amd64", "amd64"); err != nil || p != filepath.Join(dir, "keel-init") {
		t.Errorf("host's arch: %q, %v", p, err)
	}
	// The keel-init beside keel is the host's: never taken for another
	// architecture.
	if _, err := defaultKeelInit(exe, "amd64", "arm64"); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "arm64", "keel-init")) {
		t.Errorf("arm64 on an amd64 host: %v", err)
	}
	touch(filepath.Join(dir, "arm64", "keel-init"))
	if p, err := defaultKeelInit(exe, "amd64", "arm64"); err != nil || p != filepath.Join(dir, "arm64", "keel-init") {
		t.Errorf("arm64 on an amd64 host: %q, %v", p, err)
	}
	if os.Remove(filepath.Join(dir, "keel-init")) != nil {
		t.Fatal("remove")
	}
	touch(filepath.Join(dir, "amd64", "keel-init"))
	if p, err := defaultKeelInit(exe, "amd64", "amd64"); err != nil || p != filepath.Join(dir, "amd64", "keel-init") {
		t.Errorf("build/amd64/keel-init: %q, %v", p, err)
	}
}

// TestWriteBoot: the archives an image needs, one stage-2 initrd per
// distinct slot kernel, the same bytes as Build's.
func TestWriteBoot(t *testing.T) {
	in := newInputs(t)
	other := bootimagetest.Kernel(t, in.board)
	dir := t.TempDir()
	slots := map[string]Kernel{
		"a":        {Dir: in.kernelDir},
		"b":        {Dir: other},
		"recovery": {Dir: in.kernelDir},
	}
	files, err := WriteBoot(dir, Boot{Board: in.board, KeelInit: in.keelInit, TrustedKeys: in.keys, Kernel: Kernel{Dir: in.kernelDir}, Slots: slots})
	if err != nil {
		t.Fatal(err)
	}
	want := &BootFiles{
		Stage1: filepath.Join(dir, "keel-initrd.cpio.zst"),
		Stage2: map[string]string{
			"a":        filepath.Join(dir, "stage2-1.cpio.zst"),
			"b":        filepath.Join(dir, "stage2-2.cpio.zst"),
			"recovery": filepath.Join(dir, "stage2-1.cpio.zst"),
		},
	}
	if fmt.Sprint(files) != fmt.Sprint(want) {
		t.Errorf("WriteBoot = %v, want %v", files, want)
	}
	for path, s := range map[string]Spec{want.Stage1: in.spec(layout.Stage1), want.Stage2["a"]: in.spec(layout.Stage2)} {
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, build(t, s)) {
			t.Errorf("%s differs from Build's archive (%v)", path, err)
		}
	}
	// A failing slot names itself and leaves no file behind.
	slots["b"] = Kernel{Dir: t.TempDir()}
	dir2 := t.TempDir()
	if _, err := WriteBoot(dir2, Boot{Board: in.board, KeelInit: in.keelInit, TrustedKeys: in.keys, Kernel: Kernel{Dir: in.kernelDir}, Slots: slots}); err == nil || !strings.HasPrefix(err.Error(), "slot b: ") {
		t.Errorf("a slot without a kernel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "stage2-2.cpio.zst")); err == nil {
		t.Error("a failed build left its file")
	}
}

// TestRealKernel builds both stages of qemu-x86_64-uefi from the Debian
// kernel make kernel fetched: every board module resolves, with its
// dependencies, and is an x86-64 module.
func TestRealKernel(t *testing.T) {
	kdir := testkernel.Dir(t, "amd64")
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{bootimagetest.PublicKey(t, t.TempDir(), "release")}
	for _, stage := range []layout.Stage{layout.Stage1, layout.Stage2} {
		im, err := Plan(Spec{Board: b, Stage: stage, KeelInit: bootimagetest.KeelInit(t, "amd64"), KernelDir: kdir, TrustedKeys: keys})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range im.Modules {
			names = append(names, m.Name)
		}
		t.Logf("stage %s: kernel %s, %d modules: %s", stage, im.KernelVersion, len(names), strings.Join(names, " "))
		if len(names) < len(b.InitModules) {
			t.Errorf("stage %s: %d modules", stage, len(names))
		}
	}
}
