package update

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/bootstore"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

const (
	pSlotSize = 256 << 10
	pRootSize = 2 << 20
)

// planFixture: the keys, versions 1 and 2 of a slot and version 2's
// bundle.
type planFixture struct {
	trusted []manifest.PublicKey
	v1, v2  *bundletest.Slot
	b2      []byte
}

func newPlanFixture(t *testing.T) *planFixture {
	key, trusted := bundletest.Keys(t, "release")
	rng := rand.New(rand.NewSource(3))
	f := &planFixture{trusted: trusted}
	f.v1 = bundletest.NewSlot(t, rng, 100, "1.0", 1, key)
	f.v2 = bundletest.Next(t, rng, f.v1, 3, false, "2.0", key)
	f.b2 = bundletest.Bundle(t, f.v2, key)
	return f
}

func container(t *testing.T, s *bundletest.Slot) []byte {
	var b bytes.Buffer
	if _, err := slotimg.Write(&b, []slotimg.Part{
		{Name: slotimg.EntryKernel, Data: s.Kernel}, {Name: slotimg.EntryInitrd, Data: s.Initrd},
		{Name: slotimg.EntryManifest, Data: s.Manifest}, {Name: manifest.SigEntry, Data: s.Sig},
	}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// diskImage writes a GPT disk image with slots a and b, slot a holding
// active (nil: empty), and a bootstate partition if bootstate.
func diskImage(t *testing.T, active *bundletest.Slot, bootstate bool) string {
	path := filepath.Join(t.TempDir(), "disk.img")
	typ, _ := gpt.ParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	var specs []gpt.Spec
	if bootstate {
		specs = append(specs, gpt.Spec{Name: layout.Bootstate, Type: typ, Size: 2 * 0x10000})
	}
	for _, s := range []string{"a", "b"} {
		specs = append(specs, gpt.Spec{Name: layout.SlotPartition(s), Type: typ, Size: pSlotSize},
			gpt.Spec{Name: layout.RootPartition(s), Type: typ, Size: pRootSize})
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 12 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.CreateWith(f, size, specs, gpt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if active != nil {
		sp, _ := tab.Find("slot-a")
		rp, _ := tab.Find("root-a")
		f.WriteAt(container(t, active), sp.Offset())
		f.WriteAt(active.Root, rp.Offset())
	}
	return path
}

// initImage starts the boot record of an image with a bootstate partition
// and applies edit to it.
func initImage(t *testing.T, img string, edit func(bootenv.Record) (bootenv.Record, error)) {
	s, err := bootstore.Open(bootstore.Location{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := bootenv.Init(nil, "a")
	if err == nil && edit != nil {
		r, err = edit(r)
	}
	if err == nil {
		err = s.Commit(r)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func record(t *testing.T, img string) bootenv.Record {
	s, err := bootstore.Open(bootstore.Location{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func older(version string, secver uint64) *bundle.Bundle {
	return &bundle.Bundle{Header: &bundle.Header{Version: version, SecurityVersion: secver}}
}

// TestPlanImage: the target, the board, the policy and the record's part
// of an install into a disk image, with and without a boot record.
func TestPlanImage(t *testing.T) {
	f := newPlanFixture(t)
	// No record: the record keel-init would start makes a (verified)
	// active, so b is written; nothing to finish.
	img := diskImage(t, f.v1, false)
	p, err := PlanImage(Image{Path: img, Trusted: f.trusted})
	if err != nil {
		t.Fatal(err)
	}
	if p.Slot != "b" || p.Active != "a" || p.Blocks == nil || p.Board.Name != bundletest.Board || p.Unrecorded == "" || len(p.Notes) != 0 {
		t.Errorf("plan: %+v", p)
	}
	if err := p.Check(older("0.9", 1)); !errors.Is(err, bootenv.ErrRefused) || !strings.Contains(err.Error(), "--allow-downgrade") {
		t.Errorf("an older version: %v", err)
	}
	if ok, err := p.Finish(&bundle.Header{Version: "2.0"}, 3); ok || err != nil {
		t.Errorf("Finish without a record: %v, %v", ok, err)
	}
	p.Close()
	// --slot a overwrites the newest verified slot, with a note; nothing
	// to take blocks from.
	p, err = PlanImage(Image{Path: img, Trusted: f.trusted, Slot: "a", AllowDowngrade: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Slot != "a" || p.Blocks != nil || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "slot a is the newest verified slot") || p.Check(older("0.9", 1)) != nil {
		t.Errorf("--slot a: %+v", p)
	}
	p.Close()
	// No slot names the board.
	empty := diskImage(t, nil, false)
	if _, err := PlanImage(Image{Path: empty, Trusted: f.trusted}); !errors.Is(err, ErrRequest) || !strings.Contains(err.Error(), "give --board NAME") {
		t.Errorf("no board: %v", err)
	}
	p, err = PlanImage(Image{Path: empty, Trusted: f.trusted, Board: "qemu-x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := boards.Get("qemu-x86_64"); p.Board.Name != "qemu-x86_64" || p.Board.TrialTries() != b.TrialTries() || p.TrialTries(0) != b.TrialTries() || p.TrialTries(1) != 1 {
		t.Errorf("--board: %+v", p.Board)
	}
	p.Close()

	// A record on the image: its target, --slot refused.
	img = diskImage(t, f.v1, true)
	initImage(t, img, nil)
	if _, err := PlanImage(Image{Path: img, Trusted: f.trusted, Slot: "b"}); !errors.Is(err, ErrRequest) || !strings.Contains(err.Error(), "--slot applies to images without a boot record") {
		t.Errorf("--slot with a record: %v", err)
	}
	p, err = PlanImage(Image{Path: img, Trusted: f.trusted})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Slot != "b" || p.Active != "a" || p.Unrecorded != "" {
		t.Errorf("with a record: %+v", p)
	}
	// Run it: the record says b is being written, then on trial.
	res, err := p.Install(context.Background(), source.NewReaderAt(bytes.NewReader(f.b2), int64(len(f.b2)), "test"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Begun() || record(t, img).Installing != "b" {
		t.Errorf("after Install: begun %v, record %+v", p.Begun(), record(t, img))
	}
	if ok, err := p.Finish(res.Bundle.Header, p.TrialTries(0)); !ok || err != nil {
		t.Fatalf("Finish: %v, %v", ok, err)
	}
	r := record(t, img)
	if s, _ := r.Slot("b"); r.Trial != "b" || r.Installing != "" || s.Version != "2.0" || s.TriesLeft != boards.DefaultTrialTries {
		t.Errorf("after Finish: %+v", r)
	}
	if got := p.SlotState("2.0"); !strings.Contains(got, "slot b is on trial with version \"2.0\"") {
		t.Errorf("SlotState: %s", got)
	}
	// During the trial another install is refused at planning.
	if _, err := PlanImage(Image{Path: img, Trusted: f.trusted}); !errors.Is(err, bootenv.ErrRefused) {
		t.Errorf("during a trial: %v", err)
	}
	// Not a keel image.
	plain := filepath.Join(t.TempDir(), "plain.img")
	os.WriteFile(plain, make([]byte, 1<<20), 0o644)
	if _, err := PlanImage(Image{Path: plain, Trusted: f.trusted}); err == nil {
		t.Error("a disk without a GPT planned")
	}
}

// fakeDevice is a keel-booted device: partitions as files, the record in
// an efivars directory.
type fakeDevice struct {
	parts  map[string]string
	efi    string
	opened []string
}

func newFakeDevice(t *testing.T, f *planFixture, edit func(bootenv.Record) (bootenv.Record, error)) *fakeDevice {
	dir := t.TempDir()
	d := &fakeDevice{parts: map[string]string{}, efi: filepath.Join(dir, "efivars")}
	os.Mkdir(d.efi, 0o755)
	for _, s := range []string{"a", "b"} {
		for name, size := range map[string]int{layout.SlotPartition(s): pSlotSize, layout.RootPartition(s): pRootSize} {
			b := make([]byte, size)
			switch name {
			case "slot-a":
				copy(b, container(t, f.v1))
			case "root-a":
				copy(b, f.v1.Root)
			}
			d.parts[name] = filepath.Join(dir, name)
			if err := os.WriteFile(d.parts[name], b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := d.store(t)
	defer s.Close()
	r, err := bootenv.Init(nil, "a")
	if err == nil && edit != nil {
		r, err = edit(r)
	}
	if err == nil {
		err = s.Commit(r)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *fakeDevice) store(t *testing.T) *bootstore.Store {
	s, err := bootstore.Open(bootstore.Location{EFIVars: d.efi})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (d *fakeDevice) device(t *testing.T, trusted []manifest.PublicKey, floor int64) Device {
	return Device{Running: "a", Trusted: trusted, Store: d.store(t),
		OpenPartition: func(name string, names []string) (*os.File, int64, error) {
			if !slices.Contains(names, name) {
				t.Errorf("opened %s, not among %v", name, names)
			}
			d.opened = append(d.opened, name)
			fh, err := os.OpenFile(d.parts[name], os.O_RDWR, 0)
			if err != nil {
				return nil, 0, err
			}
			st, _ := fh.Stat()
			return fh, st.Size(), nil
		},
		Floor: func() (int64, error) { return floor, nil }}
}

// TestPlanDevice: on the running device the target is the record's, never
// the running slot; the running slot must verify and names the board;
// the anti-rollback counter joins the policy; a refusal opens nothing.
func TestPlanDevice(t *testing.T) {
	f := newPlanFixture(t)
	d := newFakeDevice(t, f, nil)
	p, err := PlanDevice(d.device(t, f.trusted, 2))
	if err != nil {
		t.Fatal(err)
	}
	if p.Slot != "b" || p.Active != "a" || p.Blocks == nil || p.Board.Name != bundletest.Board || p.Unrecorded != "" {
		t.Errorf("plan: %+v", p)
	}
	if want := []string{"slot-a", "root-a", "slot-b", "root-b"}; !slices.Equal(d.opened, want) {
		t.Errorf("opened %v, want %v", d.opened, want)
	}
	if err := p.Check(older("3.0", 1)); !errors.Is(err, bootenv.ErrRefused) || !strings.Contains(err.Error(), "anti-rollback counter 2") {
		t.Errorf("below the counter: %v", err)
	}
	if err := p.Check(older("3.0", 2)); err != nil {
		t.Errorf("newer: %v", err)
	}
	p.Close()

	_, otherKeys := bundletest.Keys(t, "not ours")
	for _, c := range []struct {
		name   string
		edit   func(bootenv.Record) (bootenv.Record, error)
		dev    func(*Device)
		want   string
		is     error
		opened bool
	}{
		{"another board", nil, func(dv *Device) { dv.Board = "other" }, "--board other, but the running slot is for " + bundletest.Board, ErrRequest, true},
		{"untrusted running slot", nil, func(dv *Device) { dv.Trusted = otherKeys }, "the running slot a does not verify with the trusted keys", nil, true},
		{"no TPM answer", nil, func(dv *Device) { dv.Floor = func() (int64, error) { return 0, errors.New("TPM busy") } }, "install: TPM busy", nil, true},
		{"b on trial", func(r bootenv.Record) (bootenv.Record, error) { return bootenv.Try(r, "b", 1, bootenv.NewID()) }, nil, "every slot is active, on trial or running", bootenv.ErrRefused, false},
		{"recovery requested", func(r bootenv.Record) (bootenv.Record, error) { return bootenv.RequestRecovery(r, "test") }, nil, "recovery is requested", bootenv.ErrRefused, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newFakeDevice(t, f, c.edit)
			dv := d.device(t, f.trusted, 0)
			if c.dev != nil {
				c.dev(&dv)
			}
			p, err := PlanDevice(dv)
			if err == nil {
				p.Close()
				t.Fatalf("planned: %+v", p)
			}
			if !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Errorf("%v; want %q (%v)", err, c.want, c.is)
			}
			if (len(d.opened) > 0) != c.opened {
				t.Errorf("opened %v", d.opened)
			}
		})
	}
}
