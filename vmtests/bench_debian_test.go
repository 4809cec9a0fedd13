package vmtests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/vmtests/vmkit"
)

// BenchmarkDebianBoot (issue 13) times power-on to systemd's
// multi-user.target of the Debian root in slot a, booted by keel (firmware
// -> keel's UKI -> keel-init stage 1 -> kexec -> the slot's kernel and
// stage 2 -> systemd) and booted directly by the firmware without keel
// (firmware -> a UKI of the same slot kernel with keel's stage 2 as its
// initrd and the command line keel-init hands over, so that stage 2 maps
// the same root through the same dm-verity mapping -> systemd): the same
// VM configuration and the same disk bytes but for the ESP's boot file
// (vmkit.Machine.DirectMachine), alternating, in the same run. Times are
// the host's, from QEMU's start to systemd reaching multi-user.target
// (benchLines.multiUser). It reports both, their ratio, and where the time
// goes: power-on to keel-init's start, keel-init's start to its kexec
// call, kexec to stage 2's start, stage 2's start to multi-user.target
// (the slot OS's part, the same work in both boots); for the direct boot,
// power-on to stage 2's start and stage 2 to multi-user.target.
//
// The slot is committed by an untimed first power-on (keel-init sets up
// its record, stage 2 creates the slot's data area), whose console gives
// the hand-off command line; the direct machine is a copy of the disk,
// variable store and TPM state taken then. Every boot powers off by itself
// (keel-bench-poweroff.service, after multi-user.target).
// keel-mark-good.service, which multi-user.target waits for, runs in both
// (the direct boot's command line names the slot too); were it to fail
// there, multi-user.target would still be reached.
//
//	make bench-boot
func BenchmarkDebianBoot(b *testing.B) {
	art := built.art
	if built.err != nil {
		b.Fatal(built.err)
	}
	ctx := context.Background()
	dir := b.TempDir()
	keelDir, directDir := filepath.Join(dir, "keel"), filepath.Join(dir, "direct")
	for _, d := range []string{keelDir, directDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	deb := debianSized(art, 0)
	start := time.Now()
	km, err := vmkit.NewMachine(ctx, deb, keelDir, map[string]vmkit.SlotSpec{
		"a": {Version: "deb-a", SecurityVersion: 1, RootDir: benchDebianRoot(b, deb, filepath.Join(dir, "root-a"))},
		"b": {Empty: true},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("disk with the Debian slot built in %s", time.Since(start).Round(time.Millisecond))

	// The first power-on, untimed: the record, the data area, and the
	// hand-off command line.
	first := benchDebianBoot(b, km)
	handoff := first.match(reBenchHandoff)[2]
	b.Logf("first power-on: multi-user.target at %.1fs; keel-init hands over: %s", first.multiUser().Seconds(), handoff)
	dm, err := km.DirectMachine(ctx, directDir, "a", handoff)
	if err != nil {
		b.Fatal(err)
	}

	var keel, direct benchDebianTimes
	for b.Loop() {
		k := benchDebianBoot(b, km)
		if m := k.match(reDebStage2); m[1] != "a" || m[2] != "normal" {
			b.Fatalf("keel booted slot %s in mode %s, want a in normal", m[1], m[2])
		}
		k.at(reMarkedGood) // keel-mark-good.service committed the slot
		kt := k.milestones(true)
		d := benchDebianBoot(b, dm)
		if _, ok := d.find(reBenchKeelInit1); ok {
			b.Fatal("the direct boot ran keel's stage 1")
		}
		if m := d.match(reDebStage2); m[1] != "a" || m[2] != "normal" {
			b.Fatalf("the direct boot's stage 2 booted slot %s in mode %s, want a in normal", m[1], m[2])
		}
		if len(keel) == 0 {
			if l, ok := d.find(reMarkedGood); ok {
				b.Logf("direct boot: keel mark-good: %s", l.line)
			} else if l, ok := d.find(reBenchMarkGoodFailed); ok {
				b.Logf("direct boot: %s (keel did not start it)", l.line)
			}
		}
		dt := d.milestones(false)
		keel, direct = append(keel, kt), append(direct, dt)
		b.Logf("power-on %d: keel: keel-init at %.1fs, kexec at %.1fs, stage 2 at %.1fs, multi-user.target at %.1fs (console line %s); direct: stage 2 at %.1fs, multi-user.target at %.1fs (console line %s)",
			len(keel), kt.init.Seconds(), kt.kexec.Seconds(), kt.stage2.Seconds(), kt.multiUser.Seconds(), k.multiUserLine(),
			dt.stage2.Seconds(), dt.multiUser.Seconds(), d.multiUserLine())
	}
	mean := func(ts benchDebianTimes, f func(benchBootTimes) time.Duration) float64 {
		var sum time.Duration
		for _, t := range ts {
			sum += f(t)
		}
		return sum.Seconds() / float64(len(ts))
	}
	multiUser := func(t benchBootTimes) time.Duration { return t.multiUser }
	b.ReportMetric(mean(keel, multiUser), "keel-s/op")
	b.ReportMetric(mean(direct, multiUser), "direct-s/op")
	b.ReportMetric(mean(keel, multiUser)/mean(direct, multiUser), "keel/direct")
	b.ReportMetric(mean(keel, func(t benchBootTimes) time.Duration { return t.init }), "keel-poweron-to-init-s/op")
	b.ReportMetric(mean(keel, func(t benchBootTimes) time.Duration { return t.kexec - t.init }), "keel-init-to-kexec-s/op")
	b.ReportMetric(mean(keel, func(t benchBootTimes) time.Duration { return t.stage2 - t.kexec }), "keel-kexec-to-stage2-s/op")
	b.ReportMetric(mean(keel, func(t benchBootTimes) time.Duration { return t.multiUser - t.stage2 }), "keel-stage2-to-multiuser-s/op")
	b.ReportMetric(mean(direct, func(t benchBootTimes) time.Duration { return t.stage2 }), "direct-poweron-to-stage2-s/op")
	b.ReportMetric(mean(direct, func(t benchBootTimes) time.Duration { return t.multiUser - t.stage2 }), "direct-stage2-to-multiuser-s/op")
}

var (
	// reBenchHandoff is keel-init's last line before the kexec: the
	// slot, and the slot kernel's command line (the line logger shows
	// the console's carriage returns as ~).
	reBenchHandoff = regexp.MustCompile(`keel-init: \[\s*[0-9.]+\] kexec slot (\S+) \(version [^)]*\): ([^~]*[^~\s])`)
	// reBenchKeelInit is any keel-init line, with its own clock;
	// reBenchKeelInit1 one that only stage 1 prints.
	reBenchKeelInit  = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\]`)
	reBenchKeelInit1 = regexp.MustCompile(`keel-init: \[\s*[0-9.]+\] (kexec slot|KEEL-KEXEC)`)
	reBenchStage2    = regexp.MustCompile(`keel-init: \[\s*([0-9.]+)\] stage 2: slot`)
	// reBenchUp is keel-bench-poweroff.service's line: when
	// multi-user.target was reached (microseconds of CLOCK_MONOTONIC),
	// and the time it printed the line (/proc/uptime's seconds).
	reBenchUp             = regexp.MustCompile(`KEEL-BENCH-UP multi-user=(\d+) uptime=([0-9.]+)`)
	reBenchMarkGoodFailed = regexp.MustCompile(`Failed to start .*keel-mark-good|keel mark-good.*(error|refus|fail)`)
)

// benchBootTimes are the milestones of one boot, since QEMU's start:
// keel-init's start (stage 1) and its kexec call (through keel only), stage
// 2's start, and multi-user.target.
type benchBootTimes struct{ init, kexec, stage2, multiUser time.Duration }

// benchDebianTimes are the milestones of several boots.
type benchDebianTimes []benchBootTimes

// milestones reads a boot's milestones off its console: through keel
// (stage 1, kexec, stage 2) or direct (stage 2 only).
func (c *benchLines) milestones(viaKeel bool) benchBootTimes {
	c.b.Helper()
	t := benchBootTimes{stage2: c.keelInitStart(c.first(reBenchStage2)), multiUser: c.multiUser()}
	if viaKeel {
		t.init = c.keelInitStart(c.first(reBenchKeelInit))
		t.kexec = t.init + c.keelInitClock(c.first(reKexecCall))
	}
	return t
}

// benchDebianBoot powers m on and waits for the Debian root to reach
// multi-user.target and power off; it returns the console lines with
// their times since QEMU's start.
func benchDebianBoot(b *testing.B, m *vmkit.Machine) *benchLines {
	b.Helper()
	l := &benchLines{b: b, start: time.Now()}
	r, err := m.PowerOn(context.Background(), 10*time.Minute, qemu.LogSerialByLine(l.add))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Kill()
	ok := false
	defer func() {
		if !ok {
			l.dump()
		}
	}()
	for _, re := range []*regexp.Regexp{reSystemd, reBenchUp} {
		if _, err := r.ExpectRe(re); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Wait(); err != nil {
		b.Fatal(err)
	}
	ok = true
	return l
}

// benchLines records each console line of one power-on with its time since
// QEMU's start (as consoleLines does for the tests).
type benchLines struct {
	b     *testing.B
	start time.Time
	mu    sync.Mutex
	lines []timedLine
}

// add records a line (the serial line logger's callback).
func (c *benchLines) add(line string) {
	at := time.Since(c.start)
	c.mu.Lock()
	c.lines = append(c.lines, timedLine{at, line})
	c.mu.Unlock()
}

// find returns the first line matching re.
func (c *benchLines) find(re *regexp.Regexp) (timedLine, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if re.MatchString(l.line) {
			return l, true
		}
	}
	return timedLine{}, false
}

// first returns the first line matching re, or fails; it waits a little
// for the line logger, which runs beside the console reader.
func (c *benchLines) first(re *regexp.Regexp) timedLine {
	c.b.Helper()
	for range 50 {
		if l, ok := c.find(re); ok {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.dump()
	c.b.Fatalf("no console line matches %s", re)
	return timedLine{}
}

// at is the time of the first line matching re.
func (c *benchLines) at(re *regexp.Regexp) time.Duration { c.b.Helper(); return c.first(re).at }

// match returns the submatches of the first line matching re.
func (c *benchLines) match(re *regexp.Regexp) []string {
	c.b.Helper()
	return re.FindStringSubmatch(c.first(re).line)
}

// multiUser is when, since QEMU's start, systemd reached
// multi-user.target: the time keel-bench-poweroff.service's line came
// less the time between the two on the guest's clock. systemd's own
// console line (reMultiUser) would do, but systemd does not always print
// it: when the guest is starved of CPU (a soft lockup on a loaded host)
// its status output can stop before the target is reached.
func (c *benchLines) multiUser() time.Duration {
	c.b.Helper()
	l := c.first(reBenchUp)
	m := reBenchUp.FindStringSubmatch(l.line)
	reached, err1 := strconv.ParseInt(m[1], 10, 64)
	printed, err2 := strconv.ParseFloat(m[2], 64)
	if err1 != nil || err2 != nil || reached == 0 {
		c.b.Fatalf("keel-bench-poweroff.service's line: %q", l.line)
	}
	return l.at - (time.Duration(printed*float64(time.Second)) - time.Duration(reached)*time.Microsecond)
}

// multiUserLine is the time of systemd's console line for
// multi-user.target, for the log: a check of multiUser.
func (c *benchLines) multiUserLine() string {
	if l, ok := c.find(reMultiUser); ok {
		return fmt.Sprintf("at %.1fs", l.at.Seconds())
	}
	return "not printed"
}

// keelInitClock is the time keel-init printed on line l.
func (c *benchLines) keelInitClock(l timedLine) time.Duration {
	c.b.Helper()
	m := reBenchKeelInit.FindStringSubmatch(l.line)
	if m == nil {
		c.b.Fatalf("not a keel-init line: %q", l.line)
	}
	s, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		c.b.Fatal(err)
	}
	return time.Duration(s * float64(time.Second))
}

// keelInitStart is when, since QEMU's start, the keel-init that printed
// line l started: the line's host time less keel-init's own clock.
func (c *benchLines) keelInitStart(l timedLine) time.Duration {
	c.b.Helper()
	return l.at - c.keelInitClock(l)
}

// dump logs the console (after a failure).
func (c *benchLines) dump() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s strings.Builder
	for _, l := range c.lines {
		s.WriteString("[" + strconv.FormatFloat(l.at.Seconds(), 'f', 3, 64) + "s] " + l.line + "\n")
	}
	c.b.Logf("console:\n%s", s.String())
}

// benchDebianRoot copies the Debian root of make debian-root into dir,
// puts this suite's keel in it and adds keel-bench-poweroff.service, which
// prints KEEL-BENCH-UP and powers off once multi-user.target is reached
// and keel-mark-good.service has run (succeeded or not: it fails on a boot
// keel did not start).
func benchDebianRoot(b *testing.B, art *vmkit.Artefacts, dir string) string {
	b.Helper()
	src := debianRootDir(b)
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src+"/.", dir).CombinedOutput(); err != nil {
		b.Fatalf("copying the Debian root: %v\n%s", err, out)
	}
	keel, err := os.ReadFile(art.Keel)
	if err != nil {
		b.Fatal(err)
	}
	const unit = "keel-bench-poweroff.service"
	for name, f := range map[string]struct {
		data string
		mode os.FileMode
	}{
		"usr/bin/keel": {string(keel), 0o755},
		"etc/systemd/system/" + unit: {`[Unit]
Description=keel benchmark: power off once the system is up
After=multi-user.target keel-mark-good.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'm=$(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target); read up idle </proc/uptime; echo "KEEL-BENCH-UP multi-user=$m uptime=$up" >/dev/console; systemctl --no-block poweroff'

[Install]
WantedBy=multi-user.target
`, 0o644},
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			b.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			b.Fatal(err)
		}
	}
	link := filepath.Join(dir, "etc/systemd/system/multi-user.target.wants", unit)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/"+unit, link); err != nil {
		b.Fatal(err)
	}
	return dir
}
