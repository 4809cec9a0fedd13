package tpm

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/tpm/swtpmtest"
)

// keelInit is what keel-init does with the counter at each boot: make
// sure it exists, advance it on a normal boot of a committed slot
// (advance > 0), write-lock it and disable the platform hierarchy before
// the handoff. It returns the state EnsureCounter reported.
func keelInit(t *testing.T, tp transport.TPM, advance uint64) CounterState {
	t.Helper()
	st, err := EnsureCounter(tp, CounterIndex)
	if err != nil {
		t.Fatalf("EnsureCounter: %v", err)
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
	return st
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

func floor(t *testing.T, tp transport.TPM) uint64 {
	t.Helper()
	v, err := ReadCounter(tp, CounterIndex)
	if err != nil {
		t.Fatalf("ReadCounter: %v", err)
	}
	return v
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

func osUndefine(tp transport.TPM, auth tpm2.TPMHandle) error {
	_, err := tpm2.NVUndefineSpace{AuthHandle: osAuth(auth, 0, tp),
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: osName(tp, CounterIndex)}}.Execute(tp)
	return err
}

func osIncrement(tp transport.TPM, auth tpm2.TPMHandle, index uint32) error {
	_, err := tpm2.NVIncrement{AuthHandle: osAuth(auth, index, tp),
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: osName(tp, index)}}.Execute(tp)
	return err
}

func osWrite(tp transport.TPM, auth tpm2.TPMHandle) error {
	_, err := tpm2.NVWrite{AuthHandle: osAuth(auth, CounterIndex, tp),
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: osName(tp, CounterIndex)},
		Data:    tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, 8)}}.Execute(tp)
	return err
}

func osDefine(tp transport.TPM, index uint32, a tpm2.TPMANV) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(index), NameAlg: tpm2.TPMAlgSHA256, Attributes: a, DataSize: 8}),
	}.Execute(tp)
	return err
}

func osClear(tp transport.TPM) error {
	_, err := tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}.Execute(tp)
	return err
}

func TestCounter(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	if _, err := ReadCounter(sw.TPM(), CounterIndex); !errors.Is(err, ErrNoCounter) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading an undefined counter: %v", err)
	}
	st, err := EnsureCounter(sw.TPM(), CounterIndex)
	if err != nil || st.Hierarchy != HierarchyPlatform || !st.Created || st.Floor != 0 || st.Tampered != "" {
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
	// Unlocked, the owner still cannot increment it (no OWNERWRITE).
	if err := osIncrement(sw.TPM(), tpm2.TPMRHOwner, CounterIndex); !errors.Is(err, tpm2.TPMRCNVAuthorization) {
		t.Errorf("owner increment: %v; want TPM_RC_NV_AUTHORIZATION", err)
	}
	if err := LockCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatal(err)
	}
	if _, err = AdvanceTo(sw.TPM(), CounterIndex, 6); !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Fatalf("AdvanceTo after the lock: %v; want TPM_RC_NV_LOCKED", err)
	}

	// A TPM reset (reboot) keeps the value and lifts the lock.
	sw.Restart()
	if st, err = EnsureCounter(sw.TPM(), CounterIndex); err != nil || st.Floor != 5 || st.Created {
		t.Fatalf("EnsureCounter after restart: %+v, %v", st, err)
	}
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 6); err != nil || v != 6 {
		t.Fatalf("AdvanceTo(6) after restart = %d, %v", v, err)
	}
}

// TestCounterSurvivesPowerCut: a power cut between TPM2_NV_DefineSpace
// and the first increment leaves an unwritten counter: it reads floor 0,
// and the next EnsureCounter writes it.
func TestCounterSurvivesPowerCut(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	if _, err := defineCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatal(err)
	}
	if v := floor(t, sw.TPM()); v != 0 {
		t.Fatalf("unwritten counter: floor %d", v)
	}
	if _, err := AdvanceTo(sw.TPM(), CounterIndex, 2); err == nil {
		t.Fatal("AdvanceTo advanced an unwritten counter")
	}
	st, err := EnsureCounter(sw.TPM(), CounterIndex)
	if err != nil || st.Floor != 0 || st.Created || st.Tampered != "" {
		t.Fatalf("EnsureCounter = %+v, %v", st, err)
	}
	pub, _, _ := readNVPublic(sw.TPM(), CounterIndex)
	if !pub.Attributes.Written {
		t.Fatal("EnsureCounter left the counter unwritten")
	}
}

// TestCounterMigratesLegacy: the counter of keel before issue 11 (owner
// hierarchy, OWNERWRITE, its value the floor) is replaced by keel's, with
// the same floor: the TPM starts the new counter one above the old one.
func TestCounterMigratesLegacy(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	tp := sw.TPM()
	legacy := CounterPublic(CounterIndex, hierarchyLegacy)
	if err := osDefine(tp, CounterIndex, legacy.Attributes); err != nil {
		t.Fatal(err)
	}
	if v := floor(t, tp); v != 0 {
		t.Fatalf("unwritten legacy counter: floor %d", v)
	}
	for range 4 {
		if err := osIncrement(tp, tpm2.TPMRHOwner, CounterIndex); err != nil {
			t.Fatal(err)
		}
	}
	if v := floor(t, tp); v != 4 {
		t.Fatalf("legacy counter at 4: floor %d", v)
	}
	st := keelInit(t, tp, 0)
	if !st.Migrated || !st.Created || st.Floor != 4 || st.Hierarchy != HierarchyPlatform || st.Tampered != "" {
		t.Fatalf("migration: %+v", st)
	}
	sw.Restart()
	if st := keelInit(t, sw.TPM(), 0); st.Floor != 4 || st.Created {
		t.Fatalf("after migration: %+v", st)
	}
}

// TestCounterAttacks runs what root in the OS can try against the counter
// after keel-init advanced and locked it (and disabled the platform
// hierarchy), then boots again (a TPM reset and keel-init) and checks the
// floor.
func TestCounterAttacks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		firmware bool // firmware disabled the platform hierarchy: owner counter
		attack   func(t *testing.T, tp transport.TPM)
		// after the next boot
		wantFloor   func(v uint64) bool
		wantTamper  string
		wantCreated bool
	}{
		{
			name: "platform/undefine",
			attack: func(t *testing.T, tp transport.TPM) {
				// Part 3 §31.4: POLICY_DELETE refuses TPM2_NV_UndefineSpace
				// whoever asks.
				if err := osUndefine(tp, tpm2.TPMRHOwner); !errors.Is(err, tpm2.TPMRCAttributes) {
					t.Errorf("owner undefine: %v; want TPM_RC_ATTRIBUTES", err)
				}
				if err := osUndefine(tp, tpm2.TPMRHPlatform); !errors.Is(err, tpm2.TPMRCHierarchy) {
					t.Errorf("platform undefine: %v; want TPM_RC_HIERARCHY", err)
				}
				_, err := tpm2.NVUndefineSpaceSpecial{
					NVIndex:  tpm2.NamedHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: osName(tp, CounterIndex)},
					Platform: tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)},
				}.Execute(tp)
				if err == nil {
					t.Error("TPM2_NV_UndefineSpaceSpecial succeeded")
				}
			},
			wantFloor: func(v uint64) bool { return v == 5 },
		},
		{
			name: "platform/clear",
			attack: func(t *testing.T, tp transport.TPM) {
				// TPM2_Clear removes owner indices only (Part 3 §24.6).
				if err := osClear(tp); err != nil {
					t.Fatalf("TPM2_Clear: %v", err)
				}
			},
			wantFloor: func(v uint64) bool { return v == 5 },
		},
		{
			name: "platform/increment",
			attack: func(t *testing.T, tp transport.TPM) {
				// No OWNERWRITE or PPWRITE: Part 3 §31.8 refuses them.
				// The lock is checked before the authorization (Part 3
				// §31.8): NV_LOCKED here; TestCounter shows the owner
				// refused on an unlocked counter.
				if err := osIncrement(tp, tpm2.TPMRHOwner, CounterIndex); !errors.Is(err, tpm2.TPMRCNVLocked) {
					t.Errorf("owner increment: %v; want TPM_RC_NV_LOCKED", err)
				}
				if err := osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex); !errors.Is(err, tpm2.TPMRCNVLocked) {
					t.Errorf("increment with the index's auth: %v; want TPM_RC_NV_LOCKED", err)
				}
			},
			wantFloor: func(v uint64) bool { return v == 5 },
		},
		{
			name: "platform/write",
			attack: func(t *testing.T, tp transport.TPM) {
				if err := osWrite(tp, tpm2.TPMHandle(CounterIndex)); !errors.Is(err, tpm2.TPMRCNVLocked) && !errors.Is(err, tpm2.TPMRCAttributes) {
					t.Errorf("NV_Write with the index's auth: %v; want TPM_RC_NV_LOCKED or TPM_RC_ATTRIBUTES", err)
				}
				if err := osWrite(tp, tpm2.TPMRHOwner); err == nil {
					t.Error("NV_Write with owner auth succeeded")
				}
			},
			wantFloor: func(v uint64) bool { return v == 5 },
		},
		{
			name: "platform/squat",
			attack: func(t *testing.T, tp transport.TPM) {
				if err := osDefine(tp, CounterIndex, tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, AuthRead: true, NoDA: true}); !errors.Is(err, tpm2.TPMRCNVDefined) {
					t.Errorf("defining another index at the handle: %v; want TPM_RC_NV_DEFINED", err)
				}
			},
			wantFloor: func(v uint64) bool { return v == 5 },
		},
		{
			name:     "owner/undefine",
			firmware: true,
			attack: func(t *testing.T, tp transport.TPM) {
				// The residual of an owner counter: the owner deletes it.
				if err := osUndefine(tp, tpm2.TPMRHOwner); err != nil {
					t.Fatalf("owner undefine: %v", err)
				}
			},
			// Re-created one above: the floor rises by one, never falls.
			wantFloor:   func(v uint64) bool { return v == 6 },
			wantTamper:  "was missing and re-created",
			wantCreated: true,
		},
		{
			name:     "owner/clear",
			firmware: true,
			attack: func(t *testing.T, tp transport.TPM) {
				if err := osClear(tp); err != nil {
					t.Fatalf("TPM2_Clear: %v", err)
				}
			},
			wantFloor:   func(v uint64) bool { return v == 6 },
			wantTamper:  "was missing and re-created",
			wantCreated: true,
		},
		{
			name:     "owner/increment",
			firmware: true,
			attack: func(t *testing.T, tp transport.TPM) {
				// The lock is checked before the authorization (Part 3
				// §31.8): NV_LOCKED here; TestCounter shows the owner
				// refused on an unlocked counter.
				if err := osIncrement(tp, tpm2.TPMRHOwner, CounterIndex); !errors.Is(err, tpm2.TPMRCNVLocked) {
					t.Errorf("owner increment: %v; want TPM_RC_NV_LOCKED", err)
				}
				if err := osIncrement(tp, tpm2.TPMHandle(CounterIndex), CounterIndex); !errors.Is(err, tpm2.TPMRCNVLocked) {
					t.Errorf("increment with the index's auth: %v; want TPM_RC_NV_LOCKED", err)
				}
				if err := osWrite(tp, tpm2.TPMHandle(CounterIndex)); err == nil {
					t.Error("NV_Write succeeded")
				}
			},
			wantFloor: func(v uint64) bool { return v == 5 },
		},
		{
			name:     "owner/re-create as an owner-written counter at 1",
			firmware: true,
			attack: func(t *testing.T, tp transport.TPM) {
				if err := osUndefine(tp, tpm2.TPMRHOwner); err != nil {
					t.Fatalf("owner undefine: %v", err)
				}
				// A squatter that reads 1 with keel's index auth, could it
				// pass for keel's: its attributes differ.
				if err := osDefine(tp, CounterIndex, tpm2.TPMANV{NT: tpm2.TPMNTCounter, AuthWrite: true, OwnerWrite: true, AuthRead: true, OwnerRead: true, PPRead: true, NoDA: true, WriteSTClear: true}); err != nil {
					t.Fatal(err)
				}
			},
			wantFloor:   func(v uint64) bool { return v >= 5 },
			wantTamper:  "was not keel's anti-rollback counter",
			wantCreated: true,
		},
		{
			name:     "owner/re-create as the legacy counter",
			firmware: true,
			attack: func(t *testing.T, tp transport.TPM) {
				if err := osUndefine(tp, tpm2.TPMRHOwner); err != nil {
					t.Fatalf("owner undefine: %v", err)
				}
				// keel's counter of before issue 11, unwritten: it reads 0.
				if err := osDefine(tp, CounterIndex, CounterPublic(CounterIndex, hierarchyLegacy).Attributes); err != nil {
					t.Fatal(err)
				}
			},
			wantFloor:   func(v uint64) bool { return v == 6 },
			wantTamper:  "was migrated, and the TPM started the new one at floor 6",
			wantCreated: true,
		},
		{
			name:     "owner/inflate then undefine",
			firmware: true,
			attack: func(t *testing.T, tp transport.TPM) {
				// The residual risk: a counter of the OS's own, driven
				// high and deleted, raises the TPM's maxCount; keel's
				// re-created counter starts above it.
				const mine = CounterIndex + 0x100
				if err := osDefine(tp, mine, tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, NoDA: true}); err != nil {
					t.Fatal(err)
				}
				for range 40 {
					if err := osIncrement(tp, tpm2.TPMRHOwner, mine); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := (tpm2.NVUndefineSpace{AuthHandle: osAuth(tpm2.TPMRHOwner, 0, tp),
					NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(mine), Name: osName(tp, mine)}}).Execute(tp); err != nil {
					t.Fatal(err)
				}
				if err := osUndefine(tp, tpm2.TPMRHOwner); err != nil {
					t.Fatal(err)
				}
			},
			wantFloor:   func(v uint64) bool { return v == 40 },
			wantTamper:  "was missing and re-created",
			wantCreated: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			if tc.firmware {
				firmwareDisablesPlatform(t, sw.TPM())
			}
			st := keelInit(t, sw.TPM(), 5)
			want := HierarchyPlatform
			if tc.firmware {
				want = HierarchyOwner
			}
			if st.Hierarchy != want || st.Floor != 5 {
				t.Fatalf("first boot: %+v", st)
			}
			tc.attack(t, sw.TPM())
			// The OS cannot raise it in this boot either.
			if !tc.wantCreated {
				if v := floor(t, sw.TPM()); v != 5 {
					t.Errorf("floor %d after the attack, before the reboot", v)
				}
			}
			sw.Restart()
			if tc.firmware {
				firmwareDisablesPlatform(t, sw.TPM())
			}
			st = keelInit(t, sw.TPM(), 0)
			if !tc.wantFloor(st.Floor) || st.Created != tc.wantCreated {
				t.Errorf("next boot: %+v", st)
			}
			if tc.wantTamper == "" && st.Tampered != "" || !strings.Contains(st.Tampered, tc.wantTamper) {
				t.Errorf("tampering reported %q, want %q", st.Tampered, tc.wantTamper)
			}
			if st.Tampered != "" {
				t.Logf("reported: %s", st.Tampered)
			}
			// A slot with security version 3 stays refused.
			if st.Floor <= 3 {
				t.Errorf("floor %d admits security version 3", st.Floor)
			}
			// keel-init advances it again after the reset.
			if st.Hierarchy != want {
				t.Errorf("hierarchy %s, want %s", st.Hierarchy, want)
			}
			sw.Restart()
			if tc.firmware {
				firmwareDisablesPlatform(t, sw.TPM())
			}
			if got := keelInit(t, sw.TPM(), st.Floor+2); got.Floor != st.Floor+2 {
				t.Errorf("advancing after the attack: %+v", got)
			}
		})
	}
}

// TestCounterSquatter: an index at the handle that is not keel's,
// defined before keel-init ever ran (the OS on a new TPM), is removed and
// replaced; the floor is at least the squatter's count (the TPM starts the
// new counter above it).
func TestCounterSquatter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs tpm2.TPMANV
		incs  int
	}{
		{"ordinary", tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, OwnerRead: true, AuthRead: true, AuthWrite: true, NoDA: true}, 0},
		{"counter at 9", tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, WriteSTClear: true}, 9},
		{"keel's but DA-protected", func() tpm2.TPMANV {
			a := CounterPublic(CounterIndex, HierarchyOwner).Attributes
			a.NoDA = false
			return a
		}(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := swtpmtest.Start(t, "")
			tp := sw.TPM()
			if err := osDefine(tp, CounterIndex, tc.attrs); err != nil {
				t.Fatal(err)
			}
			for range tc.incs {
				if err := osIncrement(tp, tpm2.TPMRHOwner, CounterIndex); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := ReadCounter(tp, CounterIndex); !errors.Is(err, ErrCounterSquatted) {
				t.Errorf("ReadCounter on a squatter: %v", err)
			}
			st, err := EnsureCounter(tp, CounterIndex)
			if err != nil || !st.Created || !strings.Contains(st.Tampered, "not keel's") || st.Floor < uint64(tc.incs) || st.Hierarchy != HierarchyPlatform {
				t.Fatalf("EnsureCounter = %+v, %v", st, err)
			}
		})
	}
}

// TestCounterPublic: the platform counter's delete policy is
// TPM2_PolicyCommandCode(TPM2_NV_UndefineSpaceSpecial) (Part 3 §23.11).
func TestCounterPublic(t *testing.T) {
	var in []byte
	in = append(in, make([]byte, 32)...)
	in = binary.BigEndian.AppendUint32(in, 0x16C)
	in = binary.BigEndian.AppendUint32(in, 0x11F)
	want := tpm2.TPMAlgSHA256
	h, _ := want.Hash()
	d := h.New()
	d.Write(in)
	if got := CounterPublic(CounterIndex, HierarchyPlatform).AuthPolicy.Buffer; string(got) != string(d.Sum(nil)) {
		t.Errorf("delete policy %x", got)
	}
	if CounterPublic(CounterIndex, HierarchyOwner).Attributes.OwnerWrite {
		t.Error("the owner can write keel's counter")
	}
}
