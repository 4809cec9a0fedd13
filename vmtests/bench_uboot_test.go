package vmtests

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/keelboot/keel/vmtests/vmkit"
)

var (
	reStage1Start = regexp.MustCompile(`keel-init: \[\s*[0-9.]+\] stage 1\r*\n`)
	reSlotInit    = regexp.MustCompile(`KEEL-SLOT (\S+) (\S+) mode=(\S+)\r*\n`)
)

// BenchmarkBootPhases measures one boot of slot a (mode normal, after a
// first boot that set the state up) on each board, in the same run, in
// three phases:
//
//   - poweron-to-keel-init-ms: from QEMU's start until keel-init's first
//     line ("stage 1"): the firmware (OVMF, or U-Boot and boot.scr) and
//     keel's kernel booting;
//   - keel-init-to-kexec-ms: keel-init's own clock at its KEEL-KEXEC line
//     (stage 1: modules, the store, the decision and its commit,
//     verifying and loading the slot);
//   - poweron-to-slot-init-ms: from QEMU's start until the slot's init
//     (the test init's KEEL-SLOT line): the above, then the slot's
//     kernel, stage 2 (dm-verity) and switch_root.
//
// The firmware phases are read on the host's clock as the console lines
// arrive; each boot is a fresh QEMU, so its start-up is counted.
// qemu-x86_64-uefi runs with swtpm and without Secure Boot,
// qemu-arm64-uboot without a TPM (it has none); both under TCG.
//
//	make bench-boot
func BenchmarkBootPhases(b *testing.B) {
	for _, board := range []struct {
		name string
		art  func(testing.TB) *vmkit.Artefacts
	}{
		{"qemu-x86_64-uefi", func(tb testing.TB) *vmkit.Artefacts {
			tb.Helper()
			if built.err != nil {
				tb.Fatal(built.err)
			}
			return built.art
		}},
		{ubootBoard, ubootArtefacts},
	} {
		b.Run(board.name, func(b *testing.B) {
			art := board.art(b)
			ctx := context.Background()
			m, err := vmkit.NewMachine(ctx, art, b.TempDir(), map[string]vmkit.SlotSpec{
				"a": {Version: "1.0", SecurityVersion: 1}, "b": {Empty: true}})
			if err != nil {
				b.Fatal(err)
			}
			// The first boot initialises the state: not measured.
			r, err := m.PowerOn(ctx, 10*time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.Expect("KEEL-MARKED-GOOD"); err != nil {
				r.Kill()
				b.Fatal(err)
			}
			if err := r.PowerOff(); err != nil {
				b.Fatal(err)
			}
			var toInit, toKexec, toSlot time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, err := bootPhases(ctx, m)
				if err != nil {
					b.Fatal(err)
				}
				toInit += p.toInit
				toKexec += p.toKexec
				toSlot += p.toSlot
			}
			b.StopTimer()
			n := float64(b.N)
			ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
			b.ReportMetric(ms(toInit), "poweron-to-keel-init-ms")
			b.ReportMetric(ms(toKexec), "keel-init-to-kexec-ms")
			b.ReportMetric(ms(toSlot), "poweron-to-slot-init-ms")
			b.ReportMetric(ms(toSlot-toInit-toKexec), "kexec-to-slot-init-ms")
			fmt.Fprintf(os.Stderr, "boot phases %s (mean of %d): power-on -> keel-init %.1f s, keel-init -> kexec %.1f s, power-on -> slot init %.1f s\n",
				board.name, b.N, ms(toInit)/1000, ms(toKexec)/1000, ms(toSlot)/1000)
		})
	}
}

// phases is one boot's timing (see BenchmarkBootPhases).
type phases struct {
	toInit, toKexec, toSlot time.Duration
}

// bootPhases powers m on, reads the timings of one boot of slot a in
// mode normal, and stops the machine.
func bootPhases(ctx context.Context, m *vmkit.Machine) (phases, error) {
	var p phases
	start := time.Now()
	r, err := m.PowerOn(ctx, 10*time.Minute)
	if err != nil {
		return p, err
	}
	defer r.Kill()
	if _, err := r.ExpectRe(reStage1Start); err != nil {
		return p, err
	}
	p.toInit = time.Since(start)
	k, err := r.ExpectRe(reKexecCall)
	if err != nil {
		return p, err
	}
	sec, err := strconv.ParseFloat(k[1], 64)
	if err != nil {
		return p, err
	}
	p.toKexec = time.Duration(sec * float64(time.Second))
	s, err := r.ExpectRe(reSlotInit)
	if err != nil {
		return p, err
	}
	p.toSlot = time.Since(start)
	if s[1] != "a" || s[3] != "normal" {
		return p, fmt.Errorf("booted slot %s in mode %s, want a in mode normal", s[1], s[3])
	}
	return p, nil
}
