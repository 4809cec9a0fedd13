package vmtests

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelboot/keel/vmtests/vmkit"
)

// BenchmarkBootSecureBoot boots the same disk (keel's signed UKI, slot a
// with its db-signed kernel) on two machines of the same VM configuration,
// one with OVMF's plain build and one with its Secure Boot build with
// keel's keys enrolled (enforcing; the enrolment boot is not timed), and
// reports per boot: power-on to the slot's init (host clock) and
// keel-init's start to its kexec call (keel-init's clock), for each, and
// their ratios. Each iteration boots both once, alternating.
//
//	make bench-boot
func BenchmarkBootSecureBoot(b *testing.B) {
	art := built.art
	if built.err != nil {
		b.Fatal(built.err)
	}
	ctx := context.Background()
	slots := map[string]vmkit.SlotSpec{"a": {Version: "1.0", SecurityVersion: 1}, "b": {Empty: true}}
	machine := func(name string, sb bool) *vmkit.Machine {
		dir := filepath.Join(b.TempDir(), name)
		os.MkdirAll(dir, 0o755)
		m, err := vmkit.NewMachine(ctx, art, dir, slots)
		if err != nil {
			b.Fatal(err)
		}
		m.SecureBoot = sb
		return m
	}
	plain, sb := machine("plain", false), machine("secureboot", true)
	// The factory step, untimed.
	r, err := sb.PowerOn(ctx, 5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, _, err := r.Booted(); err != nil {
		r.Kill()
		b.Fatal(err)
	}
	if rc, out, err := r.KeelOutput("secureboot enroll " + vmkit.EnrolmentDir); err != nil || rc != 0 {
		r.Kill()
		b.Fatalf("enroll: rc %d, %v\n%s", rc, err, out)
	}
	if err := r.PowerOff(); err != nil {
		b.Fatal(err)
	}

	boot := func(m *vmkit.Machine, wantSB string) (total time.Duration, keelInit float64) {
		start := time.Now()
		r, err := m.PowerOn(ctx, 5*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Kill()
		if _, err := r.Expect(wantSB); err != nil {
			b.Fatal(err)
		}
		keelInit = consoleSeconds(b, r, reKexecCall)
		if _, _, _, err := r.Booted(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), keelInit
	}
	var plainTotal, sbTotal time.Duration
	var plainInit, sbInit float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t, k := boot(plain, "Secure Boot is OFF")
		plainTotal, plainInit = plainTotal+t, plainInit+k
		t, k = boot(sb, "Secure Boot: on")
		sbTotal, sbInit = sbTotal+t, sbInit+k
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(plainTotal.Seconds()/n*1000, "plain-poweron-to-init-ms")
	b.ReportMetric(sbTotal.Seconds()/n*1000, "sb-poweron-to-init-ms")
	b.ReportMetric(sbTotal.Seconds()/plainTotal.Seconds(), "sb/plain-poweron-to-init")
	b.ReportMetric(plainInit/n*1000, "plain-keel-init-ms")
	b.ReportMetric(sbInit/n*1000, "sb-keel-init-ms")
	b.ReportMetric(sbInit/plainInit, "sb/plain-keel-init")
}
