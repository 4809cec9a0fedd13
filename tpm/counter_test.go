package tpm

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/tpm/swtpmtest"
)

// keelInit is what keel-init does with the counter at each boot, before
// anything is measured: settle it, advance it on a normal boot of a
// committed slot (advance > 0), write-lock it and disable the platform
// hierarchy; then the handoff: PCR 8 is extended (the separator). It
// returns the state EnsureCounter reported.
func keelInit(t *testing.T, tp transport.TPM, advance uint64) CounterState {
	t.Helper()
	st, err := EnsureCounter(tp, CounterIndex)
	if err != nil {
		t.Fatalf("EnsureCounter: %v", err)
	}
	if len(st.Warnings) > 0 {
		t.Errorf("EnsureCounter warnings: %q", st.Warnings)
	}
	if advance > 0 {
		if st.Floor, err = AdvanceTo(tp, CounterIndex, advance); err != nil {
			t.Fatalf("AdvanceTo(%d): %v", advance, err)
		}
	}
	if err := LockCounter(tp, CounterIndex); err != nil {
		t.Fatalf("LockCounter: %v", err)
	}
	if st.Hierarchy == HierarchyPlatform {
		if ok, err := DisablePlatformHierarchy(tp); !ok {
			t.Fatalf("DisablePlatformHierarchy: %v", err)
		}
	}
	handoff(t, tp)
	return st
}

// handoff extends PCR 8 as keel-init's measurements and separator do.
func handoff(t *testing.T, tp transport.TPM) {
	t.Helper()
	m, err := NewMeasurer(tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Separator(m); err != nil {
		t.Fatal(err)
	}
}

// firmwareDisablesPlatform is firmware that disables the platform
// hierarchy before keel-init runs (as UEFI firmware may): keel's counter
// then lives in the owner hierarchy.
func firmwareDisablesPlatform(t *testing.T, tp transport.TPM) {
	t.Helper()
	if ok, err := DisablePlatformHierarchy(tp); !ok {
		t.Fatalf("DisablePlatformHierarchy: %v", err)
	}
}

// reboot is a TPM reset and the firmware; owner: the firmware takes the
// platform hierarchy away.
func reboot(t *testing.T, sw *swtpmtest.SWTPM, owner bool) transport.TPM {
	t.Helper()
	sw.Restart()
	if owner {
		firmwareDisablesPlatform(t, sw.TPM())
	}
	return sw.TPM()
}

func floor(t *testing.T, tp transport.TPM) uint64 {
	t.Helper()
	v, err := ReadCounter(tp, CounterIndex)
	if err != nil {
		t.Fatalf("ReadCounter: %v", err)
	}
	return v
}

// rawCount is the counter's value, read as anyone can.
func rawCount(t *testing.T, tp transport.TPM, index uint32) uint64 {
	t.Helper()
	s, err := readState(tp, index)
	if err != nil || !s.written() {
		t.Fatalf("reading %#08x: %+v, %v", index, s, err)
	}
	return binary.BigEndian.Uint64(s.value)
}

// What the OS (root, empty owner and lockout authorization) tries.

func osName(tp transport.TPM, index uint32) tpm2.TPM2BName {
	if rsp, err := (tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}).Execute(tp); err == nil {
		return rsp.NVName
	}
	return tpm2.TPM2BName{}
}

func osAuth(h tpm2.TPMHandle, index uint32, tp transport.TPM) tpm2.AuthHandle {
	a := tpm2.AuthHandle{Handle: h, Auth: tpm2.PasswordAuth(nil)}
	if uint32(h) == index {
		a.Name = osName(tp, index)
	}
	return a
}

func osUndefine(tp transport.TPM, auth tpm2.TPMHandle, index uint32) error {
	_, err := tpm2.NVUndefineSpace{AuthHandle: osAuth(auth, 0, tp),
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: osName(tp, index)}}.Execute(tp)
	return err
}

// osIncrement increments with a password session: the owner's or the
// index's own empty authValue.
func osIncrement(tp transport.TPM, auth tpm2.TPMHandle, index uint32) error {
	_, err := tpm2.NVIncrement{AuthHandle: osAuth(auth, index, tp),
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: osName(tp, index)}}.Execute(tp)
	return err
}

// osPolicyWrite is the OS's best try at keel's write policy: TPM2_PolicyPCR
// with keel's expected digest (PCR 8 all zero), and, that failing,
// TPM2_PolicyPCR with the current PCR 8 followed by the command (write: an
// NV_Write of 8 or 16 bytes; else an NV_Increment). Both errors are
// returned.
func osPolicyWrite(tp transport.TPM, index uint32, write bool) (policyPCR, command error) {
	try := func(digest []byte) (error, error) {
		sess, done, err := tpm2.PolicySession(tp, tpm2.TPMAlgSHA256, 16)
		if err != nil {
			return err, nil
		}
		defer done()
		pcr, _ := pcr8Zero().policyPCR()
		pcr.PcrDigest.Buffer = digest
		pcr.PolicySession = sess.Handle()
		if _, err := pcr.Execute(tp); err != nil {
			return err, nil
		}
		if pub, _, err := readNVPublic(tp, index); err == nil && pub.Attributes.PolicyDelete {
			tpm2.PolicyOr{PolicySession: sess.Handle(), PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{{Buffer: deletePolicy()}, {Buffer: writePolicy()}}}}.Execute(tp)
		}
		name := osName(tp, index)
		a := tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: sess}
		if write {
			_, err = tpm2.NVWrite{AuthHandle: a, NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
				Data: tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, recordSize)}}.Execute(tp)
		} else {
			_, err = tpm2.NVIncrement{AuthHandle: a, NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name}}.Execute(tp)
		}
		return nil, err
	}
	zero := sha256.Sum256(make([]byte, 32))
	policyPCR, _ = try(zero[:])
	_, command = try(nil)
	return policyPCR, command
}

func osWrite(tp transport.TPM, auth tpm2.TPMHandle, index uint32, data []byte) error {
	_, err := tpm2.NVWrite{AuthHandle: osAuth(auth, index, tp),
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: osName(tp, index)},
		Data:    tpm2.TPM2BMaxNVBuffer{Buffer: data}}.Execute(tp)
	return err
}

func osDefine(tp transport.TPM, pub tpm2.TPMSNVPublic) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(pub),
	}.Execute(tp)
	return err
}

func osClear(tp transport.TPM) error {
	_, err := tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}.Execute(tp)
	return err
}

// osInflate raises the TPM's highest count: a counter of the OS's own,
// incremented n times and deleted.
func osInflate(t *testing.T, tp transport.TPM, n int) {
	t.Helper()
	const mine = CounterIndex + 0x100
	if err := osDefine(tp, tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(mine), NameAlg: tpm2.TPMAlgSHA256, DataSize: 8,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, NoDA: true}}); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := osIncrement(tp, tpm2.TPMRHOwner, mine); err != nil {
			t.Fatal(err)
		}
	}
	if err := osUndefine(tp, tpm2.TPMRHOwner, mine); err != nil {
		t.Fatal(err)
	}
}

// osCounter is a counter public area the OS defines at keel's handle.
func osCounter(a tpm2.TPMANV, policy []byte) tpm2.TPMSNVPublic {
	a.NT = tpm2.TPMNTCounter
	return tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(CounterIndex), NameAlg: tpm2.TPMAlgSHA256, Attributes: a,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy}, DataSize: 8}
}

// incrementPolicy is TPM2_PolicyCommandCode(TPM_CC_NV_Increment): a write
// policy the OS can satisfy.
func incrementPolicy() []byte {
	h := sha256.New()
	h.Write(make([]byte, 32))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCPolicyCommandCode))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCNVIncrement))
	return h.Sum(nil)
}

func osPolicyIncrement(tp transport.TPM, index uint32) error {
	sess, done, err := tpm2.PolicySession(tp, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return err
	}
	defer done()
	if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCNVIncrement}).Execute(tp); err != nil {
		return err
	}
	name := osName(tp, index)
	_, err = tpm2.NVIncrement{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: sess},
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name}}.Execute(tp)
	return err
}

func TestCounter(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	if _, err := ReadCounter(sw.TPM(), CounterIndex); !errors.Is(err, ErrNoCounter) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading an undefined counter: %v", err)
	}
	st, err := EnsureCounter(sw.TPM(), CounterIndex)
	if err != nil || st.Hierarchy != HierarchyPlatform || !st.Created || st.Floor != 0 || st.Count != 1 || st.Tampered != "" || st.Warnings != nil {
		t.Fatalf("first EnsureCounter = %+v, %v", st, err)
	}
	if st, err = EnsureCounter(sw.TPM(), CounterIndex); err != nil || st.Created || st.Floor != 0 {
		t.Fatalf("second EnsureCounter = %+v, %v", st, err)
	}
	v, err := AdvanceTo(sw.TPM(), CounterIndex, 0)
	if err != nil || v != 0 {
		t.Fatalf("AdvanceTo(0) = %d, %v", v, err)
	}
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 3); err != nil || v != 3 {
		t.Fatalf("AdvanceTo(3) = %d, %v", v, err)
	}
	// Never decreases.
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 1); err != nil || v != 3 {
		t.Fatalf("AdvanceTo(1) = %d, %v; want 3", v, err)
	}
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 5); err != nil || v != 5 {
		t.Fatalf("AdvanceTo(5) = %d, %v", v, err)
	}
	if _, err = AdvanceTo(sw.TPM(), CounterIndex, 5+MaxAdvance+1); err == nil {
		t.Fatal("a huge jump was accepted")
	}
	// The counter and the record agree.
	if c := rawCount(t, sw.TPM(), CounterIndex); c != 6 {
		t.Errorf("counter %d, want 6", c)
	}
	if r, _ := parseRecord(func() []byte { s, _ := readState(sw.TPM(), RecordIndex); return s.value }()); r != (record{5, 6}) {
		t.Errorf("record %+v, want {5 6}", r)
	}
	if err := LockCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatal(err)
	}
	if _, err = AdvanceTo(sw.TPM(), CounterIndex, 6); !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Fatalf("AdvanceTo after the lock: %v; want TPM_RC_NV_LOCKED", err)
	}

	// A TPM reset (reboot) keeps the value and lifts the lock.
	sw.Restart()
	if st, err = EnsureCounter(sw.TPM(), CounterIndex); err != nil || st.Floor != 5 || st.Created || st.Tampered != "" {
		t.Fatalf("EnsureCounter after restart: %+v, %v", st, err)
	}
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 6); err != nil || v != 6 {
		t.Fatalf("AdvanceTo(6) after restart = %d, %v", v, err)
	}
	// After keel-init's first measurement nobody writes it, keel-init
	// included, locked or not.
	handoff(t, sw.TPM())
	if _, err = AdvanceTo(sw.TPM(), CounterIndex, 7); !errors.Is(err, ErrWriteWindowClosed) {
		t.Fatalf("AdvanceTo after PCR 8 moved: %v; want ErrWriteWindowClosed", err)
	}
	if v := floor(t, sw.TPM()); v != 6 {
		t.Errorf("floor %d, want 6", v)
	}
}

// TestCounterWritePolicy: after keel-init's handoff (PCR 8 extended), and
// without the write lock, nothing the OS can present writes keel's
// counter or floor record, in either hierarchy: the owner (no OWNERWRITE),
// the index's empty authValue (no AUTHWRITE), keel's policy (PCR 8 is not
// zero), a policy of the current PCRs.
func TestCounterWritePolicy(t *testing.T) {
	for _, owner := range []bool{false, true} {
		t.Run(map[bool]string{false: "platform", true: "owner"}[owner], func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			tp := sw.TPM()
			if owner {
				firmwareDisablesPlatform(t, tp)
			}
			st, err := EnsureCounter(tp, CounterIndex)
			if err != nil || st.Hierarchy != map[bool]Hierarchy{false: HierarchyPlatform, true: HierarchyOwner}[owner] {
				t.Fatalf("EnsureCounter = %+v, %v", st, err)
			}
			if _, err := AdvanceTo(tp, CounterIndex, 5); err != nil {
				t.Fatal(err)
			}
			handoff(t, tp) // no LockCounter
			for _, index := range []uint32{CounterIndex, RecordIndex} {
				write := index == RecordIndex
				if err := osIncrement(tp, tpm2.TPMRHOwner, index); !errors.Is(err, tpm2.TPMRCNVAuthorization) && !errors.Is(err, tpm2.TPMRCAttributes) {
					t.Errorf("%#08x: owner increment: %v; want TPM_RC_NV_AUTHORIZATION", index, err)
				}
				if err := osIncrement(tp, tpm2.TPMHandle(index), index); !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
					t.Errorf("%#08x: increment with the index's authValue: %v; want TPM_RC_AUTH_UNAVAILABLE", index, err)
				}
				if err := osWrite(tp, tpm2.TPMHandle(index), index, make([]byte, 16)); !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
					t.Errorf("%#08x: write with the index's authValue: %v; want TPM_RC_AUTH_UNAVAILABLE", index, err)
				}
				if err := osWrite(tp, tpm2.TPMRHOwner, index, make([]byte, 16)); !errors.Is(err, tpm2.TPMRCNVAuthorization) && !errors.Is(err, tpm2.TPMRCAttributes) {
					t.Errorf("%#08x: write with owner auth: %v", index, err)
				}
				pcrErr, cmdErr := osPolicyWrite(tp, index, write)
				if !errors.Is(pcrErr, tpm2.TPMRCValue) {
					t.Errorf("%#08x: TPM2_PolicyPCR(PCR 8 = 0): %v; want TPM_RC_VALUE", index, pcrErr)
				}
				if !errors.Is(cmdErr, tpm2.TPMRCPolicyFail) {
					t.Errorf("%#08x: write under a policy of the current PCR 8: %v; want TPM_RC_POLICY_FAIL", index, cmdErr)
				}
				// NV_WriteLock is a write too (Part 3 §31.11).
				_, err := tpm2.NVWriteLock{AuthHandle: osAuth(tpm2.TPMHandle(index), index, tp),
					NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: osName(tp, index)}}.Execute(tp)
				if !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
					t.Errorf("%#08x: write lock with the index's authValue: %v", index, err)
				}
			}
			if v := floor(t, tp); v != 5 {
				t.Errorf("floor %d after the attempts, want 5", v)
			}
			// Nor can the OS define an index of keel's layout that reads
			// as written (Part 3 §31.3).
			pub := RecordPublic(RecordIndex+0x100, HierarchyOwner)
			pub.Attributes.Written = true
			if err := osDefine(tp, pub); !errors.Is(err, tpm2.TPMRCAttributes) {
				t.Errorf("defining a written record: %v; want TPM_RC_ATTRIBUTES", err)
			}
			tp = reboot(t, sw, owner)
			if st := keelInit(t, tp, 0); st.Floor != 5 || st.Tampered != "" || st.Created {
				t.Errorf("next boot: %+v", st)
			}
		})
	}
}

// TestCounterAttacks runs what root in the OS can try against the counter
// and the floor record after keel-init set the floor to 5, locked them,
// disabled the platform hierarchy and handed over (PCR 8 extended), then
// boots again (a TPM reset and keel-init) and checks the floor, the
// report, and that keel-init still advances it.
func TestCounterAttacks(t *testing.T) {
	type attack = func(t *testing.T, tp transport.TPM)
	// redefine: the OS deletes keel's counter and defines pub at its
	// handle, then tries to raise it 30 times every way it can.
	redefine := func(pub tpm2.TPMSNVPublic) attack {
		return func(t *testing.T, tp transport.TPM) {
			if err := osUndefine(tp, tpm2.TPMRHOwner, CounterIndex); err != nil {
				t.Fatalf("owner undefine: %v", err)
			}
			if err := osDefine(tp, pub); err != nil {
				t.Fatalf("define: %v", err)
			}
			raised := 0
			for range 30 {
				var errs []error
				for _, try := range []func() error{
					func() error { return osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex) },
					func() error { return osIncrement(tp, tpm2.TPMRHOwner, CounterIndex) },
					func() error { return osPolicyIncrement(tp, CounterIndex) },
					func() error { _, err := osPolicyWrite(tp, CounterIndex, false); return err },
				} {
					err := try()
					if err == nil {
						raised++
						break
					}
					errs = append(errs, err)
				}
				if len(errs) == 4 {
					t.Logf("the OS cannot raise its re-definition: %v", errors.Join(errs...))
					break
				}
			}
			t.Logf("the OS raised its re-definition %d times", raised)
		}
	}
	identical := func(t *testing.T, tp transport.TPM) {
		redefine(CounterPublic(CounterIndex, HierarchyOwner))(t, tp)
		// Its own definition is not write-locked, but still not writable.
		if err := osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex); !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
			t.Errorf("increment of the identical re-definition: %v; want TPM_RC_AUTH_UNAVAILABLE", err)
		}
		if _, err := osPolicyWrite(tp, CounterIndex, false); !errors.Is(err, tpm2.TPMRCPolicyFail) {
			t.Errorf("policy increment of the identical re-definition: %v; want TPM_RC_POLICY_FAIL", err)
		}
	}
	ownerAttrs := keelAttributes(HierarchyOwner)
	with := func(f func(*tpm2.TPMANV)) tpm2.TPMANV {
		a := ownerAttrs
		f(&a)
		return a
	}
	const tamperCounter = "the counter was deleted and re-created"
	const recorded = "the floor stays 5, the highest security version keel-init has advanced to"
	for _, tc := range []struct {
		name   string
		owner  bool // firmware disabled the platform hierarchy: owner counter
		attack attack
		// after the next boot
		wantFloor  uint64
		wantTamper []string
	}{
		{name: "platform/increment and write", attack: func(t *testing.T, tp transport.TPM) {
			// The lock is checked first for owner authorization (Part 3
			// §31.8); the index's authValue is refused at the
			// authorization (no AUTHWRITE): TPM_RC_AUTH_UNAVAILABLE.
			if err := osIncrement(tp, tpm2.TPMRHOwner, CounterIndex); !errors.Is(err, tpm2.TPMRCNVLocked) {
				t.Errorf("owner increment: %v; want TPM_RC_NV_LOCKED", err)
			}
			if err := osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex); !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
				t.Errorf("increment with the index's auth: %v; want TPM_RC_AUTH_UNAVAILABLE", err)
			}
			if _, err := osPolicyWrite(tp, CounterIndex, false); err == nil {
				t.Error("policy increment succeeded")
			}
			if err := osWrite(tp, tpm2.TPMHandle(RecordIndex), RecordIndex, make([]byte, 16)); err == nil {
				t.Error("record write succeeded")
			}
		}, wantFloor: 5},
		{name: "platform/undefine", attack: func(t *testing.T, tp transport.TPM) {
			for _, index := range []uint32{CounterIndex, RecordIndex} {
				// Part 3 §31.4: POLICY_DELETE refuses TPM2_NV_UndefineSpace
				// whoever asks.
				if err := osUndefine(tp, tpm2.TPMRHOwner, index); !errors.Is(err, tpm2.TPMRCAttributes) {
					t.Errorf("owner undefine %#08x: %v; want TPM_RC_ATTRIBUTES", index, err)
				}
				if err := osUndefine(tp, tpm2.TPMRHPlatform, index); !errors.Is(err, tpm2.TPMRCHierarchy) {
					t.Errorf("platform undefine %#08x: %v; want TPM_RC_HIERARCHY", index, err)
				}
				_, err := tpm2.NVUndefineSpaceSpecial{
					NVIndex:  tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: osName(tp, index)},
					Platform: tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)},
				}.Execute(tp)
				if err == nil {
					t.Errorf("TPM2_NV_UndefineSpaceSpecial(%#08x) succeeded", index)
				}
			}
		}, wantFloor: 5},
		{name: "platform/clear", attack: func(t *testing.T, tp transport.TPM) {
			// TPM2_Clear removes owner indices only (Part 3 §24.6).
			if err := osClear(tp); err != nil {
				t.Fatalf("TPM2_Clear: %v", err)
			}
		}, wantFloor: 5},
		{name: "platform/squat", attack: func(t *testing.T, tp transport.TPM) {
			for _, index := range []uint32{CounterIndex, RecordIndex} {
				pub := osCounter(tpm2.TPMANV{OwnerWrite: true, AuthRead: true, NoDA: true}, nil)
				pub.NVIndex = tpm2.TPMHandle(index)
				if err := osDefine(tp, pub); !errors.Is(err, tpm2.TPMRCNVDefined) {
					t.Errorf("defining another index at %#08x: %v; want TPM_RC_NV_DEFINED", index, err)
				}
			}
		}, wantFloor: 5},
		{name: "platform/inflate", attack: func(t *testing.T, tp transport.TPM) {
			// Without deleting keel's counter, a high count elsewhere
			// changes nothing.
			osInflate(t, tp, 40)
		}, wantFloor: 5},

		{name: "owner/increment and write", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osIncrement(tp, tpm2.TPMRHOwner, CounterIndex); !errors.Is(err, tpm2.TPMRCNVLocked) {
				t.Errorf("owner increment: %v; want TPM_RC_NV_LOCKED", err)
			}
			if err := osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex); !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
				t.Errorf("increment with the index's auth: %v; want TPM_RC_AUTH_UNAVAILABLE", err)
			}
			if _, err := osPolicyWrite(tp, CounterIndex, false); err == nil {
				t.Error("policy increment succeeded")
			}
			if _, err := osPolicyWrite(tp, RecordIndex, true); err == nil {
				t.Error("policy record write succeeded")
			}
		}, wantFloor: 5},
		// The attack of issue 19: identical public area, so keel-init's
		// whole-public-area check passes; the OS cannot raise it.
		{name: "owner/undefine, identical re-definition", owner: true, attack: identical,
			wantFloor: 5, wantTamper: []string{tamperCounter, recorded}},
		{name: "owner/undefine only", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osUndefine(tp, tpm2.TPMRHOwner, CounterIndex); err != nil {
				t.Fatal(err)
			}
		}, wantFloor: 5, wantTamper: []string{tamperCounter, recorded}},
		// The max-count inflation: a counter of the OS's own, driven high
		// (1 to 40: libtpms starts a new counter at the highest count of
		// a deleted one plus one) and deleted, then keel's deleted (and
		// re-defined identically): keel's re-created counter starts at
		// 41, the record keeps 5.
		{name: "owner/inflate, undefine, identical re-definition", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			osInflate(t, tp, 40)
			identical(t, tp)
		}, wantFloor: 5, wantTamper: []string{"reads 41", tamperCounter, recorded}},
		{name: "owner/inflate, undefine", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			osInflate(t, tp, 40)
			if err := osUndefine(tp, tpm2.TPMRHOwner, CounterIndex); err != nil {
				t.Fatal(err)
			}
		}, wantFloor: 5, wantTamper: []string{tamperCounter, recorded}},
		// Other definitions the OS can write: replaced, the record keeps
		// the floor.
		{name: "owner/re-definition with AUTHWRITE", owner: true, attack: redefine(osCounter(with(func(a *tpm2.TPMANV) { a.AuthWrite = true }), writePolicy())),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition with OWNERWRITE", owner: true, attack: redefine(osCounter(with(func(a *tpm2.TPMANV) { a.OwnerWrite = true }), writePolicy())),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition with the OS's policy", owner: true, attack: redefine(osCounter(ownerAttrs, incrementPolicy())),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition without WRITE_STCLEAR, the OS's policy", owner: true, attack: redefine(osCounter(with(func(a *tpm2.TPMANV) { a.WriteSTClear = false }), incrementPolicy())),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition without WRITE_STCLEAR", owner: true, attack: redefine(osCounter(with(func(a *tpm2.TPMANV) { a.WriteSTClear = false }), writePolicy())),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition with DA protection", owner: true, attack: redefine(osCounter(with(func(a *tpm2.TPMANV) { a.NoDA = false }), writePolicy())),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition as keel's issue-11 counter", owner: true, attack: redefine(v11Public(CounterIndex, HierarchyOwner)),
			wantFloor: 5, wantTamper: []string{"keel's counter of issue 11", "keel-init keeps the recorded floor 5", tamperCounter}},
		{name: "owner/re-definition as keel's legacy counter", owner: true, attack: redefine(legacyPublic(CounterIndex)),
			wantFloor: 5, wantTamper: []string{"owner-written counter of before issue 11", "keel-init keeps the recorded floor 5"}},
		{name: "owner/re-definition, another size", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			// A counter is 8 bytes (Part 3 §31.3): an ordinary index of 16
			// holding a record of the OS's choice.
			pub := tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(CounterIndex), NameAlg: tpm2.TPMAlgSHA256, DataSize: 16,
				Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthWrite: true, AuthRead: true, OwnerRead: true, PPRead: true, NoDA: true}}
			redefine(pub)(t, tp)
			if err := osWrite(tp, tpm2.TPMHandle(CounterIndex), CounterIndex, record{floor: 1, count: 2}.bytes()); err != nil {
				t.Fatal(err)
			}
		}, wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		{name: "owner/re-definition as keel's floor record", owner: true, attack: redefine(RecordPublic(CounterIndex, HierarchyOwner)),
			wantFloor: 5, wantTamper: []string{"was not keel's anti-rollback counter", recorded}},
		// The floor record.
		{name: "owner/record undefined", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osUndefine(tp, tpm2.TPMRHOwner, RecordIndex); err != nil {
				t.Fatal(err)
			}
		}, wantFloor: 5, wantTamper: []string{"floor record 0x01804b46 is missing", "the floor is the anti-rollback counter's 5"}},
		{name: "owner/record re-defined identically", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osUndefine(tp, tpm2.TPMRHOwner, RecordIndex); err != nil {
				t.Fatal(err)
			}
			if err := osDefine(tp, RecordPublic(RecordIndex, HierarchyOwner)); err != nil {
				t.Fatal(err)
			}
			if _, err := osPolicyWrite(tp, RecordIndex, true); !errors.Is(err, tpm2.TPMRCPolicyFail) {
				t.Errorf("writing the re-defined record: %v; want TPM_RC_POLICY_FAIL", err)
			}
			if err := osWrite(tp, tpm2.TPMHandle(RecordIndex), RecordIndex, record{0, 1}.bytes()); !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
				t.Errorf("writing the re-defined record: %v; want TPM_RC_AUTH_UNAVAILABLE", err)
			}
		}, wantFloor: 5, wantTamper: []string{"floor record 0x01804b46 is missing", "the floor is the anti-rollback counter's 5"}},
		{name: "owner/record replaced by a low one the OS writes", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osUndefine(tp, tpm2.TPMRHOwner, RecordIndex); err != nil {
				t.Fatal(err)
			}
			pub := RecordPublic(RecordIndex, HierarchyOwner)
			pub.Attributes.AuthWrite = true
			if err := osDefine(tp, pub); err != nil {
				t.Fatal(err)
			}
			if err := osWrite(tp, tpm2.TPMHandle(RecordIndex), RecordIndex, record{0, 1}.bytes()); err != nil {
				t.Fatal(err)
			}
		}, wantFloor: 5, wantTamper: []string{"floor record's handle, held something else", "the floor is the anti-rollback counter's 5"}},
		{name: "owner/record replaced by a high one the OS writes", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osUndefine(tp, tpm2.TPMRHOwner, RecordIndex); err != nil {
				t.Fatal(err)
			}
			pub := RecordPublic(RecordIndex, HierarchyOwner)
			pub.AuthPolicy.Buffer = nil
			pub.Attributes.PolicyWrite = false
			pub.Attributes.OwnerWrite = true
			if err := osDefine(tp, pub); err != nil {
				t.Fatal(err)
			}
			if err := osWrite(tp, tpm2.TPMRHOwner, RecordIndex, record{1000, 6}.bytes()); err != nil {
				t.Fatal(err)
			}
		}, wantFloor: 5, wantTamper: []string{"floor record's handle, held something else"}},
		// The residuals of an owner counter: both deleted.
		{name: "owner/clear", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			if err := osClear(tp); err != nil {
				t.Fatalf("TPM2_Clear: %v", err)
			}
		}, wantFloor: 6, wantTamper: []string{"was missing and re-created and keel's floor record 0x01804b46 is missing too", "the floor is 6"}},
		{name: "owner/inflate, undefine both", owner: true, attack: func(t *testing.T, tp transport.TPM) {
			osInflate(t, tp, 40)
			for _, index := range []uint32{CounterIndex, RecordIndex} {
				if err := osUndefine(tp, tpm2.TPMRHOwner, index); err != nil {
					t.Fatal(err)
				}
			}
		}, wantFloor: 40, wantTamper: []string{"was missing and re-created and keel's floor record 0x01804b46 is missing too", "the floor is 40"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			if tc.owner {
				firmwareDisablesPlatform(t, sw.TPM())
			}
			st := keelInit(t, sw.TPM(), 5)
			want := HierarchyPlatform
			if tc.owner {
				want = HierarchyOwner
			}
			if st.Hierarchy != want || st.Floor != 5 {
				t.Fatalf("first boot: %+v", st)
			}
			tc.attack(t, sw.TPM())
			tp := reboot(t, sw, tc.owner)
			st = keelInit(t, tp, 0)
			if st.Floor != tc.wantFloor || st.Hierarchy != want {
				t.Errorf("next boot: %+v; want floor %d", st, tc.wantFloor)
			}
			if len(tc.wantTamper) == 0 && st.Tampered != "" {
				t.Errorf("tampering reported: %q", st.Tampered)
			}
			for _, w := range tc.wantTamper {
				if !strings.Contains(st.Tampered, w) {
					t.Errorf("tampering reported %q, want %q in it", st.Tampered, w)
				}
			}
			if st.Tampered != "" {
				t.Logf("reported: %s", st.Tampered)
			}
			// What keel install reads is the floor keel-init enforces.
			if v := floor(t, tp); v != st.Floor {
				t.Errorf("ReadCounter %d, keel-init %d", v, st.Floor)
			}
			// Reported once: the boot after is clean.
			tp = reboot(t, sw, tc.owner)
			if again := keelInit(t, tp, st.Floor+2); again.Tampered != "" || again.Floor != st.Floor+2 {
				t.Errorf("the boot after: %+v; want floor %d, nothing reported", again, st.Floor+2)
			}
		})
	}
}

// TestCounterSquatter: an index at the counter's or the record's handle
// that is not keel's, defined before keel-init ever ran (the OS on a new
// TPM), is removed and replaced; the floor is at least the squatter's
// count (the TPM starts the new counter above it).
func TestCounterSquatter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		index uint32
		attrs tpm2.TPMANV
		incs  int
	}{
		{"ordinary", CounterIndex, tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, OwnerRead: true, AuthRead: true, AuthWrite: true, NoDA: true}, 0},
		{"counter at 9", CounterIndex, tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, WriteSTClear: true}, 9},
		{"keel's but DA-protected", CounterIndex, func() tpm2.TPMANV {
			a := CounterPublic(CounterIndex, HierarchyOwner).Attributes
			a.NoDA = false
			return a
		}(), 0},
		{"at the record's handle", RecordIndex, tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			tp := sw.TPM()
			pub := tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(tc.index), NameAlg: tpm2.TPMAlgSHA256, Attributes: tc.attrs, DataSize: 8}
			if tc.attrs.PolicyWrite {
				pub.AuthPolicy.Buffer = writePolicy()
			}
			if err := osDefine(tp, pub); err != nil {
				t.Fatal(err)
			}
			for range tc.incs {
				if err := osIncrement(tp, tpm2.TPMRHOwner, tc.index); err != nil {
					t.Fatal(err)
				}
			}
			if tc.index == CounterIndex {
				if _, err := ReadCounter(tp, CounterIndex); !errors.Is(err, ErrCounterSquatted) {
					t.Errorf("ReadCounter on a squatter: %v", err)
				}
			}
			st, err := EnsureCounter(tp, CounterIndex)
			if err != nil || !st.Created || !strings.Contains(st.Tampered, "held something else") && !strings.Contains(st.Tampered, "not keel's") || st.Floor < uint64(tc.incs) || st.Hierarchy != HierarchyPlatform {
				t.Fatalf("EnsureCounter = %+v, %v", st, err)
			}
			t.Logf("reported: %s", st.Tampered)
		})
	}
}

// TestCounterMigrates: a device in the field has keel's counter of
// issue 11 (written with its empty authValue; platform or owner) or of
// before (owner-written, its value the floor). keel-init writes the floor
// record first, then replaces the counter: the floor is the old one, the
// new counter's count is above the old value, and from then on the OS's
// identical re-definition cannot raise it.
func TestCounterMigrates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner bool
		pub   tpm2.TPMSNVPublic
		incs  int
		floor uint64
	}{
		{"issue 11, platform", false, v11Public(CounterIndex, HierarchyPlatform), 5, 4},
		{"issue 11, owner", true, v11Public(CounterIndex, HierarchyOwner), 5, 4},
		{"issue 11, owner, unwritten", true, v11Public(CounterIndex, HierarchyOwner), 0, 0},
		{"before issue 11", true, legacyPublic(CounterIndex), 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			tp := sw.TPM()
			if tc.owner {
				firmwareDisablesPlatform(t, tp)
			}
			if err := defineOld(tp, tc.pub, tc.incs); err != nil {
				t.Fatal(err)
			}
			if v := floor(t, tp); v != tc.floor {
				t.Fatalf("the old counter: floor %d, want %d", v, tc.floor)
			}
			st := keelInit(t, tp, 0)
			want := map[bool]Hierarchy{false: HierarchyPlatform, true: HierarchyOwner}[tc.owner]
			if !st.Migrated || !st.Created || st.Floor != tc.floor || st.Hierarchy != want || st.Tampered != "" || st.Count <= uint64(tc.incs) {
				t.Fatalf("migration: %+v", st)
			}
			if s, _ := readState(tp, CounterIndex); s.layout != layoutCounter {
				t.Errorf("after the migration the counter is %s", s.layout)
			}
			if tc.owner {
				identical := func() {
					if err := osUndefine(tp, tpm2.TPMRHOwner, CounterIndex); err != nil {
						t.Fatal(err)
					}
					if err := osDefine(tp, CounterPublic(CounterIndex, HierarchyOwner)); err != nil {
						t.Fatal(err)
					}
					if err := osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex); err == nil {
						t.Error("the OS incremented its identical re-definition")
					}
				}
				identical()
				tp = reboot(t, sw, tc.owner)
				if st := keelInit(t, tp, 0); st.Floor != tc.floor || st.Tampered == "" {
					t.Errorf("after the attack: %+v", st)
				}
			}
			tp = reboot(t, sw, tc.owner)
			if st := keelInit(t, tp, tc.floor+1); st.Floor != tc.floor+1 || st.Created || st.Tampered != "" {
				t.Fatalf("after migration: %+v", st)
			}
		})
	}
}

// defineOld defines an old layout as keel then did and increments it.
func defineOld(tp transport.TPM, pub tpm2.TPMSNVPublic, incs int) error {
	auth := tpm2.TPMRHOwner
	if pub.Attributes.PlatformCreate {
		auth = tpm2.TPMRHPlatform
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: tpm2.AuthHandle{Handle: auth, Auth: tpm2.PasswordAuth(nil)}, PublicInfo: tpm2.New2B(pub)}).Execute(tp); err != nil {
		return err
	}
	inc := tpm2.TPMHandle(CounterIndex)
	if pub.Attributes.OwnerWrite {
		inc = tpm2.TPMRHOwner
	}
	for range incs {
		if err := osIncrement(tp, inc, CounterIndex); err != nil {
			return err
		}
	}
	return nil
}

// cutTPM is a TPM whose power goes after n commands: every command from
// then on fails without reaching it.
type cutTPM struct {
	transport.TPM
	n int
}

var errPowerCut = errors.New("power cut")

func (c *cutTPM) Send(b []byte) ([]byte, error) {
	if c.n <= 0 {
		return nil, errPowerCut
	}
	c.n--
	return c.TPM.Send(b)
}

// TestCounterPowerCut cuts the power after every command of keel-init's
// counter work (a fresh TPM, each migration, an advance), boots again,
// and checks that the floor is never lower than before, never above what
// keel-init was setting, and that nothing is reported as tampering: the
// record is written before the old counter is removed (else a cut leaves
// neither, and the counter re-created one above) and before the counter
// is incremented (else a cut leaves the counter ahead of its record,
// which is what a re-created counter looks like). Both were checked to
// fail this test.
func TestCounterPowerCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner bool
		setup func(t *testing.T, tp transport.TPM) // before the boot that is cut
		// the boot that is cut: advance to this (0: none)
		advance uint64
		// the floor after it, cut or not: between low and high
		low, high uint64
	}{
		{name: "first boot", low: 0, high: 0},
		{name: "first boot, owner", owner: true, low: 0, high: 0},
		{name: "migration from issue 11, platform", low: 6, high: 6,
			setup: func(t *testing.T, tp transport.TPM) {
				if err := defineOld(tp, v11Public(CounterIndex, HierarchyPlatform), 7); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "migration from issue 11, owner", owner: true, low: 6, high: 6,
			setup: func(t *testing.T, tp transport.TPM) {
				if err := defineOld(tp, v11Public(CounterIndex, HierarchyOwner), 7); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "migration from before issue 11", owner: true, low: 3, high: 3,
			setup: func(t *testing.T, tp transport.TPM) {
				if err := defineOld(tp, legacyPublic(CounterIndex), 3); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "advance", low: 2, high: 9, advance: 9,
			setup: func(t *testing.T, tp transport.TPM) {
				if _, err := EnsureCounter(tp, CounterIndex); err != nil {
					t.Fatal(err)
				}
				if _, err := AdvanceTo(tp, CounterIndex, 2); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "advance, owner", owner: true, low: 2, high: 9, advance: 9,
			setup: func(t *testing.T, tp transport.TPM) {
				if _, err := EnsureCounter(tp, CounterIndex); err != nil {
					t.Fatal(err)
				}
				if _, err := AdvanceTo(tp, CounterIndex, 2); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every command outside -short (24 s); every fourth with it.
			step := 1
			if testing.Short() {
				step = 4
			}
			for n := 0; ; n += step {
				sw := swtpmtest.Start(t, "")
				tp := sw.TPM()
				if tc.owner {
					firmwareDisablesPlatform(t, tp)
				}
				if tc.setup != nil {
					tc.setup(t, tp)
					tp = reboot(t, sw, tc.owner)
				}
				cut := &cutTPM{TPM: tp, n: n}
				_, err := EnsureCounter(cut, CounterIndex)
				if err == nil && tc.advance > 0 {
					_, err = AdvanceTo(cut, CounterIndex, tc.advance)
				}
				complete := cut.n > 0 && err == nil
				tp = reboot(t, sw, tc.owner)
				st := keelInit(t, tp, 0)
				if st.Floor < tc.low || st.Floor > tc.high || st.Tampered != "" {
					t.Errorf("cut after %d commands: %+v; want floor %d..%d, nothing reported", n, st, tc.low, tc.high)
				}
				if complete && st.Floor != tc.high {
					t.Errorf("uncut (%d commands): floor %d, want %d", n, st.Floor, tc.high)
				}
				if s, _ := readState(tp, CounterIndex); s.layout != layoutCounter {
					t.Errorf("cut after %d commands: the counter is %s after the next boot", n, s.layout)
				}
				sw.Stop()
				if complete {
					t.Logf("%d commands, every cut survived", n)
					return
				}
				if n > 200 {
					t.Fatal("never completes")
				}
			}
		})
	}
}

// TestCounterAfterMeasurement: keel-init that finds PCR 8 already extended
// (something measured into it first: U-Boot's measured boot, a bug) cannot
// write; it still enforces the floor it can prove, with a warning, and
// fails only when there is none.
func TestCounterAfterMeasurement(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	handoff(t, sw.TPM())
	if _, err := EnsureCounter(sw.TPM(), CounterIndex); !errors.Is(err, ErrWriteWindowClosed) {
		t.Fatalf("EnsureCounter on a fresh TPM after PCR 8 moved: %v; want ErrWriteWindowClosed", err)
	}
	tp := reboot(t, sw, false)
	keelInit(t, tp, 4)
	tp = reboot(t, sw, false)
	// keel's counter is gone (a platform one cannot be: simulate with
	// the platform authorization, still enabled before keel-init).
	if err := osUndefineSpecial(tp); err != nil {
		t.Fatal(err)
	}
	handoff(t, tp)
	st, err := EnsureCounter(tp, CounterIndex)
	if err != nil || st.Floor != 4 || len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "could not be re-created") {
		t.Fatalf("EnsureCounter = %+v, %v", st, err)
	}
	t.Logf("warnings: %q", st.Warnings)
}

// osUndefineSpecial deletes keel's platform counter as only platform
// firmware could (the platform authorization and the delete branch).
func osUndefineSpecial(tp transport.TPM) error {
	s, err := readState(tp, CounterIndex)
	if err != nil {
		return err
	}
	sess, done, err := tpm2.PolicySession(tp, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return err
	}
	defer done()
	if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCNVUndefineSpaceSpecial}).Execute(tp); err != nil {
		return err
	}
	if _, err := (tpm2.PolicyOr{PolicySession: sess.Handle(), PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{{Buffer: deletePolicy()}, {Buffer: writePolicy()}}}}).Execute(tp); err != nil {
		return err
	}
	_, err = tpm2.NVUndefineSpaceSpecial{
		NVIndex:  tpm2.AuthHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: osName(tp, CounterIndex), Auth: sess},
		Platform: tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)},
	}.Execute(tp)
	if err != nil {
		return fmt.Errorf("%s: %w", s.layout, err)
	}
	return nil
}

// TestCounterOldKept: keel's issue-11 platform counter on a board whose
// firmware now takes the platform hierarchy away cannot be removed:
// keel-init keeps using it (warned), never below its floor, and advances
// it; once the platform hierarchy is back it is migrated.
func TestCounterOldKept(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	if err := defineOld(sw.TPM(), v11Public(CounterIndex, HierarchyPlatform), 4); err != nil {
		t.Fatal(err)
	}
	tp := reboot(t, sw, true)
	st, err := EnsureCounter(tp, CounterIndex)
	if err != nil || st.Floor != 3 || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "could not be migrated") {
		t.Fatalf("EnsureCounter = %+v, %v", st, err)
	}
	if v, err := AdvanceTo(tp, CounterIndex, 6); err != nil || v != 6 {
		t.Fatalf("AdvanceTo(6) = %d, %v", v, err)
	}
	if err := LockCounter(tp, CounterIndex); err != nil {
		t.Fatal(err)
	}
	tp = reboot(t, sw, true)
	if st, err := EnsureCounter(tp, CounterIndex); err != nil || st.Floor != 6 {
		t.Fatalf("the boot after = %+v, %v", st, err)
	}
	tp = reboot(t, sw, false)
	if st := keelInit(t, tp, 0); !st.Migrated || st.Floor != 6 || st.Tampered != "" || st.Hierarchy != HierarchyPlatform {
		t.Fatalf("platform hierarchy back: %+v", st)
	}
}

// TestCounterPublic: the policies are what Part 3 says for the commands
// keel runs (checked against go-tpm's policy calculator) and the counter
// is written under the policy only.
func TestCounterPublic(t *testing.T) {
	calc := func(cmds ...interface {
		Update(*tpm2.PolicyCalculator) error
	}) []byte {
		c, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range cmds {
			if err := cmd.Update(c); err != nil {
				t.Fatal(err)
			}
		}
		return c.Hash().Digest
	}
	zero := sha256.Sum256(make([]byte, 32))
	pcr := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: zero[:]},
		Pcrs: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0, 1, 0}}}}}
	if got, want := writePolicy(), calc(pcr); string(got) != string(want) {
		t.Errorf("write policy %x, want %x", got, want)
	}
	if got, want := deletePolicy(), calc(tpm2.PolicyCommandCode{Code: tpm2.TPMCCNVUndefineSpaceSpecial}); string(got) != string(want) {
		t.Errorf("delete policy %x, want %x", got, want)
	}
	or := tpm2.PolicyOr{PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{{Buffer: deletePolicy()}, {Buffer: writePolicy()}}}}
	if got, want := platformPolicy(), calc(or); string(got) != string(want) {
		t.Errorf("platform policy %x, want %x", got, want)
	}
	for _, h := range []Hierarchy{HierarchyPlatform, HierarchyOwner} {
		for _, p := range []tpm2.TPMSNVPublic{CounterPublic(CounterIndex, h), RecordPublic(RecordIndex, h)} {
			a := p.Attributes
			if a.AuthWrite || a.OwnerWrite || a.PPWrite || !a.PolicyWrite || !a.WriteSTClear || !a.AuthRead {
				t.Errorf("%s %#x: attributes %+v", h, p.NVIndex, a)
			}
			if l, got := classify(&p); got != h || l == notKeels {
				t.Errorf("%s %#x classified %s %s", h, p.NVIndex, l, got)
			}
		}
	}
}

func TestRecord(t *testing.T) {
	r := record{floor: 7, count: 1 << 40}
	got, err := parseRecord(r.bytes())
	if err != nil || got != r {
		t.Fatalf("%+v, %v", got, err)
	}
	if _, err := parseRecord(make([]byte, 8)); err == nil {
		t.Error("an 8-byte record parsed")
	}
}

// FuzzParseRecord: the floor record parses exactly the 16-byte
// encodings, and back.
func FuzzParseRecord(f *testing.F) {
	f.Add(record{floor: 5, count: 6}.bytes())
	f.Add([]byte{})
	f.Add(make([]byte, 17))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if (err == nil) != (len(b) == recordSize) {
			t.Fatalf("%d bytes: %v", len(b), err)
		}
		if err == nil && string(r.bytes()) != string(b) {
			t.Fatalf("%x -> %+v -> %x", b, r, r.bytes())
		}
	})
}
