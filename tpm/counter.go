package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// CounterIndex is keel's anti-rollback NV counter: an index in the TCG
// registry's owner range 0x01800000-0x01BFFFFF ("KE" in the low bytes).
const CounterIndex uint32 = 0x01804B45

// MaxAdvance bounds the increments one AdvanceTo may issue: security
// versions are small numbers, NV has finite write endurance.
const MaxAdvance = 1024

// ErrCounterSquatted says the NV index exists but is not a keel counter.
var ErrCounterSquatted = errors.New("NV index exists but is not a NoDA counter readable with empty auth")

func counterAttrs() tpm2.TPMANV {
	return tpm2.TPMANV{
		NT:         tpm2.TPMNTCounter,
		OwnerWrite: true, // only the owner hierarchy increments
		OwnerRead:  true,
		AuthRead:   true, // anyone may read it with the index's empty auth
		NoDA:       true,
	}
}

// EnsureCounter defines the counter at index in the owner hierarchy
// (TPM2_NV_DefineSpace, Part 3 §31.3) unless it exists. An existing index
// must be an 8-byte NoDA counter with the attributes keel sets, else
// ErrCounterSquatted. The owner authorization is assumed empty.
func EnsureCounter(t transport.TPM, index uint32) error {
	pub, _, err := readNVPublic(t, index)
	if err == nil {
		want := counterAttrs()
		a := pub.Attributes
		if a.NT != tpm2.TPMNTCounter || !a.NoDA || !a.OwnerWrite || !a.AuthRead || a.PolicyDelete || pub.DataSize != 8 {
			return fmt.Errorf("NV index %#08x: %w (attributes %+v, want %+v)", index, ErrCounterSquatted, a, want)
		}
		return nil
	}
	if !errors.Is(err, tpm2.TPMRCHandle) {
		return err
	}
	def := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    tpm2.TPMHandle(index),
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: counterAttrs(),
			DataSize:   8,
		}),
	}
	if _, err := def.Execute(t); err != nil {
		return fmt.Errorf("TPM2_NV_DefineSpace(%#08x): %w", index, err)
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

// ReadCounter returns the counter's value (TPM2_NV_Read, Part 3 §31.13,
// authorized by the index itself with its empty auth). A counter that was
// never incremented reads 0.
func ReadCounter(t transport.TPM, index uint32) (uint64, error) {
	pub, name, err := readNVPublic(t, index)
	if err != nil {
		return 0, err
	}
	if pub.Attributes.NT != tpm2.TPMNTCounter {
		return 0, fmt.Errorf("NV index %#08x: %w", index, ErrCounterSquatted)
	}
	if !pub.Attributes.Written {
		return 0, nil
	}
	nv := tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    nv,
		Size:       8,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("TPM2_NV_Read(%#08x): %w", index, err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("TPM2_NV_Read(%#08x): %d bytes", index, len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// AdvanceTo increments the counter (TPM2_NV_Increment, Part 3 §31.8, owner
// authorization) until it is at least v and returns its value. It never
// decreases it: a counter already at or above v is left alone. The first
// increment of a new index may jump above v: the TPM starts a counter at the
// highest value any counter ever had (Part 1, NV counters), so a fresh
// counter on a used TPM may exceed keel's security versions.
func AdvanceTo(t transport.TPM, index uint32, v uint64) (uint64, error) {
	cur, err := ReadCounter(t, index)
	if err != nil {
		return 0, err
	}
	if cur >= v {
		return cur, nil
	}
	if v-cur > MaxAdvance {
		return cur, fmt.Errorf("NV counter %#08x: refusing to advance from %d to %d (more than %d increments)", index, cur, v, MaxAdvance)
	}
	for cur < v {
		_, name, err := readNVPublic(t, index) // the name changes once written
		if err != nil {
			return cur, err
		}
		_, err = tpm2.NVIncrement{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
		}.Execute(t)
		if err != nil {
			return cur, fmt.Errorf("TPM2_NV_Increment(%#08x): %w", index, err)
		}
		if cur, err = ReadCounter(t, index); err != nil {
			return cur, err
		}
	}
	return cur, nil
}
