package tpm

import (
	"bytes"
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

// RecordIndex is keel's floor record, the index after the counter's: the
// floor keel-init set and the counter's value when it set it (see the
// package doc). The functions here take the counter's index; its record is
// always the next handle.
const RecordIndex = CounterIndex + 1

// recordOf is the floor record's handle for the counter at index.
func recordOf(index uint32) uint32 { return index + 1 }

// MaxAdvance bounds the increments one AdvanceTo may issue: security
// versions are small numbers, NV has finite write endurance.
const MaxAdvance = 1024

// ErrCounterSquatted says the NV index exists but is not keel's counter
// (its public area is not one keel defines) and keel could not replace it.
var ErrCounterSquatted = errors.New("NV index exists but is not keel's anti-rollback counter")

// ErrNoCounter says keel's counter is not defined (yet): it also matches
// io/fs.ErrNotExist.
var ErrNoCounter = fmt.Errorf("anti-rollback counter not defined: %w", iofs.ErrNotExist)

// ErrWriteWindowClosed says keel's write policy cannot be satisfied: PCR 8
// is not all zero in the SHA-256 bank, so this is not keel-init before its
// first measurement (or the TPM has no active SHA-256 bank). Only then can
// the counter and the floor record be written.
var ErrWriteWindowClosed = errors.New("keel's anti-rollback counter can only be written before keel-init's first PCR 8 measurement (PCR 8 is not all zero in the SHA-256 bank)")

// Hierarchy says where keel's counter is defined.
type Hierarchy string

// The hierarchies keel's counter may live in (see the package doc).
const (
	// HierarchyPlatform: TPMA_NV_PLATFORMCREATE and TPMA_NV_POLICY_DELETE;
	// only TPM2_NV_UndefineSpaceSpecial with platform authorization
	// deletes it, and TPM2_Clear keeps it.
	HierarchyPlatform Hierarchy = "platform"
	// HierarchyOwner: the owner can delete it (TPM2_NV_UndefineSpace,
	// TPM2_Clear); the floor record and the TPM's counter rules keep the
	// floor from going down.
	HierarchyOwner Hierarchy = "owner"
)

// layout is which of keel's definitions an NV public area is.
type layout int

const (
	notKeels layout = iota
	// layoutCounter: keel's counter since issue 19, written under the
	// write policy only (POLICYWRITE).
	layoutCounter
	// layoutRecord: keel's floor record (issue 19), written under the
	// write policy only.
	layoutRecord
	// layoutV11: keel's counter of issue 11, written with its own empty
	// authValue (AUTHWRITE): the OS can re-define and raise it.
	layoutV11
	// layoutLegacy: keel's counter of before issue 11, owner-written,
	// its value the floor itself.
	layoutLegacy
)

func (l layout) String() string {
	switch l {
	case layoutCounter:
		return "keel's counter"
	case layoutRecord:
		return "keel's floor record"
	case layoutV11:
		return "keel's counter of issue 11 (written with its empty authValue)"
	case layoutLegacy:
		return "keel's owner-written counter of before issue 11"
	}
	return "not keel's"
}

// old says the layout is one keel-init migrates away from.
func (l layout) old() bool { return l == layoutV11 || l == layoutLegacy }

// writePolicy is the policy every write of keel's counter and floor
// record needs: TPM2_PolicyPCR over PCR 8 of the SHA-256 bank holding 32
// zero bytes (Part 3 §23.7: policyDigest' = H(policyDigest ||
// TPM_CC_PolicyPCR || pcrs || H(PCR 8))). PCR 8 is all zero from a TPM
// Reset until keel-init's first extend, and nothing can reset it but a
// TPM Reset (PCRs 0-15 have no pcrReset attribute: TCG PC Client Platform
// TPM Profile, PCR attributes): after keel-init's first measurement no one
// can satisfy it until the next boot runs keel-init again.
func writePolicy() []byte {
	d, err := pcr8Zero().PolicyDigest()
	if err != nil {
		panic(err) // a constant input: cannot fail
	}
	return d
}

// pcr8Zero is the PCR state writePolicy names.
func pcr8Zero() PCRValues { return PCRValues{PCRBoot: make(HexBytes, sha256.Size)} }

// deletePolicy is TPM2_PolicyCommandCode(TPM_CC_NV_UndefineSpaceSpecial)
// from an empty digest (Part 3 §23.11: policyDigest' = H(policyDigest ||
// TPM_CC_PolicyCommandCode || code)): the branch of a platform index's
// policy that deletes it (TPMA_NV_POLICY_DELETE). TPM2_NV_UndefineSpaceSpecial
// also needs platform authorization (Part 3 §31.5), which keel-init
// disables before the handoff. A session that ran it can authorize no
// other command (TPM_RC_POLICY_CC).
func deletePolicy() []byte {
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCPolicyCommandCode))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCNVUndefineSpaceSpecial))
	return h.Sum(nil)
}

// platformPolicy is the authPolicy of keel's platform indices:
// TPM2_PolicyOR(deletePolicy, writePolicy) (Part 3 §23.6: policyDigest' =
// H(0…0 || TPM_CC_PolicyOR || digests)), one authPolicy for POLICY_DELETE
// and POLICYWRITE.
func platformPolicy() []byte {
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	binary.Write(h, binary.BigEndian, uint32(tpm2.TPMCCPolicyOR))
	h.Write(deletePolicy())
	h.Write(writePolicy())
	return h.Sum(nil)
}

// keelAttributes are the TPMA_NV bits (Part 2 §13.4) of keel's counter
// and floor record but the type: written only under the authPolicy
// (POLICYWRITE; no AUTHWRITE, OWNERWRITE or PPWRITE), write-locked by
// TPM2_NV_WriteLock until the next TPM Reset or Restart (WRITE_STCLEAR),
// readable by anyone with the empty authValue (AUTHREAD, OWNERREAD,
// PPREAD), no dictionary-attack protection (NO_DA). In the platform
// hierarchy also PLATFORMCREATE and POLICY_DELETE.
func keelAttributes(h Hierarchy) tpm2.TPMANV {
	a := tpm2.TPMANV{PolicyWrite: true, WriteSTClear: true, AuthRead: true, OwnerRead: true, PPRead: true, NoDA: true}
	if h == HierarchyPlatform {
		a.PlatformCreate = true
		a.PolicyDelete = true
	}
	return a
}

func keelPolicy(h Hierarchy) []byte {
	if h == HierarchyPlatform {
		return platformPolicy()
	}
	return writePolicy()
}

// CounterPublic is the exact public area (TPMS_NV_PUBLIC, Part 2 §13.5)
// of keel's counter at index in hierarchy h, before its first increment:
// TPM_NT_COUNTER (8 bytes) with keelAttributes and authPolicy writePolicy
// (owner) or platformPolicy (platform).
func CounterPublic(index uint32, h Hierarchy) tpm2.TPMSNVPublic {
	a := keelAttributes(h)
	a.NT = tpm2.TPMNTCounter
	return tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(index), NameAlg: tpm2.TPMAlgSHA256, Attributes: a,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: keelPolicy(h)}, DataSize: 8}
}

// RecordPublic is the exact public area of keel's floor record at index
// (the counter's index + 1) in hierarchy h, before its first write:
// TPM_NT_ORDINARY, 16 bytes, written whole (WRITEALL), with the counter's
// attributes and authPolicy.
func RecordPublic(index uint32, h Hierarchy) tpm2.TPMSNVPublic {
	a := keelAttributes(h)
	a.NT = tpm2.TPMNTOrdinary
	a.WriteAll = true
	return tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(index), NameAlg: tpm2.TPMAlgSHA256, Attributes: a,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: keelPolicy(h)}, DataSize: recordSize}
}

// v11Public is keel's counter of issue 11: AUTHWRITE with the empty
// authValue, the rest as today's, no write policy (the platform one's
// authPolicy only deletes).
func v11Public(index uint32, h Hierarchy) tpm2.TPMSNVPublic {
	p := tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(index), NameAlg: tpm2.TPMAlgSHA256, DataSize: 8,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTCounter, AuthWrite: true, WriteSTClear: true, AuthRead: true, OwnerRead: true, PPRead: true, NoDA: true}}
	if h == HierarchyPlatform {
		p.Attributes.PlatformCreate = true
		p.Attributes.PolicyDelete = true
		p.AuthPolicy = tpm2.TPM2BDigest{Buffer: deletePolicy()}
	}
	return p
}

// legacyPublic is keel's counter of before issue 11 (owner hierarchy,
// incremented with owner authorization, its value the floor).
func legacyPublic(index uint32) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(index), NameAlg: tpm2.TPMAlgSHA256, DataSize: 8,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true}}
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

// classify says which of keel's definitions pub is, compared on the
// whole public area (attributes, authPolicy, size, name algorithm).
func classify(pub *tpm2.TPMSNVPublic) (layout, Hierarchy) {
	got := staticPublic(*pub)
	index := uint32(pub.NVIndex)
	for _, h := range []Hierarchy{HierarchyPlatform, HierarchyOwner} {
		for _, c := range []struct {
			l   layout
			pub tpm2.TPMSNVPublic
		}{{layoutCounter, CounterPublic(index, h)}, {layoutRecord, RecordPublic(index, h)}, {layoutV11, v11Public(index, h)}} {
			if bytes.Equal(got, staticPublic(c.pub)) {
				return c.l, h
			}
		}
	}
	if bytes.Equal(got, staticPublic(legacyPublic(index))) {
		return layoutLegacy, HierarchyOwner
	}
	return notKeels, ""
}

// recordSize is the floor record's size: floor and count, big-endian.
const recordSize = 16

// record is the floor record's content.
type record struct {
	// floor is the minimum security version keel-init set: the highest
	// security version of a verified, committed slot it advanced to on
	// this device (or what it carried over or could prove).
	floor uint64
	// count is the counter's value when keel-init wrote the record; 0:
	// the counter is (still) keel's old layout, being migrated.
	count uint64
}

func (r record) bytes() []byte {
	b := binary.BigEndian.AppendUint64(nil, r.floor)
	return binary.BigEndian.AppendUint64(b, r.count)
}

func parseRecord(b []byte) (record, error) {
	if len(b) != recordSize {
		return record{}, fmt.Errorf("floor record: %d bytes, want %d", len(b), recordSize)
	}
	return record{floor: binary.BigEndian.Uint64(b), count: binary.BigEndian.Uint64(b[8:])}, nil
}

// nvState is what TPM2_NV_ReadPublic and TPM2_NV_Read returned for one
// index.
type nvState struct {
	index   uint32
	present bool
	pub     *tpm2.TPMSNVPublic
	layout  layout
	h       Hierarchy
	// value is the data of one of keel's indices once written (read
	// with its own empty authValue, AUTHREAD).
	value []byte
}

func (s nvState) written() bool { return s.present && s.pub.Attributes.Written }

// count is a written counter's value.
func (s nvState) count() uint64 {
	if len(s.value) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(s.value)
}

// oldFloor is the floor an old layout enforces: the issue-11 counter's
// value minus one, the legacy counter's value (0 while unwritten).
func (s nvState) oldFloor() uint64 {
	switch {
	case !s.written():
		return 0
	case s.layout == layoutLegacy:
		return s.count()
	case s.count() > 0:
		return s.count() - 1
	}
	return 0
}

// readState reads index's public area and, for one of keel's indices
// once written, its data.
func readState(t transport.TPM, index uint32) (nvState, error) {
	s := nvState{index: index}
	pub, name, err := readNVPublic(t, index)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	s.present, s.pub = true, pub
	s.layout, s.h = classify(pub)
	if s.layout == notKeels || !pub.Attributes.Written {
		return s, nil
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: indexAuth(index, name),
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
		Size:       pub.DataSize,
	}.Execute(t)
	if err != nil {
		return s, fmt.Errorf("TPM2_NV_Read(%#08x): %w", index, err)
	}
	if len(rsp.Data.Buffer) != int(pub.DataSize) {
		return s, fmt.Errorf("TPM2_NV_Read(%#08x): %d bytes, want %d", index, len(rsp.Data.Buffer), pub.DataSize)
	}
	s.value = rsp.Data.Buffer
	if s.layout != layoutLegacy && s.layout != layoutRecord && s.count() == 0 {
		return s, fmt.Errorf("NV counter %#08x reads 0 once written", index)
	}
	return s, nil
}

// describe names a foreign public area in messages.
func describe(pub *tpm2.TPMSNVPublic) string {
	return fmt.Sprintf("attributes %#x, %d bytes, policy %x", attrBits(pub.Attributes), pub.DataSize, pub.AuthPolicy.Buffer)
}

// CounterState is what EnsureCounter found and did: keel-init logs it.
// Tampered is a loud warning (KEEL-TAMPER), Warnings are repairs that
// failed (the floor stands).
type CounterState struct {
	Hierarchy Hierarchy
	// Floor is the minimum security version keel-init enforces.
	Floor uint64
	// Count is the counter's value (0: keel still uses an old layout).
	Count uint64
	// Created: keel-init defined or first incremented the counter in
	// this call (it was missing, unwritten, replaced or migrated).
	Created bool
	// Migrated: keel's counter of issue 11 (or before) was replaced by
	// today's; the floor is carried over.
	Migrated bool
	// Tampered, if not empty, says what the OS (or someone) changed and
	// which floor keel-init chose, and why.
	Tampered string
	// Warnings are what keel-init could not repair (the floor is still
	// the one it can prove).
	Warnings []string
}

func (st *CounterState) tamper(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if st.Tampered != "" {
		st.Tampered += "; "
	}
	st.Tampered += s
}

func (st *CounterState) warn(format string, args ...any) {
	st.Warnings = append(st.Warnings, fmt.Sprintf(format, args...))
}

// EnsureCounter settles keel's counter and floor record and returns the
// floor. keel-init calls it at every boot before anything is measured
// (the write policy needs PCR 8 all zero), before it advances or reads
// them. What it does is in the package doc ("What keel-init does at
// boot"). It fails only when no floor can be proved (no record, and the
// counter could not be read or created); repairs that fail while a floor
// is known are CounterState.Warnings.
func EnsureCounter(t transport.TPM, index uint32) (CounterState, error) {
	var st CounterState
	c, err := readState(t, index)
	if err != nil {
		return st, err
	}
	r, err := readState(t, recordOf(index))
	if err != nil {
		return st, err
	}

	// 1. The floor record. Once written, only a holder of the write
	// policy wrote it (TPM2_NV_DefineSpace refuses WRITTEN: Part 3 §31.3),
	// so its floor is keel-init's.
	var rec *record
	switch {
	case !r.present:
	case r.layout == layoutRecord && r.written():
		v, err := parseRecord(r.value)
		if err != nil {
			return st, err
		}
		rec = &v
	case r.layout == layoutRecord:
		// Defined, never written: keel-init was cut short after
		// defining it, or the OS deleted it and defined it again.
		// Either way it holds nothing.
	default:
		if err := undefine(t, r); err != nil {
			st.warn("NV index %#08x, keel's floor record's handle, holds something else (%s) that cannot be removed: %v", r.index, describe(r.pub), err)
		} else {
			st.tamper("NV index %#08x, keel's floor record's handle, held something else (%s): removed", r.index, describe(r.pub))
		}
		r = nvState{index: r.index}
	}

	// 2. The counter.
	var count uint64 // its value once settled
	create := false  // it needs its first increment (and maybe a definition)
	switch {
	case c.present && c.layout == layoutCounter:
		st.Hierarchy = c.h
		if c.written() {
			count = c.count()
		} else {
			create = true
		}
	case !c.present:
		create = true
	case c.layout.old():
		old := c.oldFloor()
		switch {
		case rec == nil:
			// A device migrating: the record first, marked pending
			// (count 0), so that from here on the floor is kept by the
			// TPM whatever happens to the old counter.
			if err := putRecord(t, &r, record{floor: old}); err != nil {
				return oldCounter(st, c, nil, fmt.Errorf("writing the floor record: %w", err))
			}
			rec = &record{floor: old}
		case rec.count == 0:
			// A migration cut short (or an old counter kept in use):
			// never below either.
			if old > rec.floor {
				rec.floor = old
				if err := putRecord(t, &r, *rec); err != nil {
					return oldCounter(st, c, rec, fmt.Errorf("writing the floor record: %w", err))
				}
			}
		default:
			st.tamper("NV index %#08x holds %s (floor %d) although keel's counter was migrated: the OS deleted keel's counter and defined one it can write; keel-init keeps the recorded floor %d and replaces it",
				index, c.layout, old, rec.floor)
		}
		if err := undefine(t, c); err != nil {
			return oldCounter(st, c, rec, fmt.Errorf("removing it: %w", err))
		}
		c = nvState{index: index}
		create = true
	default:
		if err := undefine(t, c); err != nil {
			err = fmt.Errorf("NV index %#08x: %w (%s): it cannot be removed: %w", index, ErrCounterSquatted, describe(c.pub), err)
			if rec == nil {
				return st, err
			}
			st.warn("%v; the floor is the record's %d", err, rec.floor)
			st.Floor = rec.floor
			return st, nil
		}
		st.tamper("NV index %#08x was not keel's anti-rollback counter (%s): removed and re-created", index, describe(c.pub))
		c = nvState{index: index}
		create = true
	}
	if create {
		if !c.present {
			if st.Hierarchy, err = define(t, index, CounterPublic); err != nil {
				return noCounter(st, rec, err)
			}
		}
		if err := increment(t, index); err != nil {
			return noCounter(st, rec, err)
		}
		if c, err = readState(t, index); err != nil {
			return noCounter(st, rec, err)
		}
		count = c.count()
		st.Created = true
	}
	st.Count = count

	// 3. The counter against the record.
	if rec != nil {
		st.Floor = rec.floor
		st.Migrated = rec.count == 0
		switch {
		case count < rec.count:
			// An advance cut short after its record was written.
			if rec.count-count > MaxAdvance {
				st.warn("anti-rollback counter %#08x reads %d, behind its record's %d by more than %d: not caught up", index, count, rec.count, MaxAdvance)
				break
			}
			for count < rec.count {
				if err := increment(t, index); err != nil {
					st.warn("catching the anti-rollback counter up with its record: %v", err)
					break
				}
				count++
			}
			st.Count = count
		case count > rec.count:
			if rec.count != 0 {
				st.tamper("anti-rollback counter %#08x reads %d, but keel's floor record says %d: the counter was deleted and re-created (a new counter starts above the highest count the TPM has seen, which the OS can raise); the floor stays %d, the highest security version keel-init has advanced to on this device, as recorded",
					index, count, rec.count, rec.floor)
			}
			if err := putRecord(t, &r, record{floor: rec.floor, count: count}); err != nil {
				st.warn("updating the floor record: %v", err)
			}
		}
		return st, nil
	}
	// No record: the counter is the only floor the TPM proves. It is
	// never below the floor keel-init set (a counter, re-created, starts
	// above every count the TPM has seen), but it may be far above it.
	st.Floor = count - 1
	if count > 1 {
		if st.Created {
			st.tamper("anti-rollback counter %#08x was missing and re-created and keel's floor record %#08x is missing too: the counter's first value %d says a counter was deleted from this TPM before (keel's?); the floor is %d, the lowest the TPM can prove, and may be above every security version keel-init has verified on this device if the OS raised the TPM's counters first: keel-init keeps it (a floor it cannot explain is also what a rollback attack looks like)",
				index, recordOf(index), count, st.Floor)
		} else {
			st.tamper("keel's floor record %#08x is missing (it was deleted): the floor is the anti-rollback counter's %d, the lowest the TPM can prove; keel-init keeps it (it is above the recorded floor only if the counter was re-created before)",
				recordOf(index), st.Floor)
		}
	}
	if err := putRecord(t, &r, record{floor: st.Floor, count: count}); err != nil {
		st.warn("writing the floor record: %v", err)
	}
	return st, nil
}

// oldCounter is EnsureCounter's answer when an old layout cannot be
// migrated (cause): keel keeps it as it is, with a warning; the floor is
// the record's when there is one, never below the old counter's.
func oldCounter(st CounterState, c nvState, rec *record, cause error) (CounterState, error) {
	st.Hierarchy = c.h
	st.Floor = c.oldFloor()
	if rec != nil {
		st.Floor = max(st.Floor, rec.floor)
	}
	st.warn("anti-rollback counter %#08x is %s and could not be migrated (%v): keel-init keeps using it, and the OS can still raise it", c.index, c.layout, cause)
	return st, nil
}

// noCounter is EnsureCounter's answer when the counter could not be
// defined or first incremented: the record's floor if there is one.
func noCounter(st CounterState, rec *record, err error) (CounterState, error) {
	if rec == nil {
		return st, err
	}
	st.Floor = rec.floor
	st.warn("the anti-rollback counter could not be re-created (%v): the floor is the record's %d", err, rec.floor)
	return st, nil
}

// putRecord writes rec into the floor record r (defining it first if it
// is missing) and updates r.
func putRecord(t transport.TPM, r *nvState, rec record) error {
	if !r.present {
		if _, err := define(t, r.index, RecordPublic); err != nil {
			return err
		}
	}
	name, err := nvName(t, r.index)
	if err != nil {
		return err
	}
	pub, _, err := readNVPublic(t, r.index)
	if err != nil {
		return err
	}
	err = withWritePolicy(t, pub, func(s tpm2.Session) error {
		_, err := tpm2.NVWrite{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(r.index), Name: name, Auth: s},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(r.index), Name: name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: rec.bytes()},
		}.Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("TPM2_NV_Write(%#08x): %w", r.index, err)
	}
	*r, err = readState(t, r.index)
	return err
}

// attrBits is the TPMA_NV bit field, for messages.
func attrBits(a tpm2.TPMANV) uint32 {
	b := tpm2.Marshal(a)
	return binary.BigEndian.Uint32(b)
}

// define is TPM2_NV_DefineSpace (Part 3 §31.3) of public(index, h): with
// platform authorization if it works (empty platformAuth, phEnable set),
// else with the (empty) owner authorization.
func define(t transport.TPM, index uint32, public func(uint32, Hierarchy) tpm2.TPMSNVPublic) (Hierarchy, error) {
	var errs []error
	for _, h := range []struct {
		h    Hierarchy
		auth tpm2.TPMHandle
	}{{HierarchyPlatform, tpm2.TPMRHPlatform}, {HierarchyOwner, tpm2.TPMRHOwner}} {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: h.auth, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(public(index, h.h)),
		}.Execute(t)
		if err == nil {
			return h.h, nil
		}
		errs = append(errs, fmt.Errorf("%s hierarchy: %w", h.h, err))
	}
	return "", fmt.Errorf("TPM2_NV_DefineSpace(%#08x): %w", index, errors.Join(errs...))
}

// undefine removes the index s: TPM2_NV_UndefineSpaceSpecial (Part 3
// §31.5) with platform authorization and the delete branch of its policy
// for a POLICY_DELETE index (keel's issue-11 platform counter), else
// TPM2_NV_UndefineSpace (Part 3 §31.4) with the empty authorization of
// the hierarchy that created it.
func undefine(t transport.TPM, s nvState) error {
	name, err := nvName(t, s.index)
	if err != nil {
		return err
	}
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	if s.pub.Attributes.PolicyDelete {
		if !bytes.Equal(s.pub.AuthPolicy.Buffer, deletePolicy()) {
			return fmt.Errorf("NV index %#08x: its delete policy is not keel's", s.index)
		}
		sess, done, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16)
		if err != nil {
			return fmt.Errorf("TPM2_StartAuthSession: %w", err)
		}
		defer done()
		if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCNVUndefineSpaceSpecial}).Execute(t); err != nil {
			return fmt.Errorf("TPM2_PolicyCommandCode: %w", err)
		}
		_, err = tpm2.NVUndefineSpaceSpecial{
			NVIndex:  tpm2.AuthHandle{Handle: tpm2.TPMHandle(s.index), Name: name, Auth: sess},
			Platform: platform,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_NV_UndefineSpaceSpecial(%#08x): %w", s.index, err)
		}
		return nil
	}
	auth := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if s.pub.Attributes.PlatformCreate {
		auth = platform
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: auth,
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(s.index), Name: name},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_UndefineSpace(%#08x): %w", s.index, err)
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

// nvName is index's Name (it changes once the index is written).
func nvName(t transport.TPM, index uint32) (tpm2.TPM2BName, error) {
	_, name, err := readNVPublic(t, index)
	return name, err
}

// indexAuth is the index authorizing itself with its empty authValue.
func indexAuth(index uint32, name tpm2.TPM2BName) tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: tpm2.PasswordAuth(nil)}
}

// withWritePolicy runs f with a policy session (Part 3 §11.1) that
// satisfies pub's write policy: TPM2_PolicyPCR(SHA-256 PCR 8 = 0) and, for
// a platform index, TPM2_PolicyOR over its two branches. It fails with
// ErrWriteWindowClosed once PCR 8 moved. The session is flushed.
func withWritePolicy(t transport.TPM, pub *tpm2.TPMSNVPublic, f func(tpm2.Session) error) error {
	sess, done, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return fmt.Errorf("TPM2_StartAuthSession: %w", err)
	}
	defer done()
	pcr, err := pcr8Zero().policyPCR()
	if err != nil {
		return err
	}
	pcr.PolicySession = sess.Handle()
	if _, err := pcr.Execute(t); err != nil {
		if errors.Is(err, tpm2.TPMRCValue) {
			return fmt.Errorf("%w: TPM2_PolicyPCR: %w", ErrWriteWindowClosed, err)
		}
		return fmt.Errorf("TPM2_PolicyPCR: %w", err)
	}
	if bytes.Equal(pub.AuthPolicy.Buffer, platformPolicy()) {
		_, err := tpm2.PolicyOr{PolicySession: sess.Handle(), PHashList: tpm2.TPMLDigest{Digests: []tpm2.TPM2BDigest{
			{Buffer: deletePolicy()}, {Buffer: writePolicy()}}}}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_PolicyOR: %w", err)
		}
	}
	return f(sess)
}

// writeAuth runs f with the authorization that writes the index pub
// describes: keel's write policy for today's layouts, the empty authValue
// for the issue-11 counter, owner authorization for the legacy one.
func writeAuth(t transport.TPM, pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName, f func(tpm2.AuthHandle) error) error {
	index := uint32(pub.NVIndex)
	switch {
	case pub.Attributes.PolicyWrite:
		return withWritePolicy(t, pub, func(s tpm2.Session) error {
			return f(tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: s})
		})
	case pub.Attributes.AuthWrite:
		return f(indexAuth(index, name))
	default:
		return f(tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)})
	}
}

// increment is one TPM2_NV_Increment (Part 3 §31.8) of the counter at
// index, authorized as writeAuth says. It fails with TPM_RC_NV_LOCKED
// after TPM2_NV_WriteLock until the next TPM Reset, and with
// ErrWriteWindowClosed (today's layout) once PCR 8 moved.
func increment(t transport.TPM, index uint32) error {
	pub, name, err := readNVPublic(t, index) // the name changes once written
	if err != nil {
		return err
	}
	err = writeAuth(t, pub, name, func(a tpm2.AuthHandle) error {
		_, err := tpm2.NVIncrement{
			AuthHandle: a,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
		}.Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("TPM2_NV_Increment(%#08x): %w", index, err)
	}
	return nil
}

// floorOf is the floor keel's counter c and record r enforce: the
// record's when it is written (never below an old counter still being
// migrated), else the counter's. rec is the record, if written.
func floorOf(c, r nvState) (floor uint64, rec *record, err error) {
	if r.layout == layoutRecord && r.written() {
		v, err := parseRecord(r.value)
		if err != nil {
			return 0, nil, err
		}
		if v.count == 0 && c.layout.old() {
			return max(v.floor, c.oldFloor()), &v, nil
		}
		return v.floor, &v, nil
	}
	switch {
	case !c.present:
		return 0, nil, fmt.Errorf("NV index %#08x: %w", c.index, ErrNoCounter)
	case c.layout == layoutCounter:
		if c.written() {
			return c.count() - 1, nil, nil
		}
		return 0, nil, nil
	case c.layout.old():
		return c.oldFloor(), nil, nil
	}
	return 0, nil, fmt.Errorf("NV index %#08x: %w (%s)", c.index, ErrCounterSquatted, describe(c.pub))
}

// ReadCounter returns the floor keel's counter at index (with its floor
// record) enforces: the minimum security version. It reads with the
// indices' own empty authorization (TPM2_NV_Read, Part 3 §31.13), so the
// OS can read it too (keel install): the record's floor when it is
// written, else the counter's value minus one (0 while it was never
// written; the value itself for the legacy counter). It is what keel-init
// enforces unless something changed since the boot: the next keel-init
// may find the counter or the record deleted, and decides then. A missing
// counter without a record is an error matching ErrNoCounter (and
// io/fs.ErrNotExist); anything that is not keel's is ErrCounterSquatted.
func ReadCounter(t transport.TPM, index uint32) (uint64, error) {
	c, err := readState(t, index)
	if err != nil {
		return 0, err
	}
	r, err := readState(t, recordOf(index))
	if err != nil {
		return 0, err
	}
	v, _, err := floorOf(c, r)
	return v, err
}

// AdvanceTo raises keel's floor (EnsureCounter first) to v and returns
// it. It never lowers it: a floor already at or above v is left alone.
// It writes the record first (floor v, and the count the counter will
// have), then increments the counter up to that count: a cut in between
// leaves the counter behind its record, which the next EnsureCounter
// catches up; the counter never gets ahead of its record. More than
// MaxAdvance increments are refused. It needs the write policy: only
// keel-init before its first measurement (ErrWriteWindowClosed), and
// after LockCounter it fails with TPM_RC_NV_LOCKED until the next TPM
// Reset.
func AdvanceTo(t transport.TPM, index uint32, v uint64) (uint64, error) {
	c, err := readState(t, index)
	if err != nil {
		return 0, err
	}
	r, err := readState(t, recordOf(index))
	if err != nil {
		return 0, err
	}
	cur, rec, err := floorOf(c, r)
	if err != nil {
		return 0, err
	}
	if cur >= v {
		return cur, nil
	}
	if v-cur > MaxAdvance {
		return cur, fmt.Errorf("NV counter %#08x: refusing to advance from %d to %d (more than %d increments)", index, cur, v, MaxAdvance)
	}
	if !c.written() || c.layout != layoutCounter && !c.layout.old() || c.layout == layoutCounter && rec == nil {
		return cur, fmt.Errorf("NV counter %#08x: not advanced: it is %s, %s (EnsureCounter first)", index, c.layout, map[bool]string{true: "written", false: "unwritten"}[c.written()])
	}
	count := c.count()
	if c.layout == layoutLegacy {
		count = c.count() + 1 // value = floor
	}
	need := uint64(0)
	if v+1 > count {
		need = v + 1 - count
	}
	if rec != nil {
		next := record{floor: v, count: count + need}
		if c.layout.old() {
			next.count = 0 // still being migrated
		}
		if err := putRecord(t, &r, next); err != nil {
			return cur, err
		}
	}
	for range need {
		if err := increment(t, index); err != nil {
			return cur, err
		}
	}
	return ReadCounter(t, index)
}

// LockCounter write-locks keel's counter and floor record
// (TPM2_NV_WriteLock, Part 3 §31.11, authorized as they are written):
// until the next TPM Reset or Restart (TPMA_NV_WRITE_STCLEAR) no
// TPM2_NV_Increment or TPM2_NV_Write succeeds, whoever asks
// (TPM_RC_NV_LOCKED). keel-init calls it before its first measurement,
// whatever the boot: the write policy already stops the OS, the lock also
// holds if a failing TPM left PCR 8 at zero. The legacy counter has no
// WRITE_STCLEAR and is skipped.
func LockCounter(t transport.TPM, index uint32) error {
	var errs []error
	for _, i := range []uint32{index, recordOf(index)} {
		pub, name, err := readNVPublic(t, i)
		if errors.Is(err, tpm2.TPMRCHandle) && i != index {
			continue // no record (an old counter that could not be migrated)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch l, _ := classify(pub); {
		case l == layoutLegacy && i == index:
			continue
		case i == index && l != layoutCounter && l != layoutV11, i != index && l != layoutRecord:
			errs = append(errs, fmt.Errorf("NV index %#08x: %w (%s)", i, ErrCounterSquatted, describe(pub)))
			continue
		}
		err = writeAuth(t, pub, name, func(a tpm2.AuthHandle) error {
			_, err := tpm2.NVWriteLock{AuthHandle: a, NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(i), Name: name}}.Execute(t)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("TPM2_NV_WriteLock(%#08x): %w", i, err))
		}
	}
	return errors.Join(errs...)
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
