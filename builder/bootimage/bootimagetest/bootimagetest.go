package bootimagetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/kmod/kmodtest"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/testkit/testkernel"
)

// KeelInit builds cmd/keel-init for Linux on arch as make build does
// (CGO_ENABLED=0, -trimpath, -ldflags=-s -w) into a new temporary folder
// and returns its path. The go command's build cache makes a second build
// quick.
func KeelInit(t testing.TB, arch string) string {
	t.Helper()
	return GoBuild(t, "./cmd/keel-init", arch)
}

// GoBuild builds the package pkg of this module (./cmd/keel, say) for
// Linux on arch, static, into a new temporary folder and returns the
// binary's path.
func GoBuild(t testing.TB, pkg, arch string) string {
	t.Helper()
	root, err := testkernel.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s for %s: %v\n%s", pkg, arch, err, b)
	}
	return out
}

// HostBoard returns the board whose architecture is the host's: the fake
// modules Kernel compiles with the host's gcc are for the host's machine.
func HostBoard(t testing.TB) boards.Board {
	t.Helper()
	for _, b := range boards.All() {
		if b.Arch == runtime.GOARCH {
			return b
		}
	}
	t.Fatalf("no board for the host's architecture %s", runtime.GOARCH)
	return boards.Board{}
}

// KernelVersion is the version of the fake kernels Kernel lays out, for
// arch.
func KernelVersion(arch string) string { return "6.1.0-99-" + arch }

// Kernel lays out a fake kernel for b in a new temporary folder, as
// scripts/fetch-kernel.sh does (version, package, vmlinuz, modules ->
// root/lib/modules/<version>), with a module for each of b's InitModules
// and StageModules (the virtio ones depending on a module virtio, dm-verity
// on dm-mod), and one nobody wants. It returns the folder; the modules
// are for the host's machine (gcc).
func Kernel(t testing.TB, b boards.Board) string {
	t.Helper()
	dir := t.TempDir()
	ver := KernelVersion(b.Arch)
	mods := map[string]kmodtest.Module{
		"virtio": kmodtest.M("kernel/drivers/virtio/virtio.ko", "name=virtio", "depends="),
		"dm_mod": kmodtest.M("kernel/drivers/md/dm-mod.ko", "name=dm_mod", "depends="),
		"unused": kmodtest.M("kernel/fs/unused/unused.ko", "name=unused", "depends="),
	}
	for _, name := range append(append([]string(nil), b.InitModules...), b.StageModules...) {
		n := strings.ReplaceAll(name, "-", "_")
		deps := "depends="
		switch {
		case strings.HasPrefix(n, "virtio_"):
			deps += "virtio"
		case n == "dm_verity":
			deps += "dm_mod"
		}
		mods[n] = kmodtest.M("kernel/drivers/keeltest/"+name+".ko", "name="+n, deps)
	}
	var list []kmodtest.Module
	for _, m := range mods {
		list = append(list, m)
	}
	kmodtest.Build(t, filepath.Join(dir, "root/lib/modules", ver), list...)
	if err := os.Symlink(filepath.Join("root/lib/modules", ver), filepath.Join(dir, "modules")); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"version": ver + "\n",
		"package": "linux-image-" + ver + "=6.1.999-1\n",
		"vmlinuz": "MZ fake kernel\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// PublicKey makes a manifest key pair in dir as keel keygen does
// (NAME.key, mode 0600, and NAME.pub) and returns the .pub file.
func PublicKey(t testing.TB, dir, name string) string {
	t.Helper()
	priv, pub, err := manifest.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := priv.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	ut, err := pub.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pt, 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(p, ut, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
