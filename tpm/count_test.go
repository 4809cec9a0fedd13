package tpm

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/tpm/swtpmtest"
)

// countingTPM counts the commands sent.
type countingTPM struct {
	transport.TPM
	n atomic.Int64
}

func (c *countingTPM) Send(b []byte) ([]byte, error) {
	c.n.Add(1)
	return c.TPM.Send(b)
}

// TestCommandsPerBoot records how many TPM commands keel-init's TPM work
// costs per boot, in keel-init's order: the anti-rollback counter first
// (its write policy needs PCR 8 all zero: settle it, no advance, write
// locks, platform hierarchy off), then finding the banks, the seven boot
// measurements and the separator.
func TestCommandsPerBoot(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	if _, err := EnsureCounter(sw.TPM(), CounterIndex); err != nil {
		t.Fatal(err)
	}
	if _, err := AdvanceTo(sw.TPM(), CounterIndex, 1); err != nil {
		t.Fatal(err)
	}
	sw.Restart()
	c := &countingTPM{TPM: sw.TPM()}
	if _, err := EnsureCounter(c, CounterIndex); err != nil {
		t.Fatal(err)
	}
	if _, err := AdvanceTo(c, CounterIndex, 1); err != nil {
		t.Fatal(err)
	}
	if err := LockCounter(c, CounterIndex); err != nil {
		t.Fatal(err)
	}
	if ok, err := DisablePlatformHierarchy(c); !ok {
		t.Fatal(err)
	}
	counter := c.n.Load()
	m, err := NewMeasurer(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := MeasureBoot(m, testBoot("a", "normal")); err != nil {
		t.Fatal(err)
	}
	if err := Separator(m); err != nil {
		t.Fatal(err)
	}
	total := c.n.Load()
	// The counter: read public + read of the counter and of the record
	// (EnsureCounter: 4, AdvanceTo with nothing to do: 4), two write
	// locks (read public, start session, PolicyPCR, PolicyOR on the
	// platform path, NV_WriteLock, flush: 6 each), HierarchyControl.
	t.Logf("TPM commands per boot: %d for the counter, %d to measure (1 GetCapability + 8 PCR_Extend), %d in all", counter, total-counter, total)
	if counter != 21 || total-counter != 9 {
		t.Errorf("commands: counter %d (want 21), measure %d (want 9)", counter, total-counter)
	}
}

func FuzzReplayLog(f *testing.F) {
	f.Add(`{"pcr":8,"type":"keel.slot","digests":{"sha256":"81686574e7a08d1b9678cd83c72350067dfcdb2c1d4bd82ac7a196f17a0dfff0"},"data":"keel:slot=a"}`)
	f.Add(`{"pcr":9,"type":"x","digests":{"sha1":"dd0e80abb92b1bb40efbaa3036590fcb58250728"},"data_hex":"00ff"}` + "\n\n{}")
	f.Add(`{"pcr":99,"digests":{"sha256":""}}`)
	f.Fuzz(func(t *testing.T, s string) {
		vals, err := ReplayLog(strings.NewReader(s))
		if err != nil {
			return
		}
		for h, pcrs := range vals {
			for p, v := range pcrs {
				if p < 0 || p > 23 || len(v) != h.Size() {
					t.Fatalf("replay produced %v PCR %d = %x", h, p, v)
				}
			}
		}
	})
}
