package vmtests

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// Issue 10: over-the-air updates. The test slots' bundles are built on the
// host from the same artefacts as the disks (vmkit.Bundle); in the guest
// they come from a second virtio disk (a USB stick: /dev/vdb) or, offline
// on the host, over HTTP.

// bundleFile builds the bundle of slot name holding s into the machine's
// folder.
func (m *machine) bundleFile(name string, s vmkit.SlotSpec) string {
	m.t.Helper()
	out := filepath.Join(m.Dir, name+"-"+s.Version+".bundle")
	if _, err := m.Art.Bundle(context.Background(), out, name, s); err != nil {
		m.t.Fatal(err)
	}
	return out
}

// keelOut runs a keel command in the booted slot, checks its exit code
// and returns what it printed.
func (r *run) keelOut(args string, wantRC int) string {
	r.t.Helper()
	rc, out, err := r.r.KeelOutput(args)
	r.check(err)
	if rc != wantRC {
		r.t.Fatalf("keel %s: rc=%d, want %d; output:\n%s", args, rc, wantRC, out)
	}
	return out
}

var reInstalled = regexp.MustCompile(`installed version (\S+) .* into slot (\S+) in .*: fetched ([0-9.]+ [KM]iB|[0-9]+ bytes).* of a ([0-9.]+ MiB)`)

// Scenario 1: the running slot a installs a bundle from a USB stick, arms
// the trial and reboots; b boots on trial, marks itself good and is
// committed; the file on data is intact. This one runs under UEFI Secure
// Boot (issue 11: an update commit with Secure Boot enforced): the first
// boot enrols keel's keys, every boot after it is verified, and the
// bundle's slot kernel passes keel-init's and the kernel's kexec checks.
func TestInstallFromStick(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	m.SecureBoot = true
	m.Stick = m.bundleFile("b", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 2})
	r := m.powerOn(4 * bootTimeout)
	r.booted("a", "1.0")
	r.keelOut("secureboot enroll "+vmkit.EnrolmentDir, 0)
	r.reboot()
	r.expect("Secure Boot: on; slot kernels must be signed by db")
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.dataPut("survives-the-update")
	out := r.keelOut("install --progress lines /dev/vdb", 0)
	got := reInstalled.FindStringSubmatch(out)
	if got == nil || got[1] != "2.0" || got[2] != "b" {
		t.Errorf("install printed:\n%s", out)
	}
	mustContain(t, "install", out, "slot b is on trial for 3 boots")
	mustContain(t, "install", out, "install: writing")
	s := r.status()
	if deref(s.Trial) != "b" || s.Slots["b"].Version != "2.0" || s.Installing != nil {
		t.Errorf("after the install: %s", s.Raw)
	}
	r.reboot()
	r.expect("Secure Boot: on; slot kernels must be signed by db")
	if mode := r.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s = r.status()
	if deref(s.Active) != "b" || s.Trial != nil || s.Slots["a"].State != "good" {
		t.Errorf("after b marked good: %s", s.Raw)
	}
	if got := r.dataGet(); got != "survives-the-update" {
		t.Errorf("data after the update: %q", got)
	}
	r.powerOff()
}

// Scenario 2: the same with a static delta bundle (only the blocks version
// 1.0 lacks), made on the host with keel bundle delta.
func TestInstallStaticDelta(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	old := m.bundleFile("a", vmkit.SlotSpec{Version: "1.0", SecurityVersion: 1})
	full := m.bundleFile("b", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 1})
	delta := filepath.Join(m.Dir, "b-2.0-delta.bundle")
	out := hostKeel(t, "bundle", "delta", "--from", old, full, "-o", delta, "--key", m.Art.SigningKey)
	t.Log(out)
	// The delta carries the container and the tree, and of the root only
	// the blocks version 1.0 lacks.
	if c := regexp.MustCompile(`from 1\.0, ([0-9]+) of ([0-9]+) blocks`).FindStringSubmatch(out); c == nil || len(c[1]) > 2 {
		t.Errorf("the delta carries too many blocks: %s", out)
	}
	m.Stick = delta
	r := m.powerOn(3 * bootTimeout)
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.dataPut("kept")
	if out := r.keelOut("install --progress none /dev/vdb", 0); !reInstalled.MatchString(out) {
		t.Errorf("install printed:\n%s", out)
	}
	r.reboot()
	if mode := r.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	if got := r.dataGet(); got != "kept" {
		t.Errorf("data after the update: %q", got)
	}
	r.powerOff()
}

// Scenario 3: QEMU is killed in the middle of the install: the next boot
// is a in normal mode with b untried (and marked as being written); the
// install run again completes and b boots.
func TestInstallPowerCut(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	m.Stick = m.bundleFile("b", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 1, PadMiB: 4})
	r := m.powerOn(2 * bootTimeout)
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.expect("KEEL-READY")
	r.check(r.r.Send("keel install --progress lines /dev/vdb"))
	r.expect("install: writing")
	r.r.Kill() // the power cut, after the record says b is being written
	r2 := m.powerOn(3 * bootTimeout)
	if mode := r2.booted("a", "1.0"); mode != "normal" {
		t.Errorf("after the cut a booted in mode %s, want normal", mode)
	}
	r2.expect("KEEL-MARKED-GOOD")
	s := r2.status()
	if s.Trial != nil || deref(s.Installing) != "b" || s.Slots["b"].State != "empty" {
		t.Errorf("after the cut: %s", s.Raw)
	}
	r2.keel("install --progress lines /dev/vdb", 0)
	r2.reboot()
	if mode := r2.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r2.expect("KEEL-MARKED-GOOD")
	r2.powerOff()
}

// Scenario 4: a bundle with one changed data block (one the device does
// not have): the install fails naming the block, nothing is switched, and
// a keeps booting.
func TestInstallTamperedBundle(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	old := m.bundleFile("a", vmkit.SlotSpec{Version: "1.0", SecurityVersion: 1})
	full := m.bundleFile("b", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 1})
	m.Stick = filepath.Join(m.Dir, "tampered.bundle")
	want := tamperNewBlock(t, old, full, m.Stick)
	r := m.powerOn(2 * bootTimeout)
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	out := r.keelOut("install --progress none /dev/vdb", 2)
	mustContain(t, "install", out, want)
	mustContain(t, "install", out, "run the install again")
	s := r.status()
	if s.Trial != nil || deref(s.Active) != "a" {
		t.Errorf("after the refused bundle: %s", s.Raw)
	}
	r.reboot()
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Errorf("a booted in mode %s, want normal", mode)
	}
	r.powerOff()
}

// tamperNewBlock copies the bundle full to out with one byte changed in a
// data block that the bundle old does not have (in a format-2 bundle: in
// the stored chunk that holds it), and returns what the install's error
// must say.
func tamperNewBlock(t *testing.T, old, full, out string) string {
	t.Helper()
	ctx := context.Background()
	trusted, err := manifest.ReadPublicKeys(artefacts(t).TrustedKeys)
	if err != nil {
		t.Fatal(err)
	}
	openB := func(path string) (*bundle.Bundle, []byte) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bb, err := bundle.Open(ctx, source.NewReaderAt(bytes.NewReader(b), int64(len(b)), path), trusted, manifest.AnyBoard)
		if err != nil {
			t.Fatal(err)
		}
		return bb, b
	}
	ob, obytes := openB(old)
	nb, nbytes := openB(full)
	tree, _, err := nb.ReadTree(ctx, source.NewReaderAt(bytes.NewReader(nbytes), int64(len(nbytes)), full))
	if err != nil {
		t.Fatal(err)
	}
	oldTree, _, err := ob.ReadTree(ctx, source.NewReaderAt(bytes.NewReader(obytes), int64(len(obytes)), old))
	if err != nil {
		t.Fatal(err)
	}
	oldRoot, err := ob.RootReader(bytes.NewReader(obytes))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.DeltaMap(tree, oldRoot, oldTree)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < tree.Blocks(); i++ {
		if m.Has(i) {
			off := nb.BlockOffset(i, 0) + 100
			want := fmt.Sprintf("data block %d of version 2.0 does not match its dm-verity leaf", i)
			if k, stored, ok := nb.ChunkOf(off); ok {
				off = stored.Off + stored.Len/2
				want = fmt.Sprintf("update bundle was changed after signing: chunk %d (the data part's bytes", k)
			}
			nbytes[off] ^= 0x5a
			if err := os.WriteFile(out, nbytes, 0o644); err != nil {
				t.Fatal(err)
			}
			return want
		}
	}
	t.Fatal("version 2.0 has no block version 1.0 lacks")
	return ""
}

// Scenario 5: offline over HTTP: on the host, keel --image disk.img install
// http://127.0.0.1:PORT/b.bundle streams into the image's inactive slot;
// the image then boots b (its security version is the highest: keel-init's
// first start makes it active).
func TestInstallOfflineHTTP(t *testing.T) {
	t.Parallel()
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	b := m.bundleFile("b", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 2})
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(b))))
	defer srv.Close()
	out := hostKeel(t, "--image", m.Disk, "install", "--keys", m.Art.TrustedKeys, "--progress", "lines", srv.URL+"/"+filepath.Base(b))
	t.Log(out)
	mustContain(t, "keel install", out, "into slot b")
	r := m.powerOn(bootTimeout)
	if mode := r.booted("b", "2.0"); mode != "normal" {
		t.Errorf("b booted in mode %s", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if deref(s.Active) != "b" || s.Slots["a"].State != "good" {
		t.Errorf("status: %s", s.Raw)
	}
	r.powerOff()
}
