package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/recovery"
	"github.com/keelboot/keel/slotwrite"
)

// TestBuildRecovery writes a recovery seed and checks it: it parses and
// verifies with the trusted key (package recovery), its digests match the
// inputs, veritysetup verify accepts its root entry with the manifest's
// parameters, a reinstall from it gives a slot whose root veritysetup
// accepts too, and a factory reset from its data entry gives a data file
// system e2fsck accepts, identical to the one the builder wrote.
func TestBuildRecovery(t *testing.T) {
	fx := newFixture(t)
	ra := fx.spec.Slots["a"]
	ra.Version = "1.recovery"
	fx.spec.Recovery = &ra
	disk, tab := fx.build(t)
	p := find(t, tab, "recovery")
	seedBytes := readPart(t, disk, p)
	src := bytes.NewReader(seedBytes)

	board := fx.spec.Board.Name
	seed, err := recovery.VerifySeed(src, p.Size(), fx.trusted, board)
	if err != nil {
		t.Fatalf("VerifySeed: %v", err)
	}
	// Bound to the board and role (issue 9 item 14): the seed's manifest
	// is a seed's, the one it installs a slot's, both for this board.
	m := seed.Manifest
	if m.Compatible != board || m.Role != manifest.RoleSeed || seed.SlotManifest.Compatible != board || seed.SlotManifest.Role != manifest.RoleSlot || seed.SlotManifest.Data != nil {
		t.Errorf("seed manifests: %+v and %+v: want a seed's and a slot's for %s", m, seed.SlotManifest, board)
	}
	if _, err := recovery.VerifySeed(src, p.Size(), fx.trusted, "qemu-arm64-uboot"); !errors.Is(err, manifest.ErrWrongBoard) {
		t.Errorf("VerifySeed for another board: %v, want ErrWrongBoard", err)
	}
	if _, err := manifest.VerifyFor(seed.ManifestBytes, seed.Sig, fx.trusted, manifest.Expect{Compatible: board, Role: manifest.RoleSlot}); !errors.Is(err, manifest.ErrWrongRole) {
		t.Errorf("the seed's manifest as a slot's: %v, want ErrWrongRole", err)
	}
	k, _ := manifest.DigestOf(bytes.NewReader(fx.kernel["a"]))
	i, _ := manifest.DigestOf(bytes.NewReader(fx.initrd["a"]))
	if m.Kernel != k || m.Initrd != i || m.Version != "1.recovery" || m.Root.FSType != FSErofs || m.Data == nil {
		t.Errorf("seed manifest %+v: want the inputs' digests %+v %+v, version 1.recovery, erofs, a data digest", m, k, i)
	}
	h, err := slotimg.ReadHeader(src, p.Size())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range h.Entries {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, " "); got != "kernel initrd manifest manifest.sig slot-manifest slot-manifest.sig root data" {
		t.Errorf("seed entries %q", got)
	}
	root := seedBytes[seed.Root.Offset : seed.Root.Offset+seed.Root.Size]
	checkVerity(t, root, m)

	// Reinstall slot b from the seed, into copies of its partitions.
	dir := t.TempDir()
	part := func(name string) (*os.File, int64) {
		pp := find(t, tab, name)
		f, err := os.OpenFile(extract(t, disk, pp), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, pp.Size()
	}
	slotF, slotSize := part(layout.SlotPartition("b"))
	rootF, rootSize := part(layout.RootPartition("b"))
	if _, err := recovery.Reinstall(context.Background(), seed, src, slotwrite.Target{Slot: slotF, SlotSize: slotSize, Root: rootF, RootSize: rootSize}, nil); err != nil {
		t.Fatalf("Reinstall: %v", err)
	}
	sh, err := slotimg.ReadHeader(slotF, slotSize)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := sh.Section(slotF, slotimg.EntryKernel)
	if err := manifest.Check("kernel", ks, m.Kernel); err != nil {
		t.Error(err)
	}
	// The reinstalled slot's manifest is the slot manifest: keel-init's
	// check (a slot's, for this board) accepts it.
	read := func(name string) []byte {
		s, err := sh.Section(slotF, name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(s)
		return b
	}
	smb := read(slotimg.EntryManifest)
	if _, err := manifest.VerifyFor(smb, read(manifest.SigEntry), fx.trusted, manifest.Expect{Compatible: board, Role: manifest.RoleSlot}); err != nil || !bytes.Equal(smb, seed.SlotManifestBytes) {
		t.Errorf("the reinstalled slot's manifest: %v", err)
	}
	rb := make([]byte, rootSize)
	if _, err := rootF.ReadAt(rb, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	checkVerity(t, rb, m)

	// Factory reset: a used data partition becomes the builder's empty one.
	dataP := find(t, tab, "data")
	clean := readPart(t, disk, dataP)
	used := filepath.Join(dir, "data.img")
	writeFile(t, used, bytes.Repeat([]byte("user data "), int(dataP.Size()/10)+1)[:dataP.Size()])
	df, err := os.OpenFile(used, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	if err := recovery.WipeData(context.Background(), seed, src, df, dataP.Size(), nil); err != nil {
		t.Fatalf("WipeData: %v", err)
	}
	got, _ := os.ReadFile(used)
	if !bytes.Equal(got, clean) {
		t.Error("the wiped data partition differs from the builder's empty data file system")
	}
	command(t, "e2fsck", "-fn", used)
}

// TestBuildRecoveryErrors: a seed too large for the partition, a spec
// problem.
func TestBuildRecoveryErrors(t *testing.T) {
	fx := newFixture(t)
	fx.spec.Board.Layout = append([]boards.Partition(nil), fx.spec.Board.Layout...)
	for i := range fx.spec.Board.Layout {
		if fx.spec.Board.Layout[i].Name == "recovery" {
			fx.spec.Board.Layout[i].SizeMB = 1
		}
	}
	ra := fx.spec.Slots["a"]
	randomFile(t, filepath.Join(fx.dir, "big-kernel"), 2<<20)
	ra.Kernel = filepath.Join(fx.dir, "big-kernel")
	fx.spec.Recovery = &ra
	err := Build(context.Background(), fx.spec)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Build = %v, want ErrTooLarge", err)
	}
	for _, s := range []string{"partition recovery", "the recovery seed", "1 MiB (1048576 bytes)", ra.Kernel} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %q: %v", s, err)
		}
	}

	fx.spec.Recovery = &Slot{Empty: true}
	if err := fx.spec.Validate(); err == nil || !strings.Contains(err.Error(), "recovery.empty") {
		t.Errorf("Validate with an empty recovery = %v", err)
	}
	fx.spec.Recovery = &Slot{Kernel: ra.Kernel}
	err = fx.spec.Validate()
	for _, s := range []string{"recovery.initrd", "recovery.version", "recovery.root_dir"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("Validate = %v, want %q", err, s)
		}
	}
}

// TestReadSpecRecovery: the recovery field's relative paths are taken
// relative to the spec file, as the slots' are. (ReadSpec does not check
// the fields: root_dir and root_image together are Validate's problem.)
func TestReadSpecRecovery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spec.json")
	writeFile(t, path, []byte(`{"slots": {}, "recovery": {"kernel": "k", "initrd": "i", "root_dir": "r", "root_image": "sub/root.erofs", "version": "1"}}`))
	s, err := ReadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Recovery
	if r == nil || r.Kernel != filepath.Join(dir, "k") || r.Initrd != filepath.Join(dir, "i") ||
		r.RootDir != filepath.Join(dir, "r") || r.RootImage != filepath.Join(dir, "sub/root.erofs") || r.Version != "1" {
		t.Errorf("recovery = %+v", r)
	}
}

// TestReadSpecNoTestSwitches: the spec once had test switches; they are
// gone (tests break images with package imagetest), and a spec that still
// names one is refused, in a slot and in recovery, as any unknown field.
func TestReadSpecNoTestSwitches(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spec.json")
	for _, field := range []string{`"corrupt_kernel": true`, `"corrupt_root": "KEEL"`, `"sign_with": ["s.key"]`, `"unknown_key": true`} {
		name := strings.Trim(strings.SplitN(field, ":", 2)[0], `"`)
		slot := `{"kernel": "k", "initrd": "i", "root_dir": "r", "version": "1", ` + field + `}`
		for _, spec := range []string{`{"slots": {"a": ` + slot + `}}`, `{"slots": {}, "recovery": ` + slot + `}`} {
			writeFile(t, path, []byte(spec))
			_, err := ReadSpec(path)
			if err == nil || !strings.Contains(err.Error(), `unknown field "`+name+`"`) {
				t.Errorf("ReadSpec(%s) = %v, want unknown field %q", spec, err, name)
			}
		}
	}
}
