package vmtests

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/vmtests/vmkit"
)

var (
	reKexecStart = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\] kexec slot`)
	reKexecCall  = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\] KEEL-KEXEC`)
	reBare       = regexp.MustCompile(`KEEL-BENCH handoff ([0-9.]+)\r*\n`)
)

// BenchmarkBootToHandoff measures, on the same VM configuration (q35,
// OVMF, swtpm, TCG, the same kernel and UKI layout), keel-init's time from
// its start to the kexec call (reboot(LINUX_REBOOT_CMD_KEXEC)) against a
// bare static Go init that only mounts and execs, and reports the
// compressed initramfs sizes. Each iteration boots both machines once.
//
//	make bench-boot
func BenchmarkBootToHandoff(b *testing.B) {
	art := built.art
	if built.err != nil {
		b.Fatal(built.err)
	}
	ctx := context.Background()
	dir := b.TempDir()
	keelDir, bareDir := filepath.Join(dir, "keel"), filepath.Join(dir, "bare")
	os.MkdirAll(keelDir, 0o755)
	os.MkdirAll(bareDir, 0o755)
	km, err := vmkit.NewMachine(ctx, art, keelDir, map[string]vmkit.SlotSpec{"a": {Version: "1.0", SecurityVersion: 1}, "b": {Empty: true}})
	if err != nil {
		b.Fatal(err)
	}
	bm := &vmkit.Machine{Art: art, Dir: bareDir, Disk: filepath.Join(bareDir, "disk.img"), Vars: filepath.Join(bareDir, "OVMF_VARS.fd")}
	if err := art.BareDisk(ctx, bm.Disk); err != nil {
		b.Fatal(err)
	}
	if err := vmkit.CopyVars(art.Board, bm.Vars); err != nil {
		b.Fatal(err)
	}
	seconds := func(r *vmkit.Run, re *regexp.Regexp) float64 { return consoleSeconds(b, r, re) }
	var keelTotal, keelVerify, bareTotal float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := km.PowerOn(ctx, 5*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		start := seconds(r, reKexecStart)
		end := seconds(r, reKexecCall)
		r.Kill()
		keelVerify += start
		keelTotal += end

		r, err = bm.PowerOn(ctx, 5*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		bareTotal += seconds(r, reBare)
		if _, err := r.Expect("KEEL-BARE-DONE"); err != nil {
			r.Kill()
			b.Fatal(err)
		}
		r.Kill()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(keelTotal/n*1000, "keel-init-ms")
	b.ReportMetric(keelVerify/n*1000, "keel-to-kexec-load-ms")
	b.ReportMetric((keelTotal-keelVerify)/n*1000, "kexec-load-ms")
	b.ReportMetric(bareTotal/n*1000, "bare-init-ms")
	if bareTotal > 0 {
		b.ReportMetric(keelTotal/bareTotal, "keel/bare")
	}
	for name, p := range map[string]string{"keel-initramfs-KiB": art.Stage1, "stage2-initrd-KiB": art.Stage2, "bare-initramfs-KiB": art.Bare} {
		if fi, err := os.Stat(p); err == nil {
			b.ReportMetric(float64(fi.Size())/1024, name)
		}
	}
}

var (
	reStage2Start = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\] stage 2:`)
	reVerityUp    = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\] dm-verity: `)
	reSwitchRoot  = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\] KEEL-SWITCHROOT`)
)

// BenchmarkVerityBootCost boots slot a with a 64 MiB and with a 1 GiB root
// filesystem (dm-verity, same VM configuration) and reports keel-init's
// time to the kexec call and stage 2's time to set up verity and to switch
// root: with verity checking blocks lazily, neither grows with the root.
//
//	make bench-verity
func BenchmarkVerityBootCost(b *testing.B) {
	art := built.art
	if built.err != nil {
		b.Fatal(built.err)
	}
	ctx := context.Background()
	for _, size := range []struct {
		name   string
		padMiB int
	}{{"64MiB", 60}, {"1GiB", 1020}} {
		b.Run(size.name, func(b *testing.B) {
			big := *art
			big.Board.Layout = append([]boards.Partition(nil), art.Board.Layout...)
			for i := range big.Board.Layout {
				if big.Board.Layout[i].Name == layout.RootPartition("a") {
					big.Board.Layout[i].SizeMB = size.padMiB + 64
				}
			}
			big.Board.DiskMB += size.padMiB + 64
			dir := b.TempDir()
			m, err := vmkit.NewMachine(ctx, &big, dir, map[string]vmkit.SlotSpec{
				"a": {Version: "1.0", SecurityVersion: 1, PadMiB: size.padMiB}, "b": {Empty: true}})
			if err != nil {
				b.Fatal(err)
			}
			seconds := func(r *vmkit.Run, re *regexp.Regexp) float64 { return consoleSeconds(b, r, re) }
			var kexec, verity, switchRoot float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := m.PowerOn(ctx, 5*time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				kexec += seconds(r, reKexecCall)
				s2 := seconds(r, reStage2Start)
				verity += seconds(r, reVerityUp) - s2
				switchRoot += seconds(r, reSwitchRoot) - s2
				r.Kill()
			}
			n := float64(b.N)
			b.ReportMetric(kexec/n*1000, "stage1-to-kexec-ms")
			b.ReportMetric(verity/n*1000, "stage2-verity-setup-ms")
			b.ReportMetric(switchRoot/n*1000, "stage2-to-switchroot-ms")
		})
	}
}

// consoleSeconds waits for re on the console and returns its first
// submatch, a keel-init timestamp in seconds.
func consoleSeconds(b *testing.B, r *vmkit.Run, re *regexp.Regexp) float64 {
	b.Helper()
	m, err := r.ExpectRe(re)
	if err != nil {
		r.Kill()
		b.Fatal(err)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
