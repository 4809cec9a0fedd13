package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/manifest"
)

// These tests run the real tools (objcopy, objdump, mkfs.vfat, mtools,
// mkfs.erofs, fsck.erofs, mkfs.ext4, e2fsck, sgdisk) and fail, not skip,
// when one is missing: scripts/install-deps.sh installs them.

// tool returns the path of an external tool or fails the test.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p
}

// command runs a tool and returns its combined output; a non-zero exit
// fails the test.
func command(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randomFile(t testing.TB, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixture holds the inputs of a test disk: small random "kernels" and
// "initrds" and a small root tree per slot.
type fixture struct {
	dir                    string
	keelKernel, keelInitrd []byte
	kernel, initrd         map[string][]byte // by slot
	spec                   Spec
	// trusted holds the public key of the spec's signing key.
	trusted []manifest.PublicKey
}

// keyPair writes a new key pair to dir/name.key and dir/name.pub and
// returns the private key file and the public key.
func keyPair(t testing.TB, dir, name string) (string, manifest.PublicKey) {
	t.Helper()
	priv, pub, err := manifest.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := priv.MarshalText()
	pb, _ := pub.MarshalText()
	writeFile(t, filepath.Join(dir, name+".key"), kb)
	if err := os.Chmod(filepath.Join(dir, name+".key"), 0o600); err != nil { // keys are private (manifest.ReadSecretFile)
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name+".pub"), pb)
	return filepath.Join(dir, name+".key"), pub
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	fx := &fixture{dir: dir, kernel: map[string][]byte{}, initrd: map[string][]byte{}}
	fx.keelKernel = randomFile(t, filepath.Join(dir, "keel/vmlinuz"), 300<<10+123)
	fx.keelInitrd = randomFile(t, filepath.Join(dir, "keel/initrd.cpio.zst"), 100<<10+7)
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		t.Fatal(err)
	}
	fx.spec = Spec{
		Board:       b,
		Out:         filepath.Join(dir, "out", "disk.img"),
		KeelKernel:  filepath.Join(dir, "keel/vmlinuz"),
		KeelInitrd:  filepath.Join(dir, "keel/initrd.cpio.zst"),
		KeelCmdline: "console=ttyS0 keel.store=efivars\n",
		Seed:        "test",
		Slots:       map[string]Slot{},
		// TestBuildSecureBoot and TestBuildSecureBootKernels sign.
		NoSecureBoot: true,
	}
	key, pub := keyPair(t, filepath.Join(dir, "keys"), "release")
	fx.spec.SigningKeys = []string{key}
	fx.trusted = []manifest.PublicKey{pub}
	if err := os.MkdirAll(filepath.Dir(fx.spec.Out), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range b.Slots {
		sd := filepath.Join(dir, "slot-"+name)
		fx.kernel[name] = randomFile(t, filepath.Join(sd, "vmlinuz"), 200<<10+i)
		fx.initrd[name] = randomFile(t, filepath.Join(sd, "stage2.cpio"), 50<<10+i)
		root := filepath.Join(sd, "root")
		randomFile(t, filepath.Join(root, "sbin/init"), 64<<10)
		if err := os.Chmod(filepath.Join(root, "sbin/init"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "etc/os-release"), []byte("ID=keel-test\nVERSION_ID="+name+"\n"))
		writeFile(t, filepath.Join(root, "usr/bin/keel"), bytes.Repeat([]byte("keel"), 1000))
		if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
			t.Fatal(err)
		}
		fx.spec.Slots[name] = Slot{
			Kernel:          filepath.Join(sd, "vmlinuz"),
			Initrd:          filepath.Join(sd, "stage2.cpio"),
			RootDir:         root,
			Version:         "1." + name,
			SecurityVersion: uint64(i + 1),
			Cmdline:         "console=ttyS0 keel.slot=" + name,
		}
	}
	return fx
}

// build runs Build and opens the image and its GPT.
func (fx *fixture) build(t testing.TB) (*os.File, *gpt.Table) {
	t.Helper()
	var log bytes.Buffer
	fx.spec.Log = &log
	if err := Build(context.Background(), fx.spec); err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, log.String())
	}
	t.Logf("build log:\n%s", log.String())
	f, err := os.Open(fx.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatalf("reading back the GPT: %v", err)
	}
	return f, tab
}

func find(t testing.TB, tab *gpt.Table, name string) gpt.Partition {
	t.Helper()
	p, err := tab.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readPart returns a partition's bytes.
func readPart(t testing.TB, f io.ReaderAt, p gpt.Partition) []byte {
	t.Helper()
	b := make([]byte, p.Size())
	if _, err := p.Section(f).ReadAt(b, 0); err != nil {
		t.Fatalf("reading %s: %v", p.Name, err)
	}
	return b
}

// extract writes a partition to a file of its own.
func extract(t testing.TB, f io.ReaderAt, p gpt.Partition) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), p.Name+".img")
	writeFile(t, path, readPart(t, f, p))
	return path
}
