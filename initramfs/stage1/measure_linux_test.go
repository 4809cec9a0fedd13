//go:build linux

package stage1

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/swtpmtest"
)

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

// TestTPMMeasurerCounter: the device Measurer on swtpm, over two boots:
// the counter is created, advanced, locked against the OS, and after a
// TPM reset read back and advanced again.
func TestTPMMeasurerCounter(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	boot := func() (*tpmMeasurer, *[]string) {
		var log []string
		tm := &tpmMeasurer{t: nopCloser{sw.TPM()}, logf: func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) }}
		return tm, &log
	}
	tm, log := boot()
	if v, err := tm.MinSecurityVersion(); err != nil || v != 0 {
		t.Fatalf("first boot: %d, %v", v, err)
	}
	if err := tm.Advance(3); err != nil {
		t.Fatal(err)
	}
	if err := tm.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := tm.Advance(4); err == nil {
		t.Error("advanced after the lock")
	}
	// The OS: the index's own (empty) authorization no longer writes.
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(tpm.CounterIndex)}.Execute(sw.TPM())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(tpm.CounterIndex), Name: rsp.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(tpm.CounterIndex), Name: rsp.NVName},
	}.Execute(sw.TPM())
	if !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Errorf("the OS's increment: %v; want TPM_RC_NV_LOCKED", err)
	}
	if all := strings.Join(*log, "\n"); !strings.Contains(all, "created in the platform hierarchy") || !strings.Contains(all, "advanced to 3") {
		t.Errorf("log:\n%s", all)
	}
	sw.Restart()
	tm, _ = boot()
	if v, err := tm.MinSecurityVersion(); err != nil || v != 3 {
		t.Fatalf("second boot: %d, %v", v, err)
	}
	if err := tm.Advance(4); err != nil {
		t.Fatal(err)
	}
	if v, err := tpm.ReadCounter(sw.TPM(), tpm.CounterIndex); err != nil || v != 4 {
		t.Errorf("counter %d, %v; want 4", v, err)
	}
}
