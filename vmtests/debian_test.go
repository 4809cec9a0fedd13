package vmtests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// The Debian + systemd slots (issue 13): the slot root is the Debian
// bookworm root `make debian-root` builds (scripts/debian-root.sh: systemd,
// keel, keel-mark-good.service, the watchdog drop-in), with a few test
// units added per scenario:
//
//   - keel-test-health.service, a health check as systemd users write one
//     (Before=boot-complete.target, RequiredBy=boot-complete.target): prints
//     KEEL-HEALTH <slot> ok|fail and the watchdog's state, and exits 0 or 1
//     after /etc/keel-test/health;
//   - keel-test-report.service, after keel-mark-good.service: prints
//     KEEL-STATUS <keel status --json, one line> and the watchdog's state,
//     then `keel try` the slot in /etc/keel-test/try (on a normal boot) and
//     reboots, or powers off.
//
// The proof is the console: systemd's own status lines, the test units'
// markers, and keel mark-good's output (keel-mark-good.service logs to the
// console).

// debianRootDir is where make debian-root leaves the slot root.
func debianRootDir(t *testing.T) string {
	t.Helper()
	root, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "build", "debian-root", "root")
	if _, err := os.Stat(filepath.Join(dir, "usr", "lib", "systemd", "system", "keel-mark-good.service")); err != nil {
		t.Fatalf("no Debian root: %v: build it first with make debian-root (make vmtest and make test do)", err)
	}
	return dir
}

// debianSlot describes one Debian slot of a test disk.
type debianSlot struct {
	health string // "ok" or "fail"
	try    string // the slot to `keel try` after a normal boot, or ""
}

// debianRoot copies the Debian root into dir, puts this suite's keel in it
// and adds the test units.
func debianRoot(t *testing.T, art *vmkit.Artefacts, dir string, s debianSlot) string {
	t.Helper()
	if out, err := exec.Command("cp", "-a", "--reflink=auto", debianRootDir(t)+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copying the Debian root: %v\n%s", err, out)
	}
	keel, err := os.ReadFile(art.Keel)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"usr/bin/keel":         string(keel),
		"etc/keel-test/health": s.health + "\n",
		"etc/systemd/system/keel-test-health.service": `[Unit]
Description=keel test health check
Before=boot-complete.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/bin/keel-test-health
StandardOutput=journal+console

[Install]
RequiredBy=boot-complete.target
`,
		"usr/local/bin/keel-test-health": `#!/bin/sh
slot=$(sed -n 's/.*keel\.slot=\([^ ]*\).*/\1/p' /proc/cmdline)
health=$(cat /etc/keel-test/health)
echo "KEEL-WATCHDOG before-commit $(cat /sys/class/watchdog/watchdog0/state 2>&1) $(systemctl show -p RuntimeWatchdogUSec)"
echo "KEEL-HEALTH $slot $health"
[ "$health" = ok ]
`,
		"etc/systemd/system/keel-test-report.service": `[Unit]
Description=keel test report
Requires=keel-mark-good.service
After=keel-mark-good.service multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/keel-test-report
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`,
		"usr/local/bin/keel-test-report": `#!/bin/sh
mode=$(sed -n 's/.*keel\.mode=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "KEEL-WATCHDOG after-commit $(cat /sys/class/watchdog/watchdog0/state 2>&1)"
echo "KEEL-STATUS $(keel status --json | tr -d '\n')"
echo "KEEL-FAILED-UNITS [$(systemctl list-units --failed --no-legend --plain | cut -d' ' -f1 | tr '\n' ' ')]"
if [ -s /etc/keel-test/try ] && [ "$mode" = normal ]; then
	keel try "$(cat /etc/keel-test/try)" --tries 1 || echo "KEEL-TRY-FAILED rc=$?"
	echo KEEL-TEST-REBOOT
	systemctl --no-block reboot
else
	echo KEEL-TEST-POWEROFF
	systemctl --no-block poweroff
fi
`,
	}
	if s.try != "" {
		files["etc/keel-test/try"] = s.try + "\n"
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.Contains(name, "/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	// systemctl enable, as symbolic links.
	for link, unit := range map[string]string{
		"boot-complete.target.requires/keel-test-health.service": "keel-test-health.service",
		"multi-user.target.wants/keel-test-report.service":       "keel-test-report.service",
	} {
		p := filepath.Join(dir, "etc/systemd/system", link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc/systemd/system/"+unit, p); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// debianArtefacts are the suite's artefacts with root partitions large
// enough for the Debian root (about 115 MiB of erofs).
func debianArtefacts(t *testing.T) *vmkit.Artefacts {
	t.Helper()
	const rootMiB = 160
	art := *artefacts(t)
	art.Board.Layout = append(art.Board.Layout[:0:0], art.Board.Layout...)
	for i, p := range art.Board.Layout {
		for _, s := range art.Board.Slots {
			if p.Name == layout.RootPartition(s) {
				art.Board.DiskMB += rootMiB - p.SizeMB
				art.Board.Layout[i].SizeMB = rootMiB
			}
		}
	}
	return &art
}

// newDebianMachine builds a disk whose slots hold the Debian root (the
// names in deb) or nothing.
func newDebianMachine(t *testing.T, deb map[string]debianSlot) *vmkit.Machine {
	t.Helper()
	art := debianArtefacts(t)
	slots := map[string]vmkit.SlotSpec{}
	for _, name := range art.Board.Slots {
		s, ok := deb[name]
		if !ok {
			slots[name] = vmkit.SlotSpec{Empty: true}
			continue
		}
		dir := filepath.Join(t.TempDir(), "root-"+name)
		slots[name] = vmkit.SlotSpec{Version: "deb-" + name, SecurityVersion: 1, RootDir: debianRoot(t, art, dir, s)}
	}
	start := time.Now()
	m, err := vmkit.NewMachine(context.Background(), art, t.TempDir(), slots)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk with the Debian slots built in %s", time.Since(start).Round(time.Millisecond))
	return m
}

// consoleLines records each console line with the time since power-on.
type consoleLines struct {
	t     *testing.T
	start time.Time
	mu    sync.Mutex
	lines []timedLine
}

type timedLine struct {
	at   time.Duration
	line string
}

func (c *consoleLines) print(line string) {
	at := time.Since(c.start)
	c.mu.Lock()
	c.lines = append(c.lines, timedLine{at, line})
	c.mu.Unlock()
	c.t.Logf("%s [%7.3fs] %s", c.t.Name(), at.Seconds(), line)
}

// find returns the first line at or after from matching re, and its time.
func (c *consoleLines) find(re *regexp.Regexp, from time.Duration) (timedLine, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if l.at >= from && re.MatchString(l.line) {
			return l, true
		}
	}
	return timedLine{}, false
}

// debianRun is one power-on of a Debian machine.
type debianRun struct {
	t   *testing.T
	r   *vmkit.Run
	log *consoleLines
}

func powerOnDebian(t *testing.T, m *vmkit.Machine, timeout time.Duration) *debianRun {
	t.Helper()
	log := &consoleLines{t: t, start: time.Now()}
	r, err := m.PowerOn(context.Background(), timeout, qemu.LogSerialByLine(log.print))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)
	return &debianRun{t: t, r: r, log: log}
}

// expect waits for a console line matching re and returns it.
func (d *debianRun) expect(re *regexp.Regexp) []string {
	d.t.Helper()
	m, err := d.r.ExpectRe(re)
	if err != nil {
		d.t.Fatal(err)
	}
	return m
}

// since is the time since power-on at which the line matching re was
// printed, at or after from; it waits a little for the line logger, which
// runs beside the console reader.
func (d *debianRun) since(re *regexp.Regexp, from time.Duration) time.Duration {
	d.t.Helper()
	for i := 0; i < 50; i++ {
		if l, ok := d.log.find(re, from); ok {
			return l.at
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatalf("no console line matches %s", re)
	return 0
}

var (
	reDebStage2     = regexp.MustCompile(`stage 2: slot (\S+) \(mode (\S+)\)`)
	reDebSwitchRoot = regexp.MustCompile(`KEEL-SWITCHROOT exec /sbin/init`)
	reSystemd       = regexp.MustCompile(`Welcome to .*Debian GNU/Linux 12`)
	reMultiUser     = regexp.MustCompile(`Reached target .*(multi-user\.target|Multi-User System)`)
	reMarkedGood    = regexp.MustCompile(`slot (\S+) is good and active \(generation \d+\)`)
	reDebHealth     = regexp.MustCompile(`KEEL-HEALTH (\S+) (\S+)\r*\n`)
	reHealthLine    = regexp.MustCompile(`KEEL-HEALTH \S+ \S+`)
	reDebStatus     = regexp.MustCompile(`KEEL-STATUS (\{[^\r\n]*\})\r*\n`)
	reFailedUnits   = regexp.MustCompile(`KEEL-FAILED-UNITS \[([^\]\r\n]*)\]`)
	reTestPowerOff  = regexp.MustCompile(`KEEL-TEST-POWEROFF`)
	reTestReboot    = regexp.MustCompile(`KEEL-TEST-REBOOT`)
	reNoCommit      = regexp.MustCompile(`Dependency failed for .*keel.mark-good`)
)

// booted waits for stage 2 to hand over slot in mode.
func (d *debianRun) booted(slot, mode string) {
	d.t.Helper()
	m := d.expect(reDebStage2)
	if m[1] != slot || m[2] != mode {
		d.t.Fatalf("stage 2 booted slot %s in mode %s, want slot %s in mode %s", m[1], m[2], slot, mode)
	}
	d.expect(reDebSwitchRoot)
	d.expect(reSystemd)
}

// status waits for the report unit's keel status --json.
func (d *debianRun) status() vmkit.Status {
	d.t.Helper()
	m := d.expect(reDebStatus)
	var s vmkit.Status
	if err := json.Unmarshal([]byte(m[1]), &s); err != nil {
		d.t.Fatalf("KEEL-STATUS: %v in %q", err, m[1])
	}
	s.Raw = m[1]
	// The Debian root boots without a failed unit.
	if f := d.expect(reFailedUnits); strings.TrimSpace(f[1]) != "" {
		d.t.Errorf("failed units in slot %s: %s", deref(s.Active), f[1])
	}
	return s
}

// committed checks, once a boot of slot has printed its report, that
// systemd ran the health check before boot-complete.target, that
// keel-mark-good.service committed the slot, and that the watchdog
// keel-init armed ran until the commit and was stopped by it. It returns
// the times of multi-user.target and of the commit.
func (d *debianRun) committed(slot string, from time.Duration) (multiUser, commit time.Duration) {
	d.t.Helper()
	health := d.since(reHealthLine, from)
	commit = d.since(reMarkedGood, from)
	multiUser = d.since(reMultiUser, from)
	if health > commit {
		d.t.Errorf("slot %s: mark-good at %s, before the health check at %s", slot, commit, health)
	}
	for _, want := range []struct{ when, state string }{{"before", "active"}, {"after", "inactive"}} {
		re := regexp.MustCompile(`KEEL-WATCHDOG ` + want.when + `-commit (\S+)(.*)`)
		d.since(re, from)
		l, _ := d.log.find(re, from)
		if m := re.FindStringSubmatch(l.line); m[1] != want.state {
			d.t.Errorf("slot %s: the watchdog %s the commit: %q, want %s", slot, want.when, l.line, want.state)
		}
		if want.when == "before" && !strings.Contains(l.line, "RuntimeWatchdogUSec=0") {
			d.t.Errorf("slot %s: systemd's runtime watchdog is not off: %q", slot, l.line)
		}
	}
	return multiUser, commit
}

// TestDebianFirstBoot: the Debian + systemd root in slot a of a new
// device. keel initialises the record and boots a; stage 2 maps its root
// (erofs under dm-verity, read-only) and switches to systemd, which reaches
// multi-user.target; the health unit (Before=boot-complete.target) passes,
// keel-mark-good.service commits the slot and stops the watchdog; keel
// status in the slot says a is good and active. The second power-on boots a
// in mode normal, committed again.
func TestDebianFirstBoot(t *testing.T) {
	t.Parallel()
	m := newDebianMachine(t, map[string]debianSlot{"a": {health: "ok"}})
	for i, mode := range []string{"normal", "normal"} {
		r := powerOnDebian(t, m, 2*bootTimeout)
		r.booted("a", mode)
		s := r.status()
		r.expect(reTestPowerOff)
		if deref(s.Active) != "a" || s.Trial != nil || s.Slots["a"].State != "good" || s.Slots["b"].State != "empty" {
			t.Errorf("power-on %d: status in slot a: %s", i+1, s.Raw)
		}
		if err := r.r.Wait(); err != nil {
			t.Fatal(err)
		}
		multiUser, commit := r.committed("a", 0)
		switchRoot := r.since(reDebSwitchRoot, 0)
		t.Logf("power-on %d: switch_root at %.1fs, multi-user.target at %.1fs, slot committed at %.1fs (power-on to multi-user.target %.1fs, of which systemd %.1fs)",
			i+1, switchRoot.Seconds(), multiUser.Seconds(), commit.Seconds(), multiUser.Seconds(), (multiUser - switchRoot).Seconds())
	}
}

// TestDebianFailedHealth: an update whose health check fails. a (healthy)
// commits itself and puts b on trial for one boot; b boots, systemd runs
// b's failing health unit, boot-complete.target fails and
// keel-mark-good.service never runs ("Dependency failed"), so the watchdog
// keel-init armed resets the machine; b's try is spent and keel-init falls
// back to a, which commits itself again and finds b bad.
func TestDebianFailedHealth(t *testing.T) {
	t.Parallel()
	m := newDebianMachine(t, map[string]debianSlot{
		"a": {health: "ok", try: "b"},
		"b": {health: "fail"},
	})
	r := powerOnDebian(t, m, 5*bootTimeout)
	r.booted("a", "normal")
	if s := r.status(); deref(s.Active) != "a" || s.Slots["a"].State != "good" {
		t.Errorf("status in slot a: %s", s.Raw)
	}
	r.expect(reTestReboot)
	r.committed("a", 0)

	r.booted("b", "trial")
	bStart := r.since(reDebSwitchRoot, r.since(regexp.MustCompile(`stage 2: slot b`), 0))
	if m := r.expect(reDebHealth); m[1] != "b" || m[2] != "fail" {
		t.Fatalf("health check in b: %q", m[0])
	}
	r.expect(reNoCommit)

	r.booted("a", "fallback")
	reset := r.since(regexp.MustCompile(`stage 2: slot a \(mode fallback\)`), bStart)
	s := r.status()
	r.expect(reTestPowerOff)
	if err := r.r.Wait(); err != nil {
		t.Fatal(err)
	}
	if l, ok := r.log.find(reMarkedGood, bStart); ok && l.at < reset {
		t.Errorf("slot b was committed: %q", l.line)
	}
	if deref(s.Active) != "a" || s.Trial != nil || s.Slots["a"].State != "good" || s.Slots["b"].State != "bad" || s.Slots["b"].Reason == "" {
		t.Errorf("status after the fallback: %s", s.Raw)
	}
	if s.LastBoot.Mode != "fallback" {
		t.Errorf("last boot mode %q, want fallback: %s", s.LastBoot.Mode, s.Raw)
	}
	t.Logf("slot b: switch_root at %.1fs, the watchdog reset it and a came back in fallback at %.1fs (%.1fs later); b: %+v",
		bStart.Seconds(), reset.Seconds(), (reset - bStart).Seconds(), s.Slots["b"])
}
