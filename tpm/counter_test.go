package tpm

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/keelboot/keel/tpm/swtpmtest"
)

func TestCounter(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	if _, err := ReadCounter(sw.TPM(), CounterIndex); err == nil {
		t.Fatal("reading an undefined counter succeeded")
	}
	if err := EnsureCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatal(err)
	}
	if err := EnsureCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatalf("second EnsureCounter: %v", err)
	}
	v, err := ReadCounter(sw.TPM(), CounterIndex)
	if err != nil || v != 0 {
		t.Fatalf("new counter = %d, %v; want 0", v, err)
	}
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 0); err != nil || v != 0 {
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

	// Survives a TPM restart on the same state (a reboot).
	sw.Restart()
	if v, err = ReadCounter(sw.TPM(), CounterIndex); err != nil || v != 5 {
		t.Fatalf("after restart: %d, %v; want 5", v, err)
	}
	if err := EnsureCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatalf("EnsureCounter after restart: %v", err)
	}
	if v, err = AdvanceTo(sw.TPM(), CounterIndex, 6); err != nil || v != 6 {
		t.Fatalf("AdvanceTo(6) after restart = %d, %v", v, err)
	}

	// An ordinary index squatting on a keel index is refused.
	const other = CounterIndex + 1
	_, err = tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: tpm2.TPMHandle(other), NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, OwnerRead: true, AuthRead: true, AuthWrite: true, NoDA: true},
			DataSize:   8,
		}),
	}.Execute(sw.TPM())
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureCounter(sw.TPM(), other); !errors.Is(err, ErrCounterSquatted) {
		t.Errorf("EnsureCounter on an ordinary index: %v", err)
	}
	if _, err := ReadCounter(sw.TPM(), other); !errors.Is(err, ErrCounterSquatted) {
		t.Errorf("ReadCounter on an ordinary index: %v", err)
	}
}
