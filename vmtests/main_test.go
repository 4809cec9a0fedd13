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
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/internal/vmkit"
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

// machine is one scenario's device: a disk and a UEFI variable store that
// persist across the boots (QEMU runs) of the scenario.
type machine struct {
	t    *testing.T
	art  *vmkit.Artefacts
	dir  string
	disk string
	vars string
}

func newMachine(t *testing.T, slots map[string]vmkit.SlotSpec) *machine {
	t.Helper()
	art := artefacts(t)
	dir := t.TempDir()
	m := &machine{t: t, art: art, dir: dir, disk: filepath.Join(dir, "disk.img"), vars: filepath.Join(dir, "OVMF_VARS.fd")}
	if err := art.Disk(context.Background(), m.disk, slots, nil); err != nil {
		t.Fatalf("building the disk: %v", err)
	}
	if err := vmkit.CopyVars(art.Board, m.vars); err != nil {
		t.Fatal(err)
	}
	return m
}

// run is one power-on of the machine: QEMU runs until the guest powers off
// (reboots stay inside the run, as on a device), or the timeout.
type run struct {
	m    *machine
	vm   *qemu.VM
	stop func()
}

const bootTimeout = 3 * time.Minute

func (m *machine) powerOn(timeout time.Duration) *run {
	m.t.Helper()
	sock, stop, err := vmkit.StartTPM(context.Background(), m.dir)
	if err != nil {
		m.t.Fatal(err)
	}
	vm := qemu.StartT(m.t, m.t.Name(), qemu.ArchUseEnvv,
		qemu.WithQEMUCommand(m.art.Board.QEMU.Binary),
		qemu.WithKernel(""), qemu.WithInitramfs(""),
		qemu.WithQEMUArgs(vmkit.QEMUArgs(m.art.Board, m.disk, m.vars, sock)...),
		qemu.WithVMTimeout(timeout),
	)
	r := &run{m: m, vm: vm, stop: stop}
	m.t.Cleanup(func() {
		// After a failure: stop the machine so that its console output
		// ends before the test does.
		if !vm.Waited() {
			vm.Kill()
			vm.Wait()
		}
		stop()
	})
	return r
}

// expect waits for s on the console.
func (r *run) expect(s string) string {
	r.m.t.Helper()
	out, err := r.vm.Console.Expect(expect.String(s), expect.WithTimeout(bootTimeout))
	if err != nil {
		r.m.t.Fatalf("waiting for %q: %v", s, err)
	}
	return out
}

// expectRe waits for a regular expression and returns its submatches.
func (r *run) expectRe(re *regexp.Regexp) []string {
	r.m.t.Helper()
	out, err := r.vm.Console.Expect(expect.Regexp(re), expect.WithTimeout(bootTimeout))
	if err != nil {
		r.m.t.Fatalf("waiting for %s: %v", re, err)
	}
	return re.FindStringSubmatch(out)
}

func (r *run) send(line string) {
	r.m.t.Helper()
	if _, err := r.vm.Console.SendLine(line); err != nil {
		r.m.t.Fatalf("console: %v", err)
	}
}

// keel runs a keel command in the booted slot and checks its exit code.
func (r *run) keel(args string, wantRC int) {
	r.m.t.Helper()
	r.expect("KEEL-READY")
	r.send("keel " + args)
	m := r.expectRe(regexp.MustCompile(`KEEL-DONE rc=(\d+)\r*\n`))
	if m[1] != fmt.Sprint(wantRC) {
		r.m.t.Fatalf("keel %s: rc=%s, want %d", args, m[1], wantRC)
	}
}

type slotStatus struct {
	State     string `json:"state"`
	TriesLeft int    `json:"tries_left"`
	Version   string `json:"version"`
	Reason    string `json:"reason"`
}

type status struct {
	Active     *string               `json:"active"`
	Trial      *string               `json:"trial"`
	Generation uint64                `json:"generation"`
	Slots      map[string]slotStatus `json:"slots"`
	LastBoot   struct {
		Slot, Mode, Reason string
	} `json:"last_boot"`
}

// status asks the booted slot for `keel status --json`.
func (r *run) status() status {
	r.m.t.Helper()
	r.expect("KEEL-READY")
	r.send("status")
	m := r.expectRe(regexp.MustCompile(`KEEL-STATUS (\{[^\r\n]*\})\r*\n`))
	var s status
	if err := json.Unmarshal([]byte(m[1]), &s); err != nil {
		r.m.t.Fatalf("status: %v in %q", err, m[1])
	}
	return s
}

// booted waits for a slot to come up and returns its mode.
func (r *run) booted(slot, version string) string {
	r.m.t.Helper()
	m := r.expectRe(regexp.MustCompile(`KEEL-SLOT (\S+) (\S+) mode=(\S+)\r*\n`))
	if m[1] != slot || m[2] != version {
		r.m.t.Fatalf("booted slot %s version %s, want slot %s version %s", m[1], m[2], slot, version)
	}
	return m[3]
}

func (r *run) reboot() {
	r.m.t.Helper()
	r.expect("KEEL-READY")
	r.send("reboot")
}

// powerOff ends the run and waits for QEMU.
func (r *run) powerOff() {
	r.m.t.Helper()
	r.expect("KEEL-READY")
	r.send("poweroff")
	r.wait()
}

func (r *run) wait() {
	r.m.t.Helper()
	err := r.vm.Wait()
	r.stop()
	if err != nil {
		r.m.t.Fatalf("QEMU: %v", err)
	}
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
func reLine(s string) *regexp.Regexp {
	return regexp.MustCompile(`[^\r\n]*` + regexp.QuoteMeta(s) + `[^\r\n]*\r*\n`)
}
