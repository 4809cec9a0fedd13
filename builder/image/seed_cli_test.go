package image_test

// The `keel seed verify` command (internal/cli/recover_seed.go), tested
// here with the image builder that writes the seed.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/internal/cli"
)

func TestCLISeedVerify(t *testing.T) {
	dir := t.TempDir()
	put(t, filepath.Join(dir, "in/vmlinuz"), 100<<10)
	put(t, filepath.Join(dir, "in/keel.cpio"), 20<<10)
	put(t, filepath.Join(dir, "in/stage2.cpio"), 20<<10)
	put(t, filepath.Join(dir, "in/root/sbin/init"), 10<<10)
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"release", "other"} {
		if _, stderr, code := keel(t, "keygen", "--out", filepath.Join(dir, "keys", k)); code != cli.ExitOK {
			t.Fatalf("keygen: exit %d: %s", code, stderr)
		}
	}
	slot := map[string]any{"kernel": "in/vmlinuz", "initrd": "in/stage2.cpio", "root_dir": "in/root", "version": "1.0", "cmdline": "console=ttyS0"}
	spec := map[string]any{
		"signing_keys":   []string{"keys/release.key"},
		"keel_kernel":    "in/vmlinuz",
		"keel_initrd":    "in/keel.cpio",
		"no_secure_boot": true,
		"seed":           "cli-seed",
		"slots":          map[string]any{"a": slot, "b": map[string]any{"empty": true}},
		"recovery":       slot,
	}
	b, _ := json.MarshalIndent(spec, "", "  ")
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.img")
	if stdout, stderr, code := keel(t, "image", "build", "--board", "qemu-x86_64-uefi", "--out", out, "--spec", specPath); code != cli.ExitOK {
		t.Fatalf("image build: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	pub := filepath.Join(dir, "keys/release.pub")
	stdout, stderr, code := keel(t, "seed", "verify", "--keys", pub, "--board", "qemu-x86_64-uefi", out)
	if code != cli.ExitOK || !strings.Contains(stdout, "partition recovery: good seed for board qemu-x86_64-uefi: version \"1.0\"") || !strings.Contains(stdout, "data file system") {
		t.Fatalf("seed verify: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	t.Log(stdout)
	// Another board's keel-init would refuse it; without --board the
	// output says the board was not checked.
	if _, stderr, code := keel(t, "seed", "verify", "--keys", pub, "--board", "qemu-arm64-uboot", out); code == cli.ExitOK ||
		!strings.Contains(stderr, "manifest is for board qemu-x86_64-uefi, this is qemu-arm64-uboot") {
		t.Errorf("seed verify for another board: exit %d, stderr %s", code, stderr)
	}
	if stdout, stderr, code := keel(t, "seed", "verify", "--keys", pub, out); code != cli.ExitOK || !strings.Contains(stdout, "good seed for board qemu-x86_64-uefi (not checked: no --board)") {
		t.Errorf("seed verify without --board: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	// The recovery partition on its own, then tampered.
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tab.Find("recovery")
	part := make([]byte, p.Size())
	if _, err := p.Section(f).ReadAt(part, 0); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "recovery.img")
	os.WriteFile(rec, part, 0o644)
	if stdout, stderr, code := keel(t, "seed", "verify", "--keys", pub, rec); code != cli.ExitOK || !strings.Contains(stdout, "recovery.img: good seed") {
		t.Fatalf("seed verify of the partition: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, stderr, code := keel(t, "seed", "verify", "--keys", filepath.Join(dir, "keys/other.pub"), rec); code == cli.ExitOK || !strings.Contains(stderr, "not among the trusted keys") {
		t.Errorf("seed verify with another key: exit %d, stderr %s", code, stderr)
	}
	part[4096+50] ^= 1 // in the kernel
	os.WriteFile(rec, part, 0o644)
	if _, stderr, code := keel(t, "seed", "verify", "--keys", pub, rec); code == cli.ExitOK || !strings.Contains(stderr, "seed kernel digest mismatch") {
		t.Errorf("seed verify of a tampered seed: exit %d, stderr %s", code, stderr)
	}
	if _, _, code := keel(t, "seed", "verify", rec); code == cli.ExitOK {
		t.Error("seed verify without --keys succeeded")
	}
}
