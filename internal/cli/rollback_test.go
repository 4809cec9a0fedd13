package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/swtpmtest"
)

// TestRollback: an update commits, then `keel rollback` makes the old
// slot active in one commit, and back again; refusals write nothing.
func TestRollback(t *testing.T) {
	cfg := envConfig(t, true)
	k := func(args ...string) result { return keel(t, append([]string{"-c", cfg}, args...)...) }
	k("init", "--active", "a").ok(t)
	k("rollback").fails(t, ExitUsage, "no good slot besides")
	k("try", "b", "--tries", "3").ok(t)
	k("rollback").fails(t, ExitUsage, "is on trial")
	if got := strings.TrimSpace(k("select", "--commit").ok(t).stdout); got != "b" {
		t.Fatalf("trial boot: %q", got)
	}
	k("mark-good").ok(t)
	gen := status(t, "-c", cfg).Generation
	out := k("rollback").ok(t).stdout
	if !strings.Contains(out, "from slot b to slot a") {
		t.Errorf("rollback said %q", out)
	}
	s := status(t, "-c", cfg)
	if *s.Active != "a" || s.Generation != gen+1 || s.Slots["b"].State != "good" {
		t.Fatalf("after rollback: %+v", s)
	}
	if got := strings.TrimSpace(k("select").ok(t).stdout); got != "a" {
		t.Errorf("the next boot takes %q, want a", got)
	}
	k("rollback", "b").fails(t, ExitUsage, "usage")
	k("rollback").ok(t)
	if s := status(t, "-c", cfg); *s.Active != "b" {
		t.Fatalf("after the second rollback: %+v", s)
	}
}

// floorDevice is a fake keel-booted device running slot b (version 3.0,
// security version 3) with slot a good (version 1.0, security version 1),
// and a swtpm whose anti-rollback floor is floor (none: no TPM).
func floorDevice(t *testing.T, floor int) (*fakeDevice, Deps, *int) {
	f := newUpdateFixture(t)
	d := newFakeDevice(t, f)
	v3 := *f.v2
	v3.Version, v3.SecurityVersion = "3.0", 3
	bundletest.Seal(t, &v3, f.key)
	part, err := os.OpenFile(d.parts[layout.SlotPartition("b")], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.WriteAt(slotContainer(t, &v3), 0); err != nil {
		t.Fatal(err)
	}
	part.Close()
	deps := d.deps(t, nil)
	deps.Cmdline = func() (string, error) {
		return "console=ttyS0 keel.slot=b keel.mode=normal keel.secver=3 keel.store=efivars", nil
	}
	opened := new(int)
	if floor >= 0 {
		sw := swtpmtest.Start(t, "")
		if _, err := tpm.EnsureCounter(sw.TPM(), tpm.CounterIndex); err != nil {
			t.Fatal(err)
		}
		if got, err := tpm.AdvanceTo(sw.TPM(), tpm.CounterIndex, uint64(floor)); err != nil || got != uint64(floor) {
			t.Fatalf("AdvanceTo(%d) = %d, %v", floor, got, err)
		}
		deps.OpenTPM = func() (transport.TPMCloser, error) { *opened++; return nopCloser{sw.TPM()}, nil }
	} else {
		deps.OpenTPM = func() (transport.TPMCloser, error) { *opened++; return nil, fmt.Errorf("TPM: %w", fs.ErrNotExist) }
	}
	off := []string{"--efivars", d.efi}
	keelDeps(t, deps, append(off, "init", "--active", "a")...).ok(t)
	keelDeps(t, deps, append(off, "try", "b", "--version", "3.0", "--security-version", "3")...).ok(t)
	keelDeps(t, deps, append(off, "select", "--commit")...).ok(t)
	keelDeps(t, deps, "mark-good").ok(t)
	return d, deps, opened
}

// TestRollbackBelowFloor: on a keel-booted device, `keel rollback` and
// `keel set-active` refuse a slot whose verified security version is below
// the TPM's anti-rollback floor (keel-init would refuse to boot it and mark
// it bad), before anything is written; at the floor it is allowed; without
// a TPM it goes ahead with a warning (keel-init checks at boot); offline
// (--efivars) nothing is checked and the TPM is not opened.
func TestRollbackBelowFloor(t *testing.T) {
	t.Run("floor 3 refuses slot a at 1", func(t *testing.T) {
		d, deps, _ := floorDevice(t, 3)
		gen := statusOf(t, deps).Generation
		keelDeps(t, deps, "rollback").fails(t, ExitUsage, "slot a holds version 1.0 with security version 1, below this device's anti-rollback counter 3")
		keelDeps(t, deps, "set-active", "a").fails(t, ExitUsage, "below this device's anti-rollback counter 3")
		if s := statusOf(t, deps); s.Generation != gen || *s.Active != "b" {
			t.Errorf("a refused rollback wrote the record: %+v", s)
		}
		// Offline the record is only edited: no TPM, no check.
		opened := 0
		deps.OpenTPM = func() (transport.TPMCloser, error) { opened++; return nil, errors.New("offline opened the TPM") }
		keelDeps(t, deps, "--efivars", d.efi, "rollback").ok(t)
		if opened != 0 {
			t.Errorf("offline rollback opened the TPM %d times", opened)
		}
	})
	t.Run("floor 1 allows slot a at 1", func(t *testing.T) {
		_, deps, opened := floorDevice(t, 1)
		out := keelDeps(t, deps, "rollback").ok(t).stdout
		if !strings.Contains(out, "from slot b to slot a") || *opened != 1 {
			t.Errorf("rollback: %q, TPM opened %d times", out, *opened)
		}
		if s := statusOf(t, deps); *s.Active != "a" {
			t.Errorf("after rollback: %+v", s)
		}
	})
	t.Run("no TPM", func(t *testing.T) {
		_, deps, _ := floorDevice(t, -1)
		r := keelDeps(t, deps, "rollback").ok(t)
		if !strings.Contains(r.stderr, "anti-rollback counter") {
			t.Errorf("no warning without a TPM: %q", r.stderr)
		}
	})
}

func statusOf(t *testing.T, deps Deps) statusOut {
	t.Helper()
	var s statusOut
	if err := json.Unmarshal([]byte(keelDeps(t, deps, "status", "--json").ok(t).stdout), &s); err != nil {
		t.Fatal(err)
	}
	return s
}
