package vmtests

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/keelboot/keel/vmtests/vmkit"
)

func withSeed(slots map[string]vmkit.SlotSpec, seed vmkit.SlotSpec) map[string]vmkit.SlotSpec {
	slots[vmkit.RecoverySeed] = seed
	return slots
}

// Issue 5, scenario 1: no bootable slot -> recovery reinstalls a from the
// seed and boots it; a file written on data before is intact.
func TestRecoveryNoBootableSlot(t *testing.T) {
	t.Parallel()
	m := newMachine(t, withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	}, vmkit.SlotSpec{Version: "0.9-seed", SecurityVersion: 1}))
	r := m.powerOn(3 * bootTimeout)
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.dataPut("precious")
	r.keel("mark-bad a --reason broken-by-test", 0)
	r.reboot()
	r.expect("decision: recovery")
	r.expect("recovery seed verified")
	r.expect("KEEL-PROGRESS reinstall slot a 100%")
	r.expect("KEEL-RECOVERED slot a")
	if mode := r.booted("a", "0.9-seed"); mode != "recovery" {
		t.Errorf("reinstalled a booted in mode %s, want recovery", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	if got := r.dataGet(); got != "precious" {
		t.Errorf("data after recovery: %q, want the file written before", got)
	}
	s := r.status()
	if deref(s.Active) != "a" || s.Slots["a"].State != "good" || s.Slots["a"].Version != "0.9-seed" {
		t.Errorf("after recovery: %+v", s)
	}
	mustContain(t, "status", s.Raw, `"last_recovery":"20`)
	r.powerOff()
}

// Issue 5, scenarios 2 and 3: `keel recover` from a healthy slot reinstalls
// and boots, data kept; `keel recover --factory-reset` also empties data.
func TestRecoveryRequestedAndFactoryReset(t *testing.T) {
	t.Parallel()
	m := newMachine(t, withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1},
	}, vmkit.SlotSpec{Version: "0.9-seed", SecurityVersion: 1}))
	r := m.powerOn(4 * bootTimeout)
	r.booted("a", "1.0")
	r.dataPut("keep-me")
	r.keel("recover", 0)
	r.reboot()
	r.expect("recovery requested")
	// a is the only good slot (b was never booted): recovery rewrites b.
	r.expect("KEEL-RECOVERED slot b")
	r.booted("b", "0.9-seed")
	if got := r.dataGet(); got != "keep-me" {
		t.Errorf("data after recovery: %q", got)
	}
	r.keel("recover --factory-reset", 0)
	r.reboot()
	r.expect("factory reset: re-creating the data filesystem")
	// Both good now, b active: recovery rewrites a, the one not active.
	r.expect("KEEL-RECOVERED slot a")
	r.booted("a", "0.9-seed")
	if got := r.dataGet(); got != "" {
		t.Errorf("data after a factory reset: %q, want empty", got)
	}
	r.powerOff()
}

// Issue 5, scenario 4: a tampered seed and both slots broken: a clear halt,
// and the slots are not touched.
func TestRecoveryTamperedSeed(t *testing.T) {
	t.Parallel()
	m := newMachine(t, withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1, UnknownKey: true},
		"b": {Version: "2.0", SecurityVersion: 1, CorruptKernel: true},
	}, vmkit.SlotSpec{Version: "0.9-seed", SecurityVersion: 1, CorruptKernel: true}))
	before := m.partitions(t, "slot-a", "root-a", "slot-b", "root-b")
	r := m.powerOn(bootTimeout)
	r.expect("RECOVERY SEED DOES NOT VERIFY")
	r.expect("nothing was written")
	why := r.expectRe(reLine("NO BOOTABLE SLOT"))
	mustContain(t, "halt message", why[0], "RECOVERY FAILED")
	r.expect("powering off")
	r.wait()
	after := m.partitions(t, "slot-a", "root-a", "slot-b", "root-b")
	for name := range before {
		if !bytes.Equal(before[name], after[name]) {
			t.Errorf("partition %s changed although the seed did not verify", name)
		}
	}
}

// Issue 5, scenario 5: QEMU is killed in the middle of the reinstall; the
// next power-on resumes it, completes recovery and boots.
func TestRecoveryPowerCut(t *testing.T) {
	t.Parallel()
	m := newMachine(t, withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	}, vmkit.SlotSpec{Version: "0.9-seed", SecurityVersion: 1}))
	r := m.powerOn(2 * bootTimeout)
	r.booted("a", "1.0")
	r.keel("mark-bad a --reason broken-by-test", 0)
	r.reboot()
	r.expectRe(regexp.MustCompile(`KEEL-PROGRESS reinstall slot a +[1-9][0-9]%`))
	r.r.Kill() // the power cut, in the middle of the rewrite
	r2 := m.powerOn(2 * bootTimeout)
	r2.expect("resuming the reinstall of slot a")
	r2.expect("KEEL-RECOVERED slot a")
	if mode := r2.booted("a", "0.9-seed"); mode != "recovery" {
		t.Errorf("mode %s", mode)
	}
	r2.powerOff()
}

// partitions reads the named partitions of the machine's disk.
func (m *machine) partitions(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range names {
		out[n] = readPartition(t, m.Disk, n)
	}
	return out
}

// dataPut writes a text file on the data partition from the booted slot.
func (r *run) dataPut(text string) {
	r.t.Helper()
	r.expect("KEEL-READY")
	r.check(r.r.Send("data put " + text))
	r.expect("KEEL-DATA " + text)
}

// dataGet reads it back ("" when the file is not there).
func (r *run) dataGet() string {
	r.t.Helper()
	r.expect("KEEL-READY")
	r.check(r.r.Send("data get"))
	m := r.expectRe(reData)
	if m[1] == "-ERROR" {
		r.t.Fatalf("data get: %s", m[2])
	}
	return m[2]
}
