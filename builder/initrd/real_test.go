package initrd

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/format/cpio"
	"github.com/keelboot/keel/testkit/testkernel"
	"github.com/keelboot/keel/vmtests/vmrun"
)

// boardModules is the module list docs/DESIGN.md section 7 names for keel's QEMU boards,
// with the ones loaded up front first.
var boardModules = []string{"crc32c", "nls_cp437", "nls_ascii", "virtio_pci", "virtio_blk", "ext4", "vfat", "efivarfs", "dm-verity", "squashfs", "erofs"}

// realKernel returns the Debian kernel make kernel fetched (package
// testkit/testkernel).
func realKernel(t *testing.T) *Kernel {
	t.Helper()
	dir := testkernel.Dir(t, "amd64")
	k, err := OpenKernel(dir)
	if err != nil {
		t.Fatalf("KEEL_KERNEL_DIR: %v", err)
	}
	return k
}

// TestRealKernelSizes builds the board's initramfs with a 2 MiB dummy
// init from Debian's modules and reports the sizes.
func TestRealKernelSizes(t *testing.T) {
	k := realKernel(t)
	spec := Spec{Init: dummyInit(t, 2<<20), ModulesDir: k.ModulesDir, Modules: boardModules}
	im, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := im.Archive.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var modBytes int
	for _, m := range im.Modules {
		modBytes += len(im.Archive.Get(ModulesRoot + "/" + im.KernelVersion + "/" + m.Path).Data)
	}
	vmlinuz, err := os.Stat(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s: vmlinuz %d bytes; %d modules, %d bytes; cpio %d bytes", im.KernelVersion, vmlinuz.Size(), len(im.Modules), modBytes, len(raw))
	for _, c := range []Compression{Zstd, Gzip} {
		var out bytes.Buffer
		if err := Compress(&out, raw, c); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", c, out.Len())
		r, _, err := Decompress(&out)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := cpio.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(im.Archive.Names()) {
			t.Errorf("%s: read %d records back, wrote %d", c, len(recs), len(im.Archive.Names()))
		}
	}
}

// TestQEMUBoot boots Debian's kernel in QEMU (TCG) on an initramfs Build
// made, zstd-compressed, whose init (testdata/bootcheck) loads every
// module in modules.order with finit_module: proof that the kernel unpacks
// the archive and that the order satisfies every dependency. amd64 (q35)
// or arm64 (virt, cortex-a57), as the kernel is; ~10-30 s.
func TestQEMUBoot(t *testing.T) {
	k := realKernel(t)
	if testing.Short() {
		t.Skip("boots a VM: not with -short")
	}
	dir := t.TempDir()
	init := filepath.Join(dir, "bootcheck")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", init, "./testdata/bootcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+k.Arch)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build bootcheck: %v\n%s", err, b)
	}
	img := filepath.Join(dir, "initramfs.zst")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Init: init, ModulesDir: k.ModulesDir, Modules: boardModules, Compression: Zstd}
	im, err := Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	start := time.Now()
	text, err := vmrun.Machine{Arch: k.Arch, Kernel: k.Vmlinuz, Initrd: img, Timeout: 3 * time.Minute}.Run(context.Background())
	t.Logf("qemu ran %.1f s", time.Since(start).Seconds())
	out := []byte(text)
	if err != nil || !bytes.Contains(out, []byte("BOOTCHECK-OK ")) {
		t.Fatalf("no BOOTCHECK-OK on the console (%v):\n%s", err, out)
	}
	// Every module loaded, in order, except those for hardware this VM
	// lacks: crc32c_intel needs SSE4.2 (not in TCG's default CPU) and
	// efivarfs needs EFI (this boots without UEFI firmware). Both load on
	// the real board.
	mayLack := map[string]bool{"crc32c_intel": true, "efivarfs": true}
	var got []string
	for _, line := range strings.Split(string(out), "\n") {
		// SeaBIOS' escape codes may precede the first line.
		if i := strings.Index(line, "BOOTCHECK-"); i >= 0 {
			line = strings.TrimSpace(line[i:])
		}
		if name, ok := strings.CutPrefix(line, "BOOTCHECK-LOADED "); ok {
			got = append(got, name)
		} else if name, ok := strings.CutPrefix(line, "BOOTCHECK-NODEV "); ok {
			got = append(got, name)
			if !mayLack[name] {
				t.Errorf("module %s: ENODEV", name)
			}
		}
	}
	var want []string
	for _, m := range im.Modules {
		want = append(want, m.Name)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("loaded %q, want %q", got, want)
	}
	for _, bad := range []string{"BOOTCHECK-FAIL", "Initramfs unpacking failed", "Kernel panic"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("console shows %q:\n%s", bad, out)
		}
	}
}
