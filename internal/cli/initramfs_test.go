package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/builder/bootimage/bootimagetest"
	"github.com/keelboot/keel/builder/initrd"
	"github.com/keelboot/keel/format/cpio"
	"github.com/keelboot/keel/format/layout"
)

// TestInitramfsBuild runs keel initramfs build for both stages, reads the
// archive back with builder/initrd's reader and compares it with the
// library's bytes.
func TestInitramfsBuild(t *testing.T) {
	b := bootimagetest.HostBoard(t)
	kdir := bootimagetest.Kernel(t, b)
	keelInit := bootimagetest.KeelInit(t, b.Arch)
	dir := t.TempDir()
	keys := []string{bootimagetest.PublicKey(t, dir, "release"), bootimagetest.PublicKey(t, dir, "next")}
	for _, stage := range []layout.Stage{layout.Stage1, layout.Stage2} {
		out := filepath.Join(dir, "stage"+stage.String()+".cpio.zst")
		r := keel(t, "initramfs", "build", "--board", b.Name, "--stage", stage.String(), "--kernel-dir", kdir,
			"--keys", keys[0], "--keys", keys[1], "--keel-init", keelInit, "-o", out).ok(t)
		if want := "wrote " + out + ": stage " + stage.String() + " for board " + b.Name + ", "; !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "modules of "+bootimagetest.KernelVersion(b.Arch)) {
			t.Errorf("stdout %q", r.stdout)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := bootimage.Build(&want, bootimage.Spec{Board: b, Stage: stage, KeelInit: keelInit, KernelDir: kdir, TrustedKeys: keys}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("stage %s: the command wrote %d bytes, bootimage.Build %d", stage, len(got), want.Len())
		}

		rd, _, err := initrd.Decompress(bytes.NewReader(got))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := cpio.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		for _, r := range recs {
			files["/"+r.Name] = r.Data
		}
		initBytes, _ := os.ReadFile(keelInit)
		for _, k := range keys {
			data, _ := os.ReadFile(k)
			if !bytes.Contains(files[layout.TrustedKeysPath], data) {
				t.Errorf("stage %s: %s lacks %s", stage, layout.TrustedKeysPath, k)
			}
		}
		if !bytes.Equal(files["/init"], initBytes) || string(files[layout.StagePath]) != stage.String()+"\n" || len(files[layout.BoardPath]) == 0 || len(files[layout.ModulesPath]) == 0 {
			t.Errorf("stage %s: init %d bytes, stage %q, board %d bytes, modules.order %q", stage, len(files["/init"]), files[layout.StagePath], len(files[layout.BoardPath]), files[layout.ModulesPath])
		}

		// The modules folder instead of the kernel folder, --out instead
		// of -o: the same bytes.
		out2 := filepath.Join(dir, "again.cpio.zst")
		keel(t, "initramfs", "build", "--board", b.Name, "--stage", stage.String(), "--modules", filepath.Join(kdir, "modules"),
			"--keys", keys[0], "--keys", keys[1], "--keel-init", keelInit, "--out", out2).ok(t)
		if again, err := os.ReadFile(out2); err != nil || !bytes.Equal(again, got) {
			t.Errorf("stage %s: --modules gave other bytes (%v)", stage, err)
		}
	}
}

func TestInitramfsBuildErrors(t *testing.T) {
	b := bootimagetest.HostBoard(t)
	kdir := bootimagetest.Kernel(t, b)
	keelInit := bootimagetest.KeelInit(t, b.Arch)
	dir := t.TempDir()
	key := bootimagetest.PublicKey(t, dir, "release")
	out := filepath.Join(dir, "out.cpio.zst")
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	full := func(extra ...string) []string {
		return append([]string{"initramfs", "build", "--board", b.Name, "--stage", "1", "--kernel-dir", kdir, "--keys", key, "-o", out}, extra...)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"initramfs"}, ExitUsage, "no subcommand"},
		{[]string{"initramfs", "list"}, ExitUsage, `unknown subcommand "list"`},
		{[]string{"initramfs", "build"}, ExitUsage, "--board, --stage, --kernel-dir or --modules, --keys, -o required"},
		{full("--stage", "3", "--keel-init", keelInit), ExitUsage, `--stage "3": want 1`},
		{full("--board", "nope", "--keel-init", keelInit), ExitUsage, `unknown board "nope"`},
		{full("--modules", kdir, "--keel-init", keelInit), ExitUsage, "not both"},
		{full("extra"), ExitUsage, "takes no arguments"},
		// No keel-init beside the test binary.
		{full(), ExitStorage, "give --keel-init PATH"},
		{full("--keel-init", bootimagetest.KeelInit(t, other)), ExitStorage, "make build puts keel-init for " + b.Arch},
		{full("--keel-init", keelInit, "--keys", filepath.Join(dir, "release.key")), ExitStorage, "this is a private key"},
	} {
		keel(t, tc.args...).fails(t, tc.code, tc.want)
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%q left %s behind", tc.args, out)
		}
	}
	if r := keel(t, "initramfs", "help"); r.code != ExitOK || !strings.Contains(r.stdout, "--stage 2   the slots' initrd") || r.stderr != "" {
		t.Errorf("initramfs help: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
