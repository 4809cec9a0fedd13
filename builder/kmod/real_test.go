package kmod

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/testkit/testkernel"
)

// BoardModules is the module list of keel's QEMU boards (docs/DESIGN.md
// section 7): what the tests against a real kernel resolve.
var boardModules = []string{"crc32c", "nls_cp437", "nls_ascii", "virtio_pci", "virtio_blk", "ext4", "vfat", "efivarfs", "dm-verity", "squashfs", "erofs"}

// realKernel returns the modules folder of the Debian kernel make kernel
// fetched (package testkit/testkernel).
func realKernel(t *testing.T) string {
	t.Helper()
	dir := testkernel.Dir(t, "amd64")
	mods, err := filepath.EvalSymlinks(filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatalf("KEEL_KERNEL_DIR=%s: %v (run scripts/fetch-kernel.sh amd64 %s)", dir, err, dir)
	}
	return mods
}

func TestRealKernel(t *testing.T) {
	dir := realKernel(t)
	tree, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := tree.Resolve(boardModules, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.CheckOrder(order); err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, m := range order {
		fi, err := os.Stat(filepath.Join(dir, m.Path))
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	t.Logf("%d modules in %s; closure of %d wanted: %d modules, %d bytes: %s", len(tree.Modules), dir, len(boardModules), len(order), size, strings.Join(names(order), " "))

	// Cross-check every module's .modinfo closure against depmod's
	// modules.dep (Debian's .deb has none; depmod writes one elsewhere).
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		t.Fatal("depmod not installed: scripts/install-deps.sh installs kmod")
	}
	// depmod -b BASE reads and writes BASE/lib/modules/VERSION (bookworm's
	// has no -o): a folder of links to the real one's contents, so the
	// fetched tree is left alone.
	base := t.TempDir()
	ver := filepath.Base(dir)
	work := filepath.Join(base, "lib/modules", ver)
	os.MkdirAll(work, 0o755)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := exec.Command(depmod, "-b", base, ver).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v\n%s", err, b)
	}
	f, err := os.Open(filepath.Join(work, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tree.CheckModulesDep(f); err != nil {
		t.Fatal(err)
	}
}
