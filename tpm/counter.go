package tpm

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// CounterIndex is keel's anti-rollback NV counter: an index in the TCG
// registry's owner range 0x01800000-0x01BFFFFF ("KE" in the low bytes).
// The TPM does not tie handle ranges to hierarchies: keel's counter keeps
// this handle when it is defined in the platform hierarchy.
const CounterIndex uint32 = 0x01804B45

// MaxAdvance bounds the increments one AdvanceTo may issue: security
// versions are small numbers, NV has finite write endurance.
const MaxAdvance = 1024

// ErrCounterSquatted says the NV index exists but is not keel's counter
// (its public area is not one keel defines) and keel could not replace it.
var ErrCounterSquatted = errors.New("NV index exists but is not keel's anti-rollback counter")

// ErrNoCounter says keel's counter is not defined (yet): it also matches
// io/fs.ErrNotExist.
var ErrNoCounter = fmt.Errorf("anti-rollback counter not defined: %w", iofs.ErrNotExist)

// Hierarchy says where keel's counter is defined.
type Hierarchy string

// The hierarchies keel's counter may live in (see the package doc).
const (
	// HierarchyPlatform: TPMA_NV_PLATFORMCREATE and TPMA_NV_POLICY_DELETE;
	// only TPM2_NV_UndefineSpaceSpecial with platform authorization
	// deletes it, and TPM2_Clear keeps it.
	HierarchyPlatform Hierarchy = "platform"
	// HierarchyOwner: the owner can delete it (TPM2_NV_UndefineSpace,
	// TPM2_Clear); keel-init notices and the TPM's counter rules keep
	// the floor from going down.
	HierarchyOwner Hierarchy = "owner"
	// hierarchyLegacy is the counter of keel before issue 11: owner
	// hierarchy, incremented with owner authorization, its value the
	// floor itself. keel-init migrates it.
	hierarchyLegacy Hierarchy = "legacy owner-written"
)

// deletePolicy is the authPolicy of the platform counter:
// TPM2_PolicyCommandCode(TPM_CC_NV_UndefineSpaceSpecial) from an empty
// digest (Part 3 §23.11: policyDigest' = H(policyDigest ||
// TPM_CC_PolicyCommandCode || code)). It only serves deletion
// (TPMA_NV_POLICY_DELETE; neither POLICYREAD nor POLICYWRITE is set), and
// TPM2_NV_UndefineSpaceSpecial also needs platform authorization (Part 3
// §31.5), which keel-init disables before the handoff.
func deletePolicy() []byte {
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCPolicyCommandCode))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCNVUndefineSpaceSpecial))
	return h.Sum(nil)
}

// CounterPublic is the exact public area (TPMS_NV_PUBLIC, Part 2 §13.5)
// of keel's counter at index in hierarchy h, before its first write:
// TPM_NT_COUNTER (Part 2 §13.4), written with the index's own empty
// authorization only (AUTHWRITE; no OWNERWRITE, PPWRITE or POLICYWRITE),
// write-locked by TPM2_NV_WriteLock until the next TPM Reset or Restart
// (WRITE_STCLEAR), readable by anyone with the empty authorization
// (AUTHREAD, OWNERREAD, PPREAD), no dictionary-attack protection (NO_DA).
func CounterPublic(index uint32, h Hierarchy) tpm2.TPMSNVPublic {
	p := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			NT:           tpm2.TPMNTCounter,
			AuthWrite:    true,
			WriteSTClear: true,
			AuthRead:     true,
			OwnerRead:    true,
			PPRead:       true,
			NoDA:         true,
		},
		DataSize: 8,
	}
	switch h {
	case HierarchyPlatform:
		p.Attributes.PlatformCreate = true
		p.Attributes.PolicyDelete = true
		p.AuthPolicy = tpm2.TPM2BDigest{Buffer: deletePolicy()}
	case hierarchyLegacy:
		p.Attributes = tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true}
	}
	return p
}

// staticPublic is pub without the attributes the TPM changes (WRITTEN,
// WRITELOCKED, READLOCKED, Part 2 §13.4), marshalled: two indices are
// the same definition when these bytes are equal.
func staticPublic(pub tpm2.TPMSNVPublic) []byte {
	pub.Attributes.Written = false
	pub.Attributes.WriteLocked = false
	pub.Attributes.ReadLocked = false
	return tpm2.Marshal(pub)
}

// counterLayout says which of keel's definitions pub is ("" for none).
func counterLayout(pub *tpm2.TPMSNVPublic) Hierarchy {
	got := staticPublic(*pub)
	for _, h := range []Hierarchy{HierarchyPlatform, HierarchyOwner, hierarchyLegacy} {
		if bytes.Equal(got, staticPublic(CounterPublic(uint32(pub.NVIndex), h))) {
			return h
		}
	}
	return ""
}

// CounterState is what EnsureCounter found and did: keel-init logs it, and
// Tampered is a loud warning.
type CounterState struct {
	Hierarchy Hierarchy
	// Floor is the minimum security version the counter enforces.
	Floor uint64
	// Created: keel-init defined the index in this call (it was missing,
	// or it replaced a squatter or migrated the legacy counter).
	Created bool
	// Migrated: the legacy owner-written counter was replaced; the floor
	// carries its value over (the TPM starts the new counter above it).
	Migrated bool
	// Tampered, if not empty, says what was wrong: an index at the
	// counter's handle that is not keel's (replaced), or a counter keel
	// had to create on a TPM where some counter was deleted before (the
	// first value is above 1: keel's own may have been deleted).
	Tampered string
}

// EnsureCounter makes sure keel's counter exists and has been written at
// least once, and returns its floor. keel-init calls it at every boot,
// before it advances or reads the counter:
//   - keel's counter (either hierarchy, compared on the whole public area)
//     is kept; if it was never written it is incremented once;
//   - missing: it is defined in the platform hierarchy if platform
//     authorization (empty) works, else in the owner hierarchy (empty
//     owner authorization), then incremented once (TPM2_NV_Increment,
//     Part 3 §31.8): the TPM starts a new counter one above the highest
//     value any deleted counter had (Part 1 §37.3.2.2, NV counters;
//     libtpms keeps it as maxCount), so the floor of a re-created counter
//     is never below the one it replaces;
//   - keel's counter from before issue 11 (owner-written, its value the
//     floor) is read, undefined and re-created the same way: the first
//     value is its value plus one, the floor its value;
//   - anything else at index is a squatter: undefined (owner
//     authorization, or platform authorization for a platform index
//     without POLICY_DELETE) and re-created, with Tampered set; one that
//     cannot be undefined is ErrCounterSquatted.
//
// The floor is the counter's value minus one: a counter's first value is
// at least 1 (0 before any counter was ever deleted on this TPM), so a
// fresh counter admits security version 0.
func EnsureCounter(t transport.TPM, index uint32) (CounterState, error) {
	var st CounterState
	var legacy uint64 // the migrated counter's floor
	pub, _, err := readNVPublic(t, index)
	switch {
	case errors.Is(err, tpm2.TPMRCHandle):
		// Missing: define below.
	case err != nil:
		return st, err
	default:
		switch h := counterLayout(pub); h {
		case HierarchyPlatform, HierarchyOwner:
			st.Hierarchy = h
			if !pub.Attributes.Written {
				if err := increment(t, index); err != nil {
					return st, err
				}
			}
			st.Floor, err = ReadCounter(t, index)
			return st, err
		case hierarchyLegacy:
			if legacy, err = ReadCounter(t, index); err != nil {
				return st, err
			}
			if err := undefine(t, index, pub); err != nil {
				return st, fmt.Errorf("migrating the anti-rollback counter %#08x (value %d): %w", index, legacy, err)
			}
			st.Migrated = true
		default:
			if err := undefine(t, index, pub); err != nil {
				return st, fmt.Errorf("NV index %#08x: %w (attributes %#x, %d bytes, policy %x): it cannot be removed: %w",
					index, ErrCounterSquatted, uint32(attrBits(pub.Attributes)), pub.DataSize, pub.AuthPolicy.Buffer, err)
			}
			st.Tampered = fmt.Sprintf("NV index %#08x was not keel's anti-rollback counter (attributes %#x, %d bytes, policy %x): removed and re-created",
				index, uint32(attrBits(pub.Attributes)), pub.DataSize, pub.AuthPolicy.Buffer)
		}
	}
	if st.Hierarchy, err = defineCounter(t, index); err != nil {
		return st, err
	}
	st.Created = true
	if err := increment(t, index); err != nil {
		return st, err
	}
	if st.Floor, err = ReadCounter(t, index); err != nil {
		return st, err
	}
	switch {
	case st.Tampered != "":
	case st.Migrated && st.Floor > legacy:
		// The legacy counter was defined by the owner: it may have
		// replaced a deleted counter of keel's.
		st.Tampered = fmt.Sprintf("anti-rollback counter %#08x: the owner-written counter (floor %d) was migrated, and the TPM started the new one at floor %d: a counter (keel's?) was deleted from this TPM before", index, legacy, st.Floor)
	case st.Floor > 0 && !st.Migrated:
		st.Tampered = fmt.Sprintf("anti-rollback counter %#08x was missing and re-created: its first value %d says a counter (keel's?) was deleted from this TPM before", index, st.Floor+1)
	}
	return st, nil
}

// attrBits is the TPMA_NV bit field, for messages.
func attrBits(a tpm2.TPMANV) uint32 {
	b := tpm2.Marshal(a)
	return binary.BigEndian.Uint32(b)
}

// defineCounter is TPM2_NV_DefineSpace (Part 3 §31.3): with platform
// authorization if it works (empty platformAuth, phEnable set), else with
// the (empty) owner authorization.
func defineCounter(t transport.TPM, index uint32) (Hierarchy, error) {
	var errs []error
	for _, h := range []struct {
		h    Hierarchy
		auth tpm2.TPMHandle
	}{{HierarchyPlatform, tpm2.TPMRHPlatform}, {HierarchyOwner, tpm2.TPMRHOwner}} {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: h.auth, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(CounterPublic(index, h.h)),
		}.Execute(t)
		if err == nil {
			return h.h, nil
		}
		errs = append(errs, fmt.Errorf("%s hierarchy: %w", h.h, err))
	}
	return "", fmt.Errorf("TPM2_NV_DefineSpace(%#08x): %w", index, errors.Join(errs...))
}

// undefine is TPM2_NV_UndefineSpace (Part 3 §31.4) with the empty
// authorization of the hierarchy that created the index.
func undefine(t transport.TPM, index uint32, pub *tpm2.TPMSNVPublic) error {
	auth := tpm2.TPMRHOwner
	if pub.Attributes.PlatformCreate {
		auth = tpm2.TPMRHPlatform
	}
	_, name, err := readNVPublic(t, index)
	if err != nil {
		return err
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: auth, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_UndefineSpace(%#08x): %w", index, err)
	}
	return nil
}

// readNVPublic is TPM2_NV_ReadPublic (Part 3 §31.6).
func readNVPublic(t transport.TPM, index uint32) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(t)
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("TPM2_NV_ReadPublic(%#08x): %w", index, err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, err
	}
	return pub, rsp.NVName, nil
}

// indexAuth is the index authorizing itself with its empty authValue.
func indexAuth(index uint32, name tpm2.TPM2BName) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: tpm2.PasswordAuth(nil)}
}

// ReadCounter returns the floor the counter at index enforces: the
// minimum security version. It reads with the index's own empty
// authorization (TPM2_NV_Read, Part 3 §31.13), so the OS can read it too
// (keel install). For keel's counter the floor is its value minus one
// (0 while it was never written); for the legacy counter it is its value.
// A missing index is an error matching ErrNoCounter (and io/fs.ErrNotExist);
// anything that is not keel's is ErrCounterSquatted.
func ReadCounter(t transport.TPM, index uint32) (uint64, error) {
	pub, name, err := readNVPublic(t, index)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return 0, fmt.Errorf("NV index %#08x: %w (%w)", index, ErrNoCounter, err)
	}
	if err != nil {
		return 0, err
	}
	h := counterLayout(pub)
	if h == "" {
		return 0, fmt.Errorf("NV index %#08x: %w (attributes %#x)", index, ErrCounterSquatted, attrBits(pub.Attributes))
	}
	if !pub.Attributes.Written {
		return 0, nil
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: indexAuth(index, name),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
		Size:       8,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("TPM2_NV_Read(%#08x): %w", index, err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("TPM2_NV_Read(%#08x): %d bytes", index, len(rsp.Data.Buffer))
	}
	v := binary.BigEndian.Uint64(rsp.Data.Buffer)
	if h == hierarchyLegacy {
		return v, nil
	}
	if v == 0 {
		return 0, fmt.Errorf("NV counter %#08x reads 0 once written", index)
	}
	return v - 1, nil
}

// increment is one TPM2_NV_Increment (Part 3 §31.8) authorized by the
// index's empty authValue (TPMA_NV_AUTHWRITE). It fails with
// TPM_RC_NV_LOCKED after TPM2_NV_WriteLock until the next TPM Reset.
func increment(t transport.TPM, index uint32) error {
	_, name, err := readNVPublic(t, index) // the name changes once written
	if err != nil {
		return err
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: indexAuth(index, name),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_Increment(%#08x): %w", index, err)
	}
	return nil
}

// AdvanceTo increments keel's counter (EnsureCounter first) until its
// floor is at least v, and returns the floor. It never decreases it: a
// floor already at or above v is left alone. More than MaxAdvance
// increments are refused. After LockCounter it fails with
// TPM_RC_NV_LOCKED until the next TPM Reset: only keel-init advances it.
func AdvanceTo(t transport.TPM, index uint32, v uint64) (uint64, error) {
	cur, err := ReadCounter(t, index)
	if err != nil {
		return 0, err
	}
	if cur >= v {
		return cur, nil
	}
	pub, _, err := readNVPublic(t, index)
	if err != nil {
		return cur, err
	}
	if h := counterLayout(pub); h != HierarchyPlatform && h != HierarchyOwner || !pub.Attributes.Written {
		return cur, fmt.Errorf("NV counter %#08x: not advanced: it is the %s counter (EnsureCounter first)", index, cmp.Or(string(h), "unwritten"))
	}
	if v-cur > MaxAdvance {
		return cur, fmt.Errorf("NV counter %#08x: refusing to advance from %d to %d (more than %d increments)", index, cur, v, MaxAdvance)
	}
	for cur < v {
		if err := increment(t, index); err != nil {
			return cur, err
		}
		if cur, err = ReadCounter(t, index); err != nil {
			return cur, err
		}
	}
	return cur, nil
}

// LockCounter write-locks keel's counter (TPM2_NV_WriteLock, Part 3
// §31.11, with the index's empty authorization): until the next TPM Reset
// or Restart (TPMA_NV_WRITE_STCLEAR) no TPM2_NV_Increment or TPM2_NV_Write
// succeeds, whoever asks (TPM_RC_NV_LOCKED). keel-init calls it before
// every handoff.
func LockCounter(t transport.TPM, index uint32) error {
	_, name, err := readNVPublic(t, index)
	if err != nil {
		return err
	}
	_, err = tpm2.NVWriteLock{
		AuthHandle: indexAuth(index, name),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_WriteLock(%#08x): %w", index, err)
	}
	return nil
}

// DisablePlatformHierarchy clears phEnable (TPM2_HierarchyControl, Part 3
// §24.2, with the empty platform authorization) until the next TPM Reset
// or Restart, as firmware does before it boots an OS (TCG PC Client
// Platform Firmware Profile): the OS cannot use platform authorization to
// delete keel's platform counter (TPM2_NV_UndefineSpaceSpecial) or to
// define indices there. NV indices the platform created stay readable and
// writable (phEnableNV is left alone). It reports whether it disabled it;
// a platform hierarchy that firmware already disabled (TPM_RC_HIERARCHY)
// or whose authorization is not empty is not an error for the caller to
// act on: (false, the TPM's answer).
func DisablePlatformHierarchy(t transport.TPM) (bool, error) {
	// go-tpm has no TPM2_HierarchyControl: the command is four fields.
	var cmd bytes.Buffer
	w := func(v any) { binary.Write(&cmd, binary.BigEndian, v) }
	w(uint16(tpm2.TPMSTSessions))
	w(uint32(0)) // size, below
	w(uint32(tpm2.TPMCCHierarchyControl))
	w(uint32(tpm2.TPMRHPlatform)) // authHandle
	// The authorization area (Part 1 §18.7): one password session with
	// an empty password.
	w(uint32(4 + 2 + 1 + 2))
	w(uint32(tpm2.TPMRSPW))
	w(uint16(0))                  // nonce
	w(uint8(0))                   // session attributes
	w(uint16(0))                  // hmac: the (empty) password
	w(uint32(tpm2.TPMRHPlatform)) // enable: phEnable
	w(uint8(0))                   // state: NO
	b := cmd.Bytes()
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	rsp, err := t.Send(b)
	if err != nil {
		return false, fmt.Errorf("TPM2_HierarchyControl: %w", err)
	}
	if len(rsp) < 10 {
		return false, fmt.Errorf("TPM2_HierarchyControl: %d-byte response", len(rsp))
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return false, fmt.Errorf("TPM2_HierarchyControl(platform, phEnable=NO): %w", rc)
	}
	return true, nil
}
