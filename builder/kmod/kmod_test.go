package kmod

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/kmod/kmodtest"
)

var mod = kmodtest.M

func buildTree(t testing.TB, mods ...kmodtest.Module) string { return kmodtest.Tree(t, mods...) }

func names(mods []*Module) []string {
	var s []string
	for _, m := range mods {
		s = append(s, m.Name)
	}
	return s
}

func TestReadFile(t *testing.T) {
	dir := buildTree(t,
		mod("kernel/drivers/md/dm-verity.ko", "license=GPL", "depends=reed_solomon,dm-mod,dm-bufio", "intree=Y", "name=dm_verity", "vermagic=6.1.0 SMP mod_unload"),
		mod("kernel/fs/ext4/ext4.ko", "softdep=pre: crypto-crc32c", "alias=fs-ext4", "alias=ext3", "depends=jbd2,mbcache,crc16", "name=ext4"),
		mod("kernel/old/old-style.ko", "depends=", "license=GPL"),
	)
	m, err := ReadFile(filepath.Join(dir, "kernel/drivers/md/dm-verity.ko"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "dm_verity" || !reflect.DeepEqual(m.Depends, []string{"reed_solomon", "dm_mod", "dm_bufio"}) {
		t.Errorf("dm-verity: got name %q depends %q", m.Name, m.Depends)
	}
	m, err = ReadFile(filepath.Join(dir, "kernel/fs/ext4/ext4.ko"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Module{Name: "ext4", Path: filepath.Join(dir, "kernel/fs/ext4/ext4.ko"), Depends: []string{"jbd2", "mbcache", "crc16"},
		SoftPre: []string{"crypto-crc32c"}, Aliases: []string{"fs-ext4", "ext3"}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("ext4: got %+v, want %+v", m, want)
	}
	// No name=: the file name, normalized.
	m, err = ReadFile(filepath.Join(dir, "kernel/old/old-style.ko"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "old_style" || len(m.Depends) != 0 {
		t.Errorf("old-style: got name %q depends %q", m.Name, m.Depends)
	}
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "text.ko")
	os.WriteFile(notELF, []byte("not an ELF file at all"), 0o644)
	compressed := filepath.Join(dir, "x.ko.xz")
	os.WriteFile(compressed, []byte{0xfd, '7', 'z', 'X', 'Z', 0}, 0o644)
	for _, tc := range []struct {
		path, want string
	}{
		{notELF, notELF},
		{compressed, "compressed module (.ko.xz) not supported"},
		{filepath.Join(dir, "absent.ko"), "absent.ko"},
	} {
		_, err := ReadFile(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadFile(%s) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}

	// An ELF object without .modinfo.
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not installed (scripts/install-deps.sh installs it)")
	}
	c := filepath.Join(dir, "plain.c")
	os.WriteFile(c, []byte("int x;\n"), 0o644)
	plain := filepath.Join(dir, "plain.ko")
	if b, err := exec.Command(gcc, "-c", "-o", plain, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	_, err = ReadFile(plain)
	if !errors.Is(err, ErrNoModinfo) || !strings.Contains(err.Error(), plain) {
		t.Errorf("ReadFile(no .modinfo) = %v, want ErrNoModinfo naming the file", err)
	}
}

func TestParseModinfo(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    *Module
		wantErr string
	}{
		{in: "", want: &Module{}},
		{in: "\x00\x00name=a-b\x00\x00\x00depends=x-y, z\x00", want: &Module{Name: "a_b", Depends: []string{"x_y", "z"}}},
		{in: "depends=a,a,b\x00", want: &Module{Depends: []string{"a", "b"}}},
		{in: "softdep=post: p1 pre: a b\x00alias=pci:v*d*\x00", want: &Module{SoftPre: []string{"a", "b"}, SoftPost: []string{"p1"}, Aliases: []string{"pci:v*d*"}}},
		{in: "description=has = signs\x00parm=x:int\x00", want: &Module{}},
		{in: "name=a\x00name=b\x00", wantErr: "two name= fields"},
		{in: "noequals\x00", wantErr: "has no '='"},
		{in: "name=\x00", wantErr: "empty module name"},
		{in: "name=a/b\x00", wantErr: "contains '/'"},
		{in: "depends=a b\x00", wantErr: "contains ' '"},
		{in: "softdep=gcm\x00softdep=pre: a\x00", want: &Module{SoftPre: []string{"a"}}}, // cifs.ko: bare names ignored
	} {
		got, err := ParseModinfo([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseModinfo(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseModinfo(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseModinfo(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// fakeKernel is a small tree shaped like Debian's, with the names keel's
// boards use: '-' versus '_' mismatches, aliases, built-ins.
func fakeKernel(t testing.TB) string {
	dir := buildTree(t,
		mod("kernel/drivers/virtio/virtio_pci.ko", "name=virtio_pci", "depends=virtio_pci_modern_dev,virtio_pci_legacy_dev"),
		mod("kernel/drivers/virtio/virtio_pci_modern_dev.ko", "name=virtio_pci_modern_dev", "depends="),
		mod("kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "name=virtio_pci_legacy_dev", "depends="),
		mod("kernel/drivers/block/virtio_blk.ko", "name=virtio_blk", "depends="),
		mod("kernel/fs/ext4/ext4.ko", "name=ext4", "depends=jbd2,mbcache,crc16", "softdep=pre: crypto-crc32c"),
		mod("kernel/fs/jbd2/jbd2.ko", "name=jbd2", "depends="),
		mod("kernel/fs/mbcache.ko", "name=mbcache", "depends="),
		mod("kernel/lib/crc16.ko", "name=crc16", "depends="),
		mod("kernel/crypto/crc32c_generic.ko", "name=crc32c_generic", "depends=", "alias=crypto-crc32c", "alias=crc32c"),
		mod("kernel/arch/x86/crypto/crc32c-intel.ko", "name=crc32c_intel", "depends=", "alias=crypto-crc32c", "alias=crc32c"),
		mod("kernel/drivers/md/dm-verity.ko", "name=dm_verity", "depends=reed_solomon,dm-mod,dm-bufio"),
		mod("kernel/drivers/md/dm-mod.ko", "name=dm_mod", "depends="),
		mod("kernel/drivers/md/dm-bufio.ko", "name=dm_bufio", "depends=dm_mod"),
		mod("kernel/lib/reed_solomon/reed_solomon.ko", "name=reed_solomon", "depends="),
		mod("kernel/fs/nls/nls_cp437.ko", "name=nls_cp437", "depends="),
		mod("kernel/fs/fat/vfat.ko", "name=vfat", "depends=fat"),
		mod("kernel/fs/fat/fat.ko", "name=fat", "depends="),
		mod("kernel/fs/unrelated.ko", "name=unrelated", "depends=jbd2"),
	)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/nls/nls_base.ko\nkernel/lib/crc32.ko\nkernel/fs/nls/nls_ascii.ko\n"), 0o644)
	return dir
}

func TestResolve(t *testing.T) {
	// Through a symlink, as fetch-kernel.sh's OUTDIR/modules is.
	link := filepath.Join(t.TempDir(), "modules")
	if err := os.Symlink(fakeKernel(t), link); err != nil {
		t.Fatal(err)
	}
	tree, err := Scan(link)
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Modules) != 18 || !tree.Builtin["nls_ascii"] {
		t.Fatalf("Scan: %d modules, builtin %v", len(tree.Modules), tree.Builtin)
	}
	if m := tree.Modules["crc32c_intel"]; m == nil || m.Path != "kernel/arch/x86/crypto/crc32c-intel.ko" {
		t.Fatalf("crc32c_intel: %+v", m)
	}
	wanted := []string{"crc32c", "nls_cp437", "nls-ascii", "virtio_pci", "virtio_blk", "ext4", "vfat", "dm-verity"}
	order, err := tree.Resolve(wanted, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"crc32c_generic", "crc32c_intel", // alias crc32c: both, by name
		"nls_cp437", // nls_ascii is built in
		"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
		"virtio_blk",
		"jbd2", "mbcache", "crc16", "ext4",
		"fat", "vfat",
		"reed_solomon", "dm_mod", "dm_bufio", "dm_verity",
	}
	if got := names(order); !reflect.DeepEqual(got, want) {
		t.Errorf("Resolve order:\n got %q\nwant %q", got, want)
	}
	if err := tree.CheckOrder(order); err != nil {
		t.Error(err)
	}
	// Deterministic: same answer every time (map iteration must not leak).
	for i := 0; i < 20; i++ {
		again, _ := tree.Resolve(wanted, Options{})
		if !reflect.DeepEqual(names(again), want) {
			t.Fatalf("Resolve run %d differs: %q", i, names(again))
		}
	}
	// Softdeps: ext4's pre: crypto-crc32c comes in before ext4.
	order, err = tree.Resolve([]string{"ext4"}, Options{Softdeps: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(order), []string{"jbd2", "mbcache", "crc16", "crc32c_generic", "crc32c_intel", "ext4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Resolve with softdeps: got %q, want %q", got, want)
	}
	order, _ = tree.Resolve([]string{"ext4"}, Options{})
	if got, want := names(order), []string{"jbd2", "mbcache", "crc16", "ext4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Resolve without softdeps: got %q, want %q", got, want)
	}
	// CheckOrder catches a bad order.
	bad := []*Module{tree.Modules["vfat"], tree.Modules["fat"]}
	if err := tree.CheckOrder(bad); err == nil || !strings.Contains(err.Error(), "before its dependency fat") {
		t.Errorf("CheckOrder(vfat, fat) = %v", err)
	}
	if err := tree.CheckOrder(bad[:1]); err == nil || !strings.Contains(err.Error(), "not in the load order") {
		t.Errorf("CheckOrder(vfat) = %v", err)
	}
}

func TestResolveMissing(t *testing.T) {
	tree, err := Scan(buildTree(t,
		mod("kernel/a.ko", "name=a", "depends=b"),
		mod("kernel/b.ko", "name=b", "depends=c-missing"),
	))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tree.Resolve([]string{"a"}, Options{})
	var me *MissingError
	if !errors.As(err, &me) || me.Name != "c_missing" || !reflect.DeepEqual(me.Chain, []string{"a", "b"}) {
		t.Fatalf("Resolve(a) = %v, want c_missing needed by a -> b", err)
	}
	if !strings.Contains(err.Error(), "module c_missing (needed by a -> b) not found under "+tree.Dir) {
		t.Errorf("message: %v", err)
	}
	_, err = tree.Resolve([]string{"nosuch"}, Options{})
	if !errors.As(err, &me) || me.Name != "nosuch" || !strings.Contains(err.Error(), "(wanted)") {
		t.Errorf("Resolve(nosuch) = %v", err)
	}
}

func TestResolveCycle(t *testing.T) {
	tree, err := Scan(buildTree(t,
		mod("kernel/top.ko", "name=top", "depends=a"),
		mod("kernel/a.ko", "name=a", "depends=b"),
		mod("kernel/b.ko", "name=b", "depends=c"),
		mod("kernel/c.ko", "name=c", "depends=a"),
		mod("kernel/self.ko", "name=self", "depends=self"),
	))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tree.Resolve([]string{"top"}, Options{})
	var ce *CycleError
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Cycle, []string{"a", "b", "c", "a"}) {
		t.Fatalf("Resolve(top) = %v, want cycle a -> b -> c -> a", err)
	}
	_, err = tree.Resolve([]string{"self"}, Options{})
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Cycle, []string{"self", "self"}) {
		t.Fatalf("Resolve(self) = %v, want cycle self -> self", err)
	}
}

func TestScanErrors(t *testing.T) {
	dir := buildTree(t,
		mod("kernel/one/dup.ko", "name=dup"),
		mod("kernel/two/dup.ko", "name=dup"),
	)
	if _, err := Scan(dir); err == nil || !strings.Contains(err.Error(), "two modules named dup") || !strings.Contains(err.Error(), "kernel/two/dup.ko") {
		t.Errorf("Scan(duplicates) = %v", err)
	}
	if _, err := Scan(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .ko files") {
		t.Errorf("Scan(empty) = %v", err)
	}
	if _, err := Scan(filepath.Join(t.TempDir(), "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("Scan(absent) = %v", err)
	}
}

func TestCheckModulesDep(t *testing.T) {
	tree, err := Scan(buildTree(t,
		mod("kernel/a.ko", "name=a", "depends=b"),
		mod("kernel/b.ko", "name=b", "depends=c"),
		mod("kernel/c.ko", "name=c", "depends="),
	))
	if err != nil {
		t.Fatal(err)
	}
	good := "kernel/a.ko: kernel/c.ko kernel/b.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko:\n"
	if err := tree.CheckModulesDep(strings.NewReader(good)); err != nil {
		t.Error(err)
	}
	bad := "kernel/a.ko: kernel/b.ko\nkernel/c.ko:\nkernel/z.ko:\n"
	err = tree.CheckModulesDep(strings.NewReader(bad))
	for _, want := range []string{"kernel/a.ko: modules.dep says [kernel/b.ko]", "kernel/z.ko is in modules.dep but not", "kernel/b.ko is in the tree but not"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckModulesDep(bad) = %v, want %q", err, want)
		}
	}
}

func FuzzParseModinfo(f *testing.F) {
	for _, s := range []string{
		"name=ext4\x00depends=jbd2,mbcache,crc16\x00softdep=pre: crypto-crc32c\x00alias=fs-ext4\x00",
		"depends=\x00\x00\x00name=a\x00",
		"softdep=post: a pre: b\x00",
		"=\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModinfo(data)
		if err != nil {
			return
		}
		for _, list := range [][]string{{m.Name}, m.Depends} {
			for _, n := range list {
				if strings.Contains(n, "-") {
					t.Errorf("name %q not normalized", n)
				}
			}
		}
		for _, d := range m.Depends {
			if checkName(d) != nil {
				t.Errorf("accepted bad dependency %q", d)
			}
		}
	})
}
