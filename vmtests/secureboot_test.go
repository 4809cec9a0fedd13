package vmtests

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/keelboot/keel/builder/image/imagetest"
	"github.com/keelboot/keel/tpm/tcglog"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// secureBootState runs `keel secureboot status` in the booted slot.
func (r *run) secureBootState() string {
	r.t.Helper()
	rc, out, err := r.r.KeelOutput("secureboot status")
	r.check(err)
	if rc != 0 {
		r.t.Fatalf("keel secureboot status: rc=%d\n%s", rc, out)
	}
	return out
}

// pcrLog runs `keel pcr log --pcr 7` in the booted slot: the firmware's
// PCR 7 events as its event log in securityfs has them.
func (r *run) pcrLog7() string {
	r.t.Helper()
	rc, out, err := r.r.KeelOutput("pcr log --pcr 7")
	r.check(err)
	if rc != 0 {
		r.t.Fatalf("keel pcr log --pcr 7: rc=%d\n%s", rc, out)
	}
	return out
}

// pcrs reads PCR 7, 8 and 9 (sha256) in the booted slot: PCR 8/9 with the
// test init's pcrs command, 7 with keel pcr read --pcr 7.
func (r *run) pcrs() map[string]string {
	r.t.Helper()
	out, err := r.r.PCRs("sha256")
	r.check(err)
	got := pcrLines(out)
	v, err := r.r.PCRValue("sha256", 7)
	r.check(err)
	got["7"] = strings.ToUpper(hex.EncodeToString(v))
	return got
}

// TestSecureBoot is a device's life under UEFI Secure Boot, on the board's
// Secure Boot firmware (OVMF's secboot build, SMM on), with a secret
// sealed to PCR 7 (Secure Boot state and keys) and keel's PCR 8/9:
//
//  0. Provisioning, on the host: a secret is sealed on the machine's TPM;
//     the vendor predicts PCR 7 from keel's enrolment files (keel pcr
//     predict --secure-boot) and PCR 8/9 from slot a and the UKI, and signs
//     a policy over all three.
//  1. The factory step. The firmware starts in setup mode (no keys): it
//     boots keel's signed UKI without checking it. This is "Secure Boot
//     off": PCR 7 holds SecureBoot=0 and empty PK, KEK, db, dbx (keel pcr
//     log shows them), so the secret does not unseal although PCR 8/9 are
//     the predicted ones. The slot enrols keel's keys (keel secureboot
//     enroll, from the enrolment files in its root).
//  2. From the next boot the firmware enforces Secure Boot and the chain
//     still boots: the UKI passes the firmware's check, Debian's kernel
//     runs in lockdown, keel-init's kexec of slot a (its kernel signed
//     with the db key by the image builder) passes the kernel's signature
//     check. PCR 7 is the predicted value; the firmware's event log
//     replays to it and holds one EV_EFI_VARIABLE_AUTHORITY, keel's db
//     certificate; the secret unseals.
//  3. Slot b holds a kernel as Debian signed it (not by a key in db): tried,
//     keel-init refuses it before kexec, naming Secure Boot, and a boots.
//  4. An unsigned UKI on the ESP (an attacker with write access to the
//     disk): the firmware refuses to start it.
func TestSecureBoot(t *testing.T) {
	m := newMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1, VendorKernel: true},
	})
	m.SecureBoot = true

	// 0. Provisioning.
	const secret = "sealed-under-secure-boot"
	v := provision(t, m, secret)
	pred := v.predict(t, m, "--secure-boot", artefacts(t).Enrolment)
	want := pcrLines(pred)
	policy := v.signPolicy(t, pred, []string{"7", "8", "9"})

	// 1. Setup mode (Secure Boot off): no unsealing; enrol.
	r := m.powerOn(2 * bootTimeout)
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Fatalf("slot a booted in mode %s", mode)
	}
	st := r.secureBootState()
	mustContain(t, "status in setup mode", st, "secure boot: off")
	mustContain(t, "status in setup mode", st, "setup mode: on")
	log7 := r.pcrLog7()
	for _, s := range []string{
		"SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: [1] 00",
		"PK-8be4df61-93ca-11d2-aa0d-00e098032b8c: empty (absent)",
		"db-d719b2cb-3d3a-4596-a3bc-dad00e67656f: empty (absent)",
		"EV_SEPARATOR",
	} {
		mustContain(t, "PCR 7 events in setup mode", log7, s)
	}
	if strings.Contains(log7, "EV_EFI_VARIABLE_AUTHORITY") {
		t.Errorf("an authority event in setup mode (nothing was verified):\n%s", log7)
	}
	got := r.pcrs()
	if got["8"] != want["8"] || got["9"] != want["9"] {
		t.Fatalf("setup mode: PCR 8/9 %v, predicted %v: the unseal below would not test PCR 7", got, want)
	}
	if got["7"] == want["7"] {
		t.Fatalf("setup mode: PCR 7 %s is the value predicted for Secure Boot on", got["7"])
	}
	v.give(r, policy)
	r.keel(unsealCmd, 2)

	rc, out, err := r.r.KeelOutput("secureboot enroll " + vmkit.EnrolmentDir)
	r.check(err)
	if rc != 0 {
		t.Fatalf("keel secureboot enroll: rc=%d\n%s", rc, out)
	}
	mustContain(t, "enroll", out, "the firmware left setup mode")

	// 2. Enforced.
	r.reboot()
	r.expect("Secure Boot: on; slot kernels must be signed by db")
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Fatalf("slot a booted in mode %s", mode)
	}
	st = r.secureBootState()
	for _, want := range []string{"secure boot: on", "setup mode: off", "kernel lockdown: integrity"} {
		if !strings.Contains(st, want) {
			t.Fatalf("after enrolment: %q, want %q", st, want)
		}
	}
	if got := r.pcrs(); got["7"] != want["7"] || got["8"] != want["8"] || got["9"] != want["9"] {
		t.Errorf("Secure Boot on: PCRs %v, predicted %v", got, want)
	}
	checkFirmwareLog(t, r, want["7"])
	log7 = r.pcrLog7()
	mustContain(t, "PCR 7 events", log7, "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: [1] 01")
	mustContain(t, "PCR 7 events", log7, `EV_EFI_VARIABLE_AUTHORITY        `)
	mustContain(t, "PCR 7 events", log7, `X.509 "CN=keel vmtest db" (owner 51743a4b-2c12-487e-bd4e-b0105fdb8961)`)
	v.give(r, policy)
	r.unseals(secret)

	// 3. A slot kernel not signed by db.
	r.keel("try b", 0)
	r.reboot()
	r.expect(`would refuse to kexec this kernel (build the slot with secure_boot_keys: the image builder signs slot kernels with the db key): secureboot: the kernel is not signed by a key the firmware's db holds: its first signature is by "Debian Secure Boot Signer`)
	if mode := r.booted("a", "1.0"); mode != "fallback" {
		t.Fatalf("after b was refused: slot a in mode %s", mode)
	}
	s := r.status()
	mustContain(t, "last boot reason", s.LastBoot.Reason+" "+s.Raw, "Secure Boot")
	r.powerOff()

	// 4. An unsigned UKI.
	if err := imagetest.UnsignUKI(m.Disk); err != nil {
		t.Fatal(err)
	}
	r = m.powerOn(bootTimeout)
	r.expect("Access Denied")
	r.r.Kill()
}

// checkFirmwareLog carries the firmware's TCG event log off the booted
// slot and checks on the host that it parses, that its PCR 7 events replay
// to pcr7 (the predicted value, in hex) and that the firmware measured one
// authority: keel's db certificate, which verified the UKI.
func checkFirmwareLog(t *testing.T, r *run, pcr7 string) {
	t.Helper()
	b, err := r.r.FirmwareEventLog()
	r.check(err)
	l, err := tcglog.Parse(b)
	if err != nil {
		t.Fatalf("the firmware's event log: %v", err)
	}
	vals, err := l.Replay(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ToUpper(hex.EncodeToString(vals[tcglog.PCRSecureBoot])); got != pcr7 {
		t.Errorf("the firmware's log replays PCR 7 to %s, predicted %s", got, pcr7)
	}
	st, err := tcglog.EnrolledState(artefacts(t).Enrolment)
	if err != nil {
		t.Fatal(err)
	}
	var auth []tcglog.Event
	for _, e := range l.Filter(tcglog.PCRSecureBoot) {
		if e.Type == tcglog.EvEFIVariableAuthority {
			auth = append(auth, e)
		}
	}
	if len(auth) != 1 {
		t.Fatalf("%d authority events in PCR 7, want 1 (keel's db certificate)", len(auth))
	}
	vd, err := tcglog.ParseVariableData(auth[0].Data)
	if err != nil || vd.Name != "db" || !bytes.Equal(vd.Data, st.Authorities[0]) {
		t.Errorf("the authority event: %s (%v), want keel's db entry", tcglog.Describe(auth[0]), err)
	}
}
