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
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/cli"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
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
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	// Slot a's manifest verifies against the key's .pub, as keel-init
	// checks it.
	p, err := tab.Find("slot-a")
	if err != nil {
		t.Fatal(err)
	}
	r := p.Section(f)
	h, err := slotimg.ReadHeader(r, p.Size())
	if err != nil {
		t.Fatal(err)
	}
	entry := func(name string) []byte {
		sr, err := h.Section(r, name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(sr)
		return b
	}
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
