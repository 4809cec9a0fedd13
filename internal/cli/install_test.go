package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
)

const (
	tSlotSize = 256 << 10
	tRootSize = 2 << 20
)

// updateFixture: keys, versions 1 and 2 of a slot, their bundles as files.
type updateFixture struct {
	dir              string
	key              manifest.PrivateKey
	keyFile, pubFile string
	v1, v2           *bundletest.Slot
	b1, b2           string // bundle files
}

func newUpdateFixture(t *testing.T) *updateFixture {
	f := &updateFixture{dir: t.TempDir()}
	rng := rand.New(rand.NewSource(9))
	var trusted []manifest.PublicKey
	f.key, trusted = bundletest.Keys(t, "release")
	f.v1 = bundletest.NewSlot(t, rng, 200, "1.0", 1, f.key)
	f.v2 = bundletest.Next(t, rng, f.v1, 4, false, "2.0", f.key)
	f.keyFile = filepath.Join(f.dir, "release.key")
	f.pubFile = filepath.Join(f.dir, "release.pub")
	kb, _ := f.key.MarshalText()
	pb, _ := trusted[0].MarshalText()
	mustWrite(t, f.keyFile, kb, 0o600)
	mustWrite(t, f.pubFile, pb, 0o644)
	f.b1 = filepath.Join(f.dir, "v1.bundle")
	f.b2 = filepath.Join(f.dir, "v2.bundle")
	mustWrite(t, f.b1, bundletest.Bundle(t, f.v1, f.key), 0o644)
	mustWrite(t, f.b2, bundletest.Bundle(t, f.v2, f.key), 0o644)
	return f
}

func mustWrite(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

func slotContainer(t *testing.T, s *bundletest.Slot) []byte {
	var b bytes.Buffer
	if _, err := slotimg.Write(&b, []slotimg.Part{
		{Name: slotimg.EntryKernel, Data: s.Kernel}, {Name: slotimg.EntryInitrd, Data: s.Initrd},
		{Name: slotimg.EntryManifest, Data: s.Manifest}, {Name: manifest.SigEntry, Data: s.Sig},
	}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testDisk writes a GPT disk image with slots a and b (a holding active,
// b empty) and, if bootstate, a bootstate partition.
func testDisk(t *testing.T, path string, active *bundletest.Slot, bootstate bool) {
	var specs []gpt.Spec
	typ, _ := gpt.ParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	if bootstate {
		specs = append(specs, gpt.Spec{Name: layout.Bootstate, Type: typ, Size: 2 * 0x10000})
	}
	for _, s := range []string{"a", "b"} {
		specs = append(specs, gpt.Spec{Name: layout.SlotPartition(s), Type: typ, Size: tSlotSize},
			gpt.Spec{Name: layout.RootPartition(s), Type: typ, Size: tRootSize})
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(12 << 20)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.CreateWith(f, size, specs, gpt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := tab.Find("slot-a")
	rp, _ := tab.Find("root-a")
	if _, err := f.WriteAt(slotContainer(t, active), sp.Offset()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(active.Root, rp.Offset()); err != nil {
		t.Fatal(err)
	}
}

// imageSlot returns the manifest bytes in the image's slot (nil: no valid
// container) and whether its root holds s's root.
func imageSlot(t *testing.T, path, slot string, s *bundletest.Slot) ([]byte, bool) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := tab.Find(layout.SlotPartition(slot))
	rp, _ := tab.Find(layout.RootPartition(slot))
	r := io.NewSectionReader(f, sp.Offset(), sp.Size())
	h, err := slotimg.ReadHeader(r, sp.Size())
	if err != nil {
		return nil, false
	}
	e, _ := h.Find(slotimg.EntryManifest)
	m := make([]byte, e.Size)
	r.ReadAt(m, e.Offset)
	root := make([]byte, len(s.Root))
	f.ReadAt(root, rp.Offset())
	return m, bytes.Equal(root, s.Root)
}

func TestBundleCommands(t *testing.T) {
	f := newUpdateFixture(t)
	img := filepath.Join(f.dir, "disk.img")
	testDisk(t, img, f.v1, false)
	// The bundle of a built image's slot is the slot's bundle.
	out := filepath.Join(f.dir, "from-image.bundle")
	keel(t, "bundle", "build", "--from-image", img, "--slot", "a", "--key", f.keyFile, "-o", out).ok(t)
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(f.b1)
	if !bytes.Equal(got, want) {
		t.Error("the bundle of slot a of the image differs from the slot's bundle")
	}
	// Format 1, for devices whose keel reads only that: the same bytes as
	// the slot's format-1 bundle.
	plain := filepath.Join(f.dir, "from-image-plain.bundle")
	keel(t, "bundle", "build", "--from-image", img, "--slot", "a", "--key", f.keyFile, "--format", "1", "-o", plain).ok(t)
	if got, _ := os.ReadFile(plain); !bytes.Equal(got, bundletest.PlainBundle(t, f.v1, f.key)) {
		t.Error("the format-1 bundle of slot a of the image differs from the slot's format-1 bundle")
	}
	if r := keel(t, "bundle", "info", plain).ok(t); !strings.Contains(r.stdout, "format 1, uncompressed") {
		t.Errorf("info of a format-1 bundle: %s", r.stdout)
	}
	keel(t, "bundle", "build", "--from-image", img, "--slot", "a", "--key", f.keyFile, "--format", "3", "-o", plain).fails(t, ExitUsage, "--format 3")
	r := keel(t, "bundle", "verify", "--keys", f.pubFile, f.b2).ok(t)
	if !strings.Contains(r.stdout, "OK: version 2.0") {
		t.Errorf("verify: %s", r.stdout)
	}
	r = keel(t, "bundle", "info", f.b2).ok(t)
	for _, w := range []string{"version:", "2.0", "NOT checked", "kernel", "data", "storage:", "format 2, zstd chunks of 256 KiB"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("info without keys lacks %q:\n%s", w, r.stdout)
		}
	}
	r = keel(t, "bundle", "info", "--keys", f.pubFile, "--json", f.b2).ok(t)
	var info bundleInfoJSON
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || !info.Verified || info.Header.Version != "2.0" || info.KeyID != f.key.ID() {
		t.Errorf("info --json: %v %+v", err, info)
	}
	// A tampered bundle: verify names the chunk (its last, the data
	// part's last 32 KiB).
	bad := filepath.Join(f.dir, "bad.bundle")
	b, _ := os.ReadFile(f.b2)
	b[len(b)-4096*3+7] ^= 1
	mustWrite(t, bad, b, 0o644)
	keel(t, "bundle", "verify", "--keys", f.pubFile, bad).fails(t, ExitStorage, "the data part's bytes 786432 to 819200) does not decompress")
	// A static delta.
	delta := filepath.Join(f.dir, "delta.bundle")
	r = keel(t, "bundle", "delta", "--from", f.b1, f.b2, "-o", delta, "--key", f.keyFile).ok(t)
	if !strings.Contains(r.stdout, "from 1.0") {
		t.Errorf("delta: %s", r.stdout)
	}
	keel(t, "bundle", "verify", "--keys", f.pubFile, delta).ok(t)
	if st, _ := os.Stat(delta); st.Size()*4 > int64(len(b)) {
		t.Errorf("the delta of a 4-block change is %d bytes, the full bundle %d", st.Size(), len(b))
	}
	// Usage errors.
	keel(t, "bundle", "verify", f.b2).fails(t, ExitUsage, "--keys")
	keel(t, "bundle", "build", "--slot", "a", "-o", out).fails(t, ExitUsage, "--spec")
}

func TestInstallOfflineImage(t *testing.T) {
	f := newUpdateFixture(t)
	// Without a boot record (UEFI: the record is in firmware variables):
	// the slot that keel-init would not choose is written.
	img := filepath.Join(f.dir, "uefi.img")
	testDisk(t, img, f.v1, false)
	keel(t, "--image", img, "install", f.b2).fails(t, ExitUsage, "--keys")
	r := keel(t, "--image", img, "install", "--keys", f.pubFile, "--progress", "lines", f.b2).ok(t)
	if !strings.Contains(r.stdout, "into slot b") || !strings.Contains(r.stdout, "firmware variables") {
		t.Errorf("install: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "install: writing") {
		t.Errorf("no progress lines: %s", r.stderr)
	}
	if m, ok := imageSlot(t, img, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("slot b does not hold version 2")
	}
	if m, ok := imageSlot(t, img, "a", f.v1); !bytes.Equal(m, f.v1.Manifest) || !ok {
		t.Error("slot a changed")
	}

	// With a boot record on the image: b goes on trial.
	img = filepath.Join(f.dir, "uboot.img")
	testDisk(t, img, f.v1, true)
	keel(t, "--image", img, "init", "--active", "a").ok(t)
	// Older than the running version: refused without --allow-downgrade.
	imgOld := filepath.Join(f.dir, "old.img")
	testDisk(t, imgOld, f.v2, true)
	keel(t, "--image", imgOld, "init", "--active", "a").ok(t)
	keel(t, "--image", imgOld, "install", "--keys", f.pubFile, f.b1).fails(t, ExitUsage, "--allow-downgrade")
	keel(t, "--image", imgOld, "install", "--keys", f.pubFile, "--allow-downgrade", "--progress", "none", f.b1).ok(t)

	r = keel(t, "--image", img, "install", "--keys", f.pubFile, "--json", f.b2).ok(t)
	var res installResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Slot != "b" || res.Trial != 3 || !res.Record || res.Blocks.Fetched > 4 {
		t.Fatalf("install --json: %v %+v", err, res)
	}
	if !strings.Contains(r.stderr, `"phase":"write"`) {
		t.Errorf("--json without --progress: no JSON events on stderr: %s", r.stderr)
	}
	st := keel(t, "--image", img, "status", "--json").ok(t)
	var s statusJSON
	if err := json.Unmarshal([]byte(st.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Trial == nil || *s.Trial != "b" || s.Slots["b"].Version != "2.0" || s.Installing != nil || s.NextBoot.Slot != "b" {
		t.Errorf("after the install: %+v", s)
	}
	// During the trial, another install is refused (before any download).
	keel(t, "--image", img, "install", "--keys", f.pubFile, f.b2).fails(t, ExitUsage, "on trial")
}

// TestInstallTamperedLeavesSlotUnbootable: a bad block fails the install
// after the record says the slot is being written; the slot is never
// tried, the record names it, and a good bundle then completes.
func TestInstallTamperedLeavesSlotUnbootable(t *testing.T) {
	f := newUpdateFixture(t)
	img := filepath.Join(f.dir, "uboot.img")
	testDisk(t, img, f.v1, true)
	keel(t, "--image", img, "init", "--active", "a").ok(t)
	b, _ := os.ReadFile(f.b2)
	// A block the device does not have: the last one of the changed.
	b[len(b)-4096+100] ^= 1
	bad := filepath.Join(f.dir, "bad.bundle")
	mustWrite(t, bad, b, 0o644)
	r := keel(t, "--image", img, "install", "--keys", f.pubFile, "--no-delta", "--progress", "none", bad)
	r.fails(t, ExitStorage, "update bundle was changed after signing")
	if !strings.Contains(r.stderr, "run the install again") {
		t.Errorf("no advice: %s", r.stderr)
	}
	st := keel(t, "--image", img, "status", "--json").ok(t)
	var s statusJSON
	json.Unmarshal([]byte(st.stdout), &s)
	if s.Installing == nil || *s.Installing != "b" || s.Trial != nil || s.NextBoot.Slot != "a" {
		t.Errorf("after the failed install: %+v", s)
	}
	if m, _ := imageSlot(t, img, "b", f.v2); m != nil {
		t.Error("slot b has a valid container after the failed install")
	}
	keel(t, "--image", img, "install", "--keys", f.pubFile, "--progress", "none", f.b2).ok(t)
	if m, ok := imageSlot(t, img, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("slot b does not hold version 2 after the second install")
	}
}

// device is a fake keel-booted device: slot partitions as files, the
// record in an efivars directory, keel-init's keys in RunDir.
type fakeDevice struct {
	dir, efi, run string
	parts         map[string]string
	rebooted      bool
}

func newFakeDevice(t *testing.T, f *updateFixture) *fakeDevice {
	d := &fakeDevice{dir: t.TempDir(), parts: map[string]string{}}
	d.efi = filepath.Join(d.dir, "efivars")
	d.run = filepath.Join(d.dir, "run")
	os.MkdirAll(d.efi, 0o755)
	os.MkdirAll(d.run, 0o755)
	pub, _ := os.ReadFile(f.pubFile)
	mustWrite(t, filepath.Join(d.run, "trusted-keys"), pub, 0o444)
	for _, s := range []string{"a", "b"} {
		for name, size := range map[string]int64{layout.SlotPartition(s): tSlotSize, layout.RootPartition(s): tRootSize} {
			p := filepath.Join(d.dir, name)
			b := make([]byte, size)
			if s == "a" && name == layout.SlotPartition(s) {
				copy(b, slotContainer(t, f.v1))
			}
			if s == "a" && name == layout.RootPartition(s) {
				copy(b, f.v1.Root)
			}
			mustWrite(t, p, b, 0o644)
			d.parts[name] = p
		}
	}
	return d
}

func (d *fakeDevice) deps(t *testing.T, stdin io.Reader) Deps {
	return Deps{
		Cmdline:        func() (string, error) { return "console=ttyS0 keel.slot=a keel.secver=1 keel.store=efivars", nil },
		EFIVarsDir:     d.efi,
		RunDir:         d.run,
		Stdin:          stdin,
		DisarmWatchdog: func() error { return nil },
		OpenTPM:        func() (transport.TPMCloser, error) { return nil, fs.ErrNotExist },
		OpenPartition: func(name string, names []string) (*os.File, int64, error) {
			f, err := os.OpenFile(d.parts[name], os.O_RDWR, 0)
			if err != nil {
				return nil, 0, err
			}
			st, _ := f.Stat()
			return f, st.Size(), nil
		},
		Reboot: func() error { d.rebooted = true; return nil },
	}
}

func TestInstallOnDevice(t *testing.T) {
	f := newUpdateFixture(t)
	for _, kind := range []string{"file", "stdin", "http"} {
		t.Run(kind, func(t *testing.T) {
			d := newFakeDevice(t, f)
			keelDeps(t, d.deps(t, nil), "--efivars", d.efi, "init", "--active", "a").ok(t)
			src, stdin := f.b2, io.Reader(nil)
			switch kind {
			case "stdin":
				b, _ := os.ReadFile(f.b2)
				src, stdin = "-", bytes.NewReader(b)
			case "http":
				srv := httptest.NewServer(http.FileServer(http.Dir(f.dir)))
				defer srv.Close()
				src = srv.URL + "/v2.bundle"
			}
			r := keelDeps(t, d.deps(t, stdin), "install", "--progress", "json", "--reboot", src).ok(t)
			if !strings.Contains(r.stdout, "slot b is on trial for 3 boots") || !d.rebooted {
				t.Errorf("stdout %s, rebooted %v", r.stdout, d.rebooted)
			}
			if !strings.Contains(r.stderr, "anti-rollback counter") {
				t.Errorf("no TPM: no warning: %s", r.stderr)
			}
			s, err := efivars.Open(d.efi)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			if rec.Trial != "b" || rec.Installing != "" {
				t.Errorf("record: %+v", rec)
			}
			if sl, _ := rec.Slot("b"); sl.Version != "2.0" || sl.State != bootenv.StateTrial {
				t.Errorf("slot b: %+v", sl)
			}
			got, _ := os.ReadFile(d.parts["root-b"])
			if !bytes.Equal(got[:len(f.v2.Root)], f.v2.Root) {
				t.Error("root-b does not hold version 2")
			}
		})
	}
	// Keys: only the ones keel-init handed over.
	d := newFakeDevice(t, f)
	keelDeps(t, d.deps(t, nil), "--efivars", d.efi, "init", "--active", "a").ok(t)
	_, otherTrusted := bundletest.Keys(t, "not ours")
	pb, _ := otherTrusted[0].MarshalText()
	mustWrite(t, filepath.Join(d.run, "trusted-keys"), pb, 0o444)
	keelDeps(t, d.deps(t, nil), "install", f.b2).fails(t, ExitStorage, "does not verify with the trusted keys")
	os.Remove(filepath.Join(d.run, "trusted-keys"))
	keelDeps(t, d.deps(t, nil), "install", f.b2).fails(t, ExitUsage, "trusted-keys")
	// Not booted by keel.
	dd := d.deps(t, nil)
	dd.Cmdline = func() (string, error) { return "console=ttyS0", nil }
	keelDeps(t, dd, "install", f.b2).fails(t, ExitUsage, "not booted by keel")
}
