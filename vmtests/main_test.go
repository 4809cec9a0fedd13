// Package vmtests proves keel's behaviour end to end: each scenario boots
// the qemu-x86_64-uefi board in QEMU (TCG) from a disk image through real
// firmware (OVMF, with the machine's own UEFI variable store) with a TPM
// emulator (swtpm) attached, across several real reboots, and reads the
// serial console. Artefacts (binaries, initramfs, kernel) are built once in
// TestMain; each scenario builds its own disk.
//
// Run with `make vmtest` (part of `make test`), which fetches the kernel
// and installs QEMU, OVMF and swtpm first. Nothing here skips: a missing
// tool is a failure.
package vmtests

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/format/gpt"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// suite holds what TestMain built.
type suite struct {
	art *vmkit.Artefacts
	err error
}

var built suite // set once in TestMain, read-only afterwards

func TestMain(m *testing.M) {
	os.Exit(func() int {
		root, err := vmkit.RepoRoot()
		if err != nil {
			built.err = err
			return m.Run()
		}
		b, err := boards.Get("qemu-x86_64-uefi")
		if err != nil {
			built.err = err
			return m.Run()
		}
		if err := vmkit.CheckTools(b); err != nil {
			built.err = err
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "keel-vmtests-")
		if err != nil {
			built.err = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		start := time.Now()
		built.art, built.err = vmkit.Build(context.Background(), root, dir, b, os.Stderr)
		fmt.Fprintf(os.Stderr, "vmtests: artefacts built in %s\n", time.Since(start).Round(time.Millisecond))
		return m.Run()
	}())
}

func artefacts(t *testing.T) *vmkit.Artefacts {
	t.Helper()
	if built.err != nil {
		t.Fatalf("building the VM artefacts: %v", built.err)
	}
	return built.art
}

// machine is one scenario's device (see vmkit.Machine).
type machine struct {
	t *testing.T
	*vmkit.Machine
}

func newMachine(t *testing.T, slots map[string]vmkit.SlotSpec) *machine {
	t.Helper()
	vm, err := vmkit.NewMachine(context.Background(), artefacts(t), t.TempDir(), slots)
	if err != nil {
		t.Fatal(err)
	}
	return &machine{t: t, Machine: vm}
}

// run is one power-on of the machine, failing the test on any error.
type run struct {
	t *testing.T
	r *vmkit.Run
}

const bootTimeout = 3 * time.Minute

func (m *machine) powerOn(timeout time.Duration) *run {
	m.t.Helper()
	r, err := m.PowerOn(context.Background(), timeout,
		qemu.LogSerialByLine(qemu.DefaultPrint(m.t.Name(), m.t.Logf)))
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(r.Kill) // after a failure: stop the machine before the test ends
	return &run{t: m.t, r: r}
}

func (r *run) check(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

// expect waits for s on the console.
func (r *run) expect(s string) string {
	r.t.Helper()
	out, err := r.r.Expect(s)
	r.check(err)
	return out
}

// expectRe waits for a regular expression and returns its submatches.
func (r *run) expectRe(re *regexp.Regexp) []string {
	r.t.Helper()
	m, err := r.r.ExpectRe(re)
	r.check(err)
	return m
}

// keel runs a keel command in the booted slot and checks its exit code.
func (r *run) keel(args string, wantRC int) {
	r.t.Helper()
	rc, err := r.r.Keel(args)
	r.check(err)
	if rc != wantRC {
		r.t.Fatalf("keel %s: rc=%d, want %d", args, rc, wantRC)
	}
}

// status asks the booted slot for `keel status --json`.
func (r *run) status() vmkit.Status {
	r.t.Helper()
	s, err := r.r.Status()
	r.check(err)
	return s
}

// booted waits for a slot to come up, checks which, and returns its mode.
func (r *run) booted(slot, version string) string {
	r.t.Helper()
	s, v, mode, err := r.r.Booted()
	r.check(err)
	if s != slot || v != version {
		r.t.Fatalf("booted slot %s version %s, want slot %s version %s", s, v, slot, version)
	}
	return mode
}

func (r *run) reboot() {
	r.t.Helper()
	r.check(r.r.Reboot())
}

// powerOff ends the run and waits for QEMU.
func (r *run) powerOff() {
	r.t.Helper()
	r.check(r.r.PowerOff())
}

// wait waits for the machine to power itself off.
func (r *run) wait() {
	r.t.Helper()
	r.check(r.r.Wait())
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

func mustContain(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s %q does not contain %q", what, s, sub)
	}
}

// reLine matches the console line that contains s.
func reLine(s string) *regexp.Regexp { return vmkit.Line(s) }

var reData = regexp.MustCompile(`KEEL-DATA(-NONE|-ERROR)? ?([^\r\n]*)\r*\n`)

// diskPartition returns the GPT partition name of the disk image disk.
func diskPartition(t testing.TB, disk, name string) gpt.Partition {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gpt.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tab.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readPartition returns the bytes of the partition name of the disk image
// disk.
func readPartition(t testing.TB, disk, name string) []byte {
	t.Helper()
	p := diskPartition(t, disk, name)
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, p.Size())
	if _, err := p.Section(f).ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
