//go:build linux

package stage1

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/memstore"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/swtpmtest"
)

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

// swtpmMeasurer is the device Measurer over sw, its log lines in log.
func swtpmMeasurer(t *testing.T, sw *swtpmtest.SWTPM, log *[]string) *tpmMeasurer {
	t.Helper()
	tm := &tpmMeasurer{t: nopCloser{sw.TPM()}, logf: func(f string, a ...any) { *log = append(*log, fmt.Sprintf(f, a...)) }}
	m, err := tpm.NewMeasurer(sw.TPM(), &tm.log)
	if err != nil {
		t.Fatal(err)
	}
	tm.m = m
	return tm
}

// digestLoader is fakeLoader with image digests, so that the device
// Measurer can measure its images.
type digestLoader struct{ fakeLoader }

func (l *digestLoader) LoadSlot(ctx context.Context, slot string) (*Image, error) {
	img, err := l.fakeLoader.LoadSlot(ctx, slot)
	if err == nil {
		img.Manifest.Kernel.SHA256 = strings.Repeat("ab", 32)
		img.Manifest.Initrd.SHA256 = strings.Repeat("cd", 32)
	}
	return img, err
}

// TestTPMMeasurerCounter: Boot with the device Measurer on swtpm, over
// boots of a committed slot: the counter is created and advanced to the
// slot's security version before the boot is measured (its write policy
// needs PCR 8 all zero), locked, and the OS, after the handoff, cannot
// raise it; the next boot reads it back and advances it again.
func TestTPMMeasurerCounter(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	s := memstore.New()
	r, _ := bootenv.Init(nil, "a")
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	boot := func(secver uint64) []string {
		var log []string
		tm := swtpmMeasurer(t, sw, &log)
		k := &fakeKexec{store: s}
		l := &digestLoader{fakeLoader{secver: map[string]uint64{"a": secver, "b": 1}}}
		if _, err := Boot(context.Background(), Config{Slots: []string{"a", "b"}, Store: cmdline.Store{Kind: cmdline.StoreEFIVars}, Measurer: tm, TPMRequired: true},
			s, l, k, func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) }); err != nil || k.booted != "a" {
			t.Fatalf("boot: %v, booted %q\n%s", err, k.booted, strings.Join(log, "\n"))
		}
		if tm.Advance(secver+1) == nil {
			t.Error("advanced after the lock")
		}
		return log
	}
	log := boot(3)
	if all := strings.Join(log, "\n"); !strings.Contains(all, "created in the platform hierarchy") || !strings.Contains(all, "advanced to 3") || strings.Contains(all, "WARNING") {
		t.Errorf("log:\n%s", all)
	}
	// The OS, after the handoff: the index's own (empty) authorization
	// no longer writes (no AUTHWRITE), and PCR 8 is no longer zero.
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(tpm.CounterIndex)}.Execute(sw.TPM())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(tpm.CounterIndex), Name: rsp.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(tpm.CounterIndex), Name: rsp.NVName},
	}.Execute(sw.TPM())
	if !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
		t.Errorf("the OS's increment: %v; want TPM_RC_AUTH_UNAVAILABLE", err)
	}
	if _, err := tpm.AdvanceTo(sw.TPM(), tpm.CounterIndex, 9); !errors.Is(err, tpm.ErrWriteWindowClosed) && !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Errorf("keel's own AdvanceTo after the handoff: %v", err)
	}
	sw.Restart()
	log = boot(4)
	if all := strings.Join(log, "\n"); !strings.Contains(all, "anti-rollback counter: 3 (platform hierarchy)") || !strings.Contains(all, "advanced to 4") {
		t.Errorf("log:\n%s", all)
	}
	if v, err := tpm.ReadCounter(sw.TPM(), tpm.CounterIndex); err != nil || v != 4 {
		t.Errorf("counter %d, %v; want 4", v, err)
	}
}
