package image_test

// The `keel image build` command (internal/cli/image.go), tested here with
// the package it drives.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage/bootimagetest"
	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/internal/cli"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/testkit/testkernel"
	"github.com/keelboot/keel/update/source"
)

func put(t *testing.T, path string, size int) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func keel(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), args, &stdout, &stderr, cli.Deps{})
	return stdout.String(), stderr.String(), code
}

func TestCLIImageBuild(t *testing.T) {
	dir := t.TempDir()
	put(t, filepath.Join(dir, "in/vmlinuz"), 100<<10)
	put(t, filepath.Join(dir, "in/keel.cpio"), 20<<10)
	put(t, filepath.Join(dir, "in/stage2.cpio"), 20<<10)
	put(t, filepath.Join(dir, "in/root/sbin/init"), 10<<10)
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := keel(t, "keygen", "--out", filepath.Join(dir, "keys/release")); code != cli.ExitOK {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	spec := map[string]any{
		"signing_keys":   []string{"keys/release.key"}, // relative to the spec file
		"keel_kernel":    "in/vmlinuz",                 // relative to the spec file
		"keel_initrd":    "in/keel.cpio",
		"no_secure_boot": true,
		"keel_cmdline":   "console=ttyS0",
		"seed":           "cli",
		"slots": map[string]any{
			"a": map[string]any{"kernel": "in/vmlinuz", "initrd": "in/stage2.cpio", "root_dir": "in/root", "version": "1.0", "security_version": 1, "cmdline": "console=ttyS0"},
			"b": map[string]any{"empty": true},
		},
	}
	b, _ := json.MarshalIndent(spec, "", "  ")
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.img")
	stdout, stderr, code := keel(t, "image", "build", "--board", "qemu-x86_64-uefi", "--out", out, "--spec", specPath, "-v")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) || !strings.Contains(stderr, "image: slot b: empty") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Slot a's manifest verifies against the key's .pub, as keel-init
	// checks it.
	entry := slotEntries(t, f, "slot-a")
	trusted, err := manifest.ReadPublicKeys(filepath.Join(dir, "keys/release.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := manifest.Verify(entry(slotimg.EntryManifest), entry(manifest.SigEntry), trusted); err != nil || m.Version != "1.0" {
		t.Errorf("slot a: %+v, %v", m, err)
	}
}

func TestCLIImageErrors(t *testing.T) {
	dir := t.TempDir()
	specPath := filepath.Join(dir, "spec.json")
	os.WriteFile(specPath, []byte(`{
  "keel_kernel": "missing/vmlinuz",
  "keel_initrd": "missing/keel.cpio",
  "slots": {"a": {"kernel": "/nope/vmlinuz", "initrd": "/nope/stage2", "root_dir": "/nope/root", "version": "1"},
            "c": {"empty": true}}
}`), 0o644)
	out := filepath.Join(dir, "disk.img")
	_, stderr, code := keel(t, "image", "build", "--board", "qemu-x86_64-uefi", "--out", out, "--spec", specPath)
	if code != cli.ExitUsage {
		t.Errorf("exit %d, want %d", code, cli.ExitUsage)
	}
	for _, want := range []string{
		"keel_kernel: stat " + filepath.Join(dir, "missing/vmlinuz") + ": no such file", "fetch-kernel.sh",
		"keel_initrd: stat " + filepath.Join(dir, "missing/keel.cpio"),
		"slots.a.kernel: stat /nope/vmlinuz", "slots.a.initrd: stat /nope/stage2", "slots.a.root_dir: stat /nope/root",
		"slots.b: missing", "slots.c: board qemu-x86_64-uefi has no slot \"c\"",
		"signing_keys: no signing key given for slot a: production images are always signed",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed build wrote the image")
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image"}, "no subcommand"},
		{[]string{"image", "make"}, `unknown subcommand "make"`},
		{[]string{"image", "build", "--board", "qemu-x86_64-uefi"}, "--out, --spec required"},
		{[]string{"image", "build", "--board", "nope", "--out", out, "--spec", specPath}, `unknown board "nope"`},
		{[]string{"image", "build", "--board", "qemu-x86_64-uefi", "--out", out, "--spec", filepath.Join(dir, "none.json")}, "no such file"},
	} {
		_, stderr, code := keel(t, tc.args...)
		if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("keel %v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, cli.ExitUsage, tc.want)
		}
	}

	os.WriteFile(specPath, []byte(`{"keel_kernal": "x"}`), 0o644)
	if _, err := image.ReadSpec(specPath); err == nil || !strings.Contains(err.Error(), `unknown field "keel_kernal"`) {
		t.Errorf("ReadSpec with a typo: %v", err)
	}
}

// quickStartSpec is the spec.json of keel image build's usage text: the
// lines from "  {" to "  }".
func quickStartSpec(t *testing.T, usage string) []byte {
	t.Helper()
	start := strings.Index(usage, "\n  {\n")
	end := strings.Index(usage, "\n  }\n")
	if start < 0 || end < start {
		t.Fatalf("no spec.json in the usage text:\n%s", usage)
	}
	return []byte(usage[start+1 : end+4])
}

// readmeSpec is the spec.json of README's quick start: the first ```json
// block after "## Quick start".
func readmeSpec(t *testing.T) []byte {
	t.Helper()
	root, err := testkernel.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Quick start")
	if i < 0 {
		t.Fatal("README.md has no ## Quick start")
	}
	s = s[i:]
	i = strings.Index(s, "\n```json\n")
	if i < 0 {
		t.Fatal("README.md's quick start has no ```json block")
	}
	s = s[i+len("\n```json\n"):]
	return []byte(s[:strings.Index(s, "```")])
}

// TestQuickStart follows the quick start of keel image build's usage text
// (and README's, whose spec.json must be the same) with keel and keel-init
// built as make build lays them out: keel keygen, keel secureboot keygen,
// the spec.json shown (only the fields a device maker writes: a kernel
// folder, keys, the partition and disk sizes, the root folder make
// debian-root makes, no prebuilt archive), keel image build, and keel
// bundle build of the same slot (verified with the public key). A small
// root folder stands in for build/debian-root/root (make unit runs
// without it; TestQuickStartDebian in vmtests boots the real one). The
// disk and its partitions have the spec's sizes, and the bundle's root
// is the one in root-a.
// keel's initramfs in the UKI and slot a's initrd are the archives keel
// initramfs build makes from the same inputs, slot a's manifest verifies
// with the public key, and a second build gives the same partitions (all
// but the ESP and slot-a: the Secure Boot signatures of the UKI and of slot
// a's kernel hold their signing time). Once with a
// fake kernel folder (bootimagetest), once with the Debian kernel make
// kernel fetched.
func TestQuickStart(t *testing.T) {
	board := bootimagetest.HostBoard(t)
	bin := t.TempDir()
	for src, dst := range map[string]string{
		bootimagetest.GoBuild(t, "./cmd/keel", runtime.GOARCH): "keel",
		bootimagetest.KeelInit(t, board.Arch):                  "keel-init",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var help bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "keel"), "image", "build", "--help")
	cmd.Stdout = &help // help asked for is printed on standard output
	if err := cmd.Run(); err != nil {
		t.Fatalf("keel image build --help: %v", err)
	}
	spec := quickStartSpec(t, help.String())
	var fromUsage, fromReadme any
	if err := json.Unmarshal(spec, &fromUsage); err != nil {
		t.Fatalf("the usage text's spec.json: %v\n%s", err, spec)
	}
	if err := json.Unmarshal(readmeSpec(t), &fromReadme); err != nil {
		t.Fatalf("README's spec.json: %v", err)
	}
	if !reflect.DeepEqual(fromUsage, fromReadme) {
		t.Errorf("README's quick start spec.json differs from keel image build's usage text:\n%s", spec)
	}
	if board.Arch != "amd64" || board.Firmware != boards.FirmwareUEFI {
		// The quick start is for qemu-x86_64-uefi; on another host
		// the same steps for its board.
		spec = bytes.ReplaceAll(spec, []byte("/amd64"), []byte("/"+board.Arch))
		spec = bytes.ReplaceAll(spec, []byte(`"secure_boot_keys": "keys/secureboot",`), nil)
	}

	t.Run("fake kernel", func(t *testing.T) {
		k := bootimagetest.Kernel(t, board)
		// A PE image, so that it can be signed for Secure Boot.
		stub, err := os.ReadFile(image.DefaultStub)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(k, "vmlinuz"), stub, 0o644); err != nil {
			t.Fatal(err)
		}
		quickStart(t, bin, board, spec, k)
	})
	t.Run("Debian kernel", func(t *testing.T) {
		quickStart(t, bin, board, spec, testkernel.Dir(t, board.Arch))
	})
}

func quickStart(t *testing.T, bin string, board boards.Board, spec []byte, kernelDir string) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		name := args[0]
		if name == "keel" {
			name = filepath.Join(bin, "keel") // make build's build/keel
		}
		cmd := exec.Command(name, args[1:]...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kdir := filepath.Join(dir, "build/kernel", board.Arch)
	if err := os.MkdirAll(filepath.Dir(kdir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(kernelDir, kdir); err != nil {
		t.Fatal(err)
	}
	// make debian-root's root, small.
	put(t, filepath.Join(dir, "build/debian-root/root/sbin/init"), 10<<10)
	put(t, filepath.Join(dir, "build/debian-root/root/etc/os-release"), 100)

	run("mkdir", "-p", "keys")
	run("keel", "keygen", "--out", "keys/release")
	if board.Firmware == boards.FirmwareUEFI {
		run("keel", "secureboot", "keygen", "--dir", "keys/secureboot")
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run("keel", "image", "build", "--board", board.Name, "--spec", "spec.json", "--out", "disk.img", "--work", "work")
	t.Log(out)
	run("keel", "image", "build", "--board", board.Name, "--spec", "spec.json", "--out", "again.img")
	// The update bundle of the same slot, as README's quick start says.
	run("keel", "bundle", "build", "--board", board.Name, "--spec", "spec.json", "--slot", "a", "-o", "v1.bundle")
	run("keel", "bundle", "verify", "--keys", "keys/release.pub", "v1.bundle")

	// The archives are keel initramfs build's.
	for stage, got := range map[string]string{"1": "work/keel-initrd.cpio.zst", "2": "work/stage2-a.cpio.zst"} {
		run("keel", "initramfs", "build", "--board", board.Name, "--stage", stage, "--kernel-dir", kdir, "--keys", "keys/release.pub", "-o", "stage"+stage)
		want, _ := os.ReadFile(filepath.Join(dir, "stage"+stage))
		b, _ := os.ReadFile(filepath.Join(dir, got))
		if len(want) == 0 || !bytes.Equal(b, want) {
			t.Errorf("%s (%d bytes) is not keel initramfs build --stage %s's archive (%d bytes)", got, len(b), stage, len(want))
		}
	}
	disk, err := os.Open(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	again, err := os.Open(filepath.Join(dir, "again.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	entry := slotEntries(t, disk, "slot-a")
	stage2, _ := os.ReadFile(filepath.Join(dir, "stage2"))
	if !bytes.Equal(entry(slotimg.EntryInitrd), stage2) {
		t.Error("slot a's initrd is not keel initramfs build --stage 2's archive")
	}
	trusted, err := manifest.ReadPublicKeys(filepath.Join(dir, "keys/release.pub"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Verify(entry(slotimg.EntryManifest), entry(manifest.SigEntry), trusted)
	if err != nil || m.Version != "1.0" || m.Compatible != board.Name {
		t.Fatalf("slot a: %+v, %v", m, err)
	}

	// The disk and the partitions have the spec's sizes.
	var sizes struct {
		DiskMB      int            `json:"disk_mb"`
		PartitionMB map[string]int `json:"partition_mb"`
	}
	if err := json.Unmarshal(spec, &sizes); err != nil {
		t.Fatal(err)
	}
	if st, err := disk.Stat(); err != nil || sizes.DiskMB == 0 || st.Size() != int64(sizes.DiskMB)<<20 {
		t.Errorf("disk.img: %v, %v; want the spec's disk_mb %d MiB", st.Size(), err, sizes.DiskMB)
	}
	if len(sizes.PartitionMB) == 0 {
		t.Error("the quick start's spec.json sizes no partition (partition_mb)")
	}
	tab, err := gpt.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	for name, mb := range sizes.PartitionMB {
		if p, err := tab.Find(name); err != nil {
			t.Errorf("partition %s: %v; want the spec's %d MiB", name, err, mb)
		} else if p.Size() != int64(mb)<<20 {
			t.Errorf("partition %s: %d bytes; want the spec's %d MiB", name, p.Size(), mb)
		}
	}
	// The bundle's root is the one in root-a (its verity root hash; the
	// kernel's Secure Boot signature differs between builds).
	bf, err := os.Open(filepath.Join(dir, "v1.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	bst, _ := bf.Stat()
	bb, err := bundle.Open(context.Background(), source.NewReaderAt(bf, bst.Size(), "v1.bundle"), trusted, board.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := bb.Manifest.Root, m.Root; !reflect.DeepEqual(got, want) {
		t.Errorf("the bundle's root %+v is not root-a's %+v", got.Verity, want.Verity)
	}

	buf, againBuf := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, part := range tab.Partitions {
		if part.Name == "esp" || part.Name == "slot-a" {
			continue // signatures for Secure Boot hold their signing time: the UKI, slot a's kernel
		}
		for off := int64(0); off < part.Size(); off += int64(len(buf)) {
			n := min(int64(len(buf)), part.Size()-off)
			_, err1 := part.Section(disk).ReadAt(buf[:n], off)
			_, err2 := part.Section(again).ReadAt(againBuf[:n], off)
			if err1 != nil || err2 != nil || !bytes.Equal(buf[:n], againBuf[:n]) {
				t.Errorf("partition %s: another build of the same spec gave other bytes (at %d: %v, %v)", part.Name, off, err1, err2)
				break
			}
		}
	}
}

// slotEntries opens the slot container in partition part of the disk
// image f and returns a reader of its entries (slotimg.Entry*).
func slotEntries(t *testing.T, f *os.File, part string) func(name string) []byte {
	t.Helper()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tab.Find(part)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Section(f)
	h, err := slotimg.ReadHeader(r, p.Size())
	if err != nil {
		t.Fatal(err)
	}
	return func(name string) []byte {
		t.Helper()
		sr, err := h.Section(r, name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(sr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}
