package vmtests

import (
	"bytes"
	"os"
	"testing"

	"github.com/keelboot/keel/builder/image/imagetest"
	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/secureboot"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// TestOVMFVars: a machine whose variable store was enrolled offline, on
// the host (keel secureboot ovmf-vars, from the artefacts' enrolment
// files, into the machine's copy of Debian's empty OVMF_VARS_4M.fd before
// its first power-on), enforces Secure Boot from its first boot, with no
// enrolment boot:
//
//  1. keel-init says Secure Boot is on; in slot a keel secureboot status
//     says secure boot on, setup mode off, and the kernel is in lockdown.
//     PCR 7 is what keel pcr predict --secure-boot predicts from the same
//     enrolment files (the value an online enrolment gives: the firmware
//     measured the same SecureBoot, PK, KEK, db and absent dbx), the
//     firmware's event log replays to it, and keel's db certificate is the
//     one authority that verified the UKI.
//  2. An unsigned UKI on the ESP: the firmware refuses to start it.
func TestOVMFVars(t *testing.T) {
	m := newMachine(t, map[string]vmkit.SlotSpec{"a": {Version: "1.0", SecurityVersion: 1}})
	m.SecureBoot = true
	enrol := artefacts(t).Enrolment
	out := hostKeel(t, "secureboot", "ovmf-vars", "--enrolment", enrol, "--in", m.Vars, "-o", m.Vars)
	mustContain(t, "keel secureboot ovmf-vars", out, "wrote "+m.Vars)
	checkEnrolledStore(t, m.Vars)
	pred := (&vendor{dir: t.TempDir()}).predict(t, m, "--secure-boot", enrol)
	want := pcrLines(pred)

	// 1. The first power-on.
	r := m.powerOn(2 * bootTimeout)
	r.expect("Secure Boot: on; slot kernels must be signed by db")
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Fatalf("slot a booted in mode %s", mode)
	}
	st := r.secureBootState()
	for _, s := range []string{"secure boot: on", "setup mode: off", "kernel lockdown: integrity"} {
		mustContain(t, "keel secureboot status on the first boot", st, s)
	}
	if got := r.pcrs(); got["7"] != want["7"] {
		t.Errorf("PCR 7 %s, predicted from the enrolment files %s", got["7"], want["7"])
	}
	checkFirmwareLog(t, r, want["7"])
	log7 := r.pcrLog7()
	mustContain(t, "PCR 7 events", log7, "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: [1] 01")
	mustContain(t, "PCR 7 events", log7, `X.509 "CN=keel vmtest db" (owner 51743a4b-2c12-487e-bd4e-b0105fdb8961)`)
	r.powerOff()

	// 2. An unsigned UKI.
	if err := imagetest.UnsignUKI(m.Disk); err != nil {
		t.Fatal(err)
	}
	r = m.powerOn(bootTimeout)
	r.expect("Access Denied")
	r.r.Kill()
}

// checkEnrolledStore checks on the host that the variable store file the
// CLI wrote is what secureboot.OVMFVars makes of the board's template and
// holds keel's PK, KEK and db and SecureBootEnable.
func checkEnrolledStore(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := secureboot.OVMFVars(artefacts(t).Board.QEMU.Vars, artefacts(t).Enrolment, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s differs from secureboot.OVMFVars of the board's template", path)
	}
	s, err := secureboot.ParseVarStore(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		name string
		guid uefi.GUID
	}{
		{secureboot.PK, uefi.GlobalVariableGUID()},
		{secureboot.KEK, uefi.GlobalVariableGUID()},
		{secureboot.DB, uefi.ImageSecurityDatabaseGUID()},
		{"SecureBootEnable", secureboot.SecureBootEnableDisableGUID},
	} {
		if _, ok := s.Lookup(v.name, v.guid); !ok {
			t.Fatalf("%s: no %s", path, v.name)
		}
	}
}
