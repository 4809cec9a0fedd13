package vmtests

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hugelgupf/vmtest/qemu"
	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// Issue 9, "prove it under real power cuts": QEMU is killed (the power
// cut: the guest's unwritten caches are lost, what QEMU wrote to the disk
// image and the variable store stays) at a random moment inside each of
// keel's write paths, and the machine is powered on again until a slot's
// init runs. Each path has its own machine (disk, UEFI variables, swtpm
// state) that keeps its state from cut to cut, as a real device would.
//
// After every cut the next power-on must bring a slot's init up within the
// deadline (recovery allowed), the file on data must be intact (empty
// after a factory reset), and the record must be readable by keel
// (`keel status --json` exits 0, and keel-init did not have to start over)
// and by an independent reader of its store (the efivarfs file decoded
// here, without keel's code). A write keel acknowledged before the cut must
// have survived it.
//
//	KEEL_TORTURE_CUTS=N      cuts per path (default 1: the sample in make test)
//	KEEL_TORTURE_SEED=S      the seed of every random choice (default: the time)
//	KEEL_TORTURE_DEADLINE=D  power-on to a slot's init, recovery included (default 15m)
//
// The seed makes the choices (story, window, delay) reproducible; QEMU's
// timing under TCG is not, so a rerun cuts at the same planned moments but
// the guest may be a few milliseconds elsewhere.
//
// Each path logs one summary line, "torture path=P cuts=N boots=...": the
// bad counts (bricks, data_lost, unreadable, lost_writes, mark_good_failed)
// must be 0; where=[...] says where the cuts fell (the path's window
// labels, and for single writes whether the write had landed, read from
// the generation the next boot's decision commits).
//
// The install path (issue 10) runs `keel install` from a USB stick (a
// second virtio disk holding a bundle) into the slot that is not active
// and cuts anywhere in it: reading, the commit that marks the target as
// being written, writing, verifying, the commit that arms the trial. Every
// other cut (the first included, so make test's one cut has it) starts two
// installs at once (issue 19): one must run, the other refuse at once
// naming it, never say the slot is unbootable, and the slot on trial must
// hold the whole bundle.
//
// The trial-boot path (issue 22) arms a trial and cuts anywhere in its
// boot, firmware to the slot's mark-good: the cut must never use the
// trial's try (the next boot is its first try again, or the committed
// slot when the mark-good landed); tries_spent counts the boots that
// show a try used.
func TestTorture(t *testing.T) {
	t.Parallel()
	cuts := 1
	if s := os.Getenv("KEEL_TORTURE_CUTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KEEL_TORTURE_CUTS=%q: want a positive number", s)
		}
		cuts = n
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("KEEL_TORTURE_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("KEEL_TORTURE_SEED=%q: want an integer", s)
		}
		seed = n
	}
	deadline := 15 * time.Minute
	if s := os.Getenv("KEEL_TORTURE_DEADLINE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("KEEL_TORTURE_DEADLINE=%q: want a duration", s)
		}
		deadline = d
	}
	t.Logf("torture: %d cut(s) per path, seed %d (reproduce with KEEL_TORTURE_SEED=%d KEEL_TORTURE_CUTS=%d)", cuts, seed, seed, cuts)
	for _, p := range torturePaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			tt := newTorture(t, p, seed, deadline)
			tt.cuts = cuts
			tt.torture()
		})
	}
}

// torturePath is one write path: cut prepares the story from a booted,
// checked slot, starts the write and kills QEMU inside its window; it
// returns what the next boot must show.
type torturePath struct {
	name string
	// wipes: the path ends in a factory reset (data is empty afterwards).
	wipes bool
	cut   func(tt *torture) expectation
}

var torturePaths = []torturePath{
	{name: "boot-commit", cut: (*torture).cutBootCommit},
	{name: "mark-good", cut: (*torture).cutMarkGood},
	{name: "mark-bad", cut: (*torture).cutMarkBad},
	{name: "try", cut: (*torture).cutTry},
	{name: "recovery", cut: (*torture).cutRecovery},
	{name: "factory-reset", wipes: true, cut: (*torture).cutFactoryReset},
	{name: "install", cut: (*torture).cutInstall},
	{name: "trial-boot", cut: (*torture).cutTrialBoot},
}

// expectation is what the boot after a cut must show because keel
// acknowledged the write before the cut (the zero value: nothing).
type expectation struct {
	what string // the acknowledged write, for messages
	// slot and mode the boot must take ("" for any).
	slot, mode string
	// slotState: slot stateOf must be in this state.
	stateOf, slotState string
	// noRecovery: the boot must not run recovery (it was finished).
	noRecovery bool
	// halfSlot, halfVersion: a boot of halfSlot must run halfVersion, the
	// whole update (a cut install never boots half-written).
	halfSlot, halfVersion string
	// gen0 (when haveGen) is the record's generation if the cut write did
	// not land: the next boot's decision then says gen0+1, and gen0+2 if
	// it did (where the cut fell, for the counts; either is fine).
	gen0    uint64
	haveGen bool
	// trialSlot, when set, must boot on trial with trialLeft tries left
	// after the boot (its decision's reason says so): a power cut used no
	// try. mayCommit: or boot normal, committed (the cut came while its
	// mark-good may have landed).
	trialSlot string
	trialLeft int
	mayCommit bool
}

// counts are a path's outcomes.
type counts struct {
	cuts, boots, bricks, dataLost, unreadable, lostWrites, markGoodFailed, recoveries, triesSpent int
	// where the cuts landed (labels chosen by each path).
	hits map[string]int
}

type torture struct {
	t        *testing.T
	p        torturePath
	seed     int64
	rng      *rand.Rand
	deadline time.Duration
	m        *vmkit.Machine
	run      *vmkit.Run
	lines    *vmkit.LineReader
	cut      int // the cut in progress (-1: the first power-on)
	cuts     int // how many this run makes
	c        counts
	text     string            // the file on data
	tail     []string          // the last console lines, for messages
	runLines []vmkit.TimedLine // this power-on's lines (learnRecovery)
	lastGen  uint64            // the generation last read back (writes never go back)
	booted   struct{ slot, version, mode string }
	learned  learned
	// hostile: plantHostileCut before every power-on (the install path).
	hostile bool
}

// learned are the durations the windows are drawn from, measured on this
// machine as it runs (TCG speed varies with the host's load).
type learned struct {
	// In a plain boot's stage 1 (keel-init's clock): the line just
	// before "decision:" (the decision is committed between the two; its
	// first words), the gap from it to "decision:", and KEEL-KEXEC.
	preDecision string
	commitGap   float64
	kexec       float64
	markGood    time.Duration // KEEL-SLOT to KEEL-MARKED-GOOD
	write       time.Duration // a keel write command, sent to done
	// recovery, on the host's clock: "recovery:" to "recovery seed
	// verified" (verify), from there to the wipe's or the reinstall's
	// first line (begin: the commit that records the reinstall), the
	// reinstall's first 100% line to KEEL-RECOVERED (finish: the commit
	// that records it done).
	verify, begin, finish time.Duration
	// install: `keel install` sent to done.
	install time.Duration
	// boot: power-on to KEEL-MARKED-GOOD (the window of a trial's boot).
	boot time.Duration
}

const (
	torturePowerOn = 90 * time.Minute // QEMU's own limit per power-on; the test kills it first
	tortureTail    = 60
)

func newTorture(t *testing.T, p torturePath, seed int64, deadline time.Duration) *torture {
	h := fnv.New64a()
	h.Write([]byte(p.name))
	tt := &torture{
		t: t, p: p, seed: seed, deadline: deadline, cut: -1,
		rng:  rand.New(rand.NewPCG(uint64(seed), h.Sum64())),
		text: "keel-torture-" + p.name,
		c:    counts{hits: map[string]int{}},
		learned: learned{
			markGood: time.Second, write: time.Second,
			verify: 2 * time.Second, begin: 150 * time.Millisecond, finish: 100 * time.Millisecond,
			install: 20 * time.Second, boot: 40 * time.Second,
			// as measured here (TCG, two VMs at once); learned again below
			preDecision: "PCRs at start", commitGap: 0.08, kexec: 2.5,
		},
	}
	// Two good slots and a seed: every story has a slot to fall back to
	// and recovery behind it. The install path's slots have /data: stage
	// 2 mounts the data partition and prepares the slots' areas (a
	// trial's first boot copies the running slot's), and before every
	// power-on the host plants on it what a hostile OS could leave there
	// (plantHostileCut): an install while the data partition is hostile
	// (issue 19).
	data := p.name == "install"
	m, err := vmkit.NewMachine(context.Background(), artefacts(t), t.TempDir(), withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1, Data: data},
		"b": {Version: "2.0", SecurityVersion: 1, Data: data},
	}, vmkit.SlotSpec{Version: "0.9-seed", SecurityVersion: 1}))
	if err != nil {
		t.Fatal(err)
	}
	tt.m = m
	if p.name == "install" {
		m.Stick = m.Dir + "/update.bundle"
		if _, err := m.Art.Bundle(context.Background(), m.Stick, "b", vmkit.SlotSpec{Version: tortureUpdate, SecurityVersion: 1, Data: true}); err != nil {
			t.Fatal(err)
		}
		tt.hostile = true
	}
	return tt
}

// plantHostileCut plants, on the data partition mounted at dir, what a
// hostile OS (root in it, or an application in its area) could leave
// there before power-on n, under names of its own so that it adds to what
// earlier power-ons left: in every slot's area an application's
// immutable file, a 1 TiB sparse file, a link to /dev/zero and a FIFO
// (each trial's snapshot copies them; the area a snapshot replaces
// cannot be removed and is set aside), a leftover of a cut snapshot with
// an immutable file and a name that forges a console line, and shared/
// as a link out of the partition (its folder moved aside first). None of
// it may stop a boot, cost a write, or forge a line the torture reads.
func plantHostileCut(t *testing.T, dir string, n int) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	chattr := func(p string) {
		t.Helper()
		if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
			t.Fatalf("chattr +i %s: %v\n%s", p, err, out)
		}
	}
	areas, _ := filepath.Glob(filepath.Join(dir, "slots", "*", "data"))
	for _, area := range areas {
		h := filepath.Join(area, fmt.Sprintf("hostile-%d", n))
		must(os.MkdirAll(h, 0o755))
		must(os.WriteFile(filepath.Join(h, "locked"), []byte("an application's immutable file\n"), 0o644))
		chattr(filepath.Join(h, "locked"))
		f, err := os.Create(filepath.Join(h, "sparse"))
		must(err)
		must(f.Truncate(1 << 40))
		must(f.Close())
		must(os.Symlink("/dev/zero", filepath.Join(h, "zero")))
		must(unix.Mkfifo(filepath.Join(h, "fifo"), 0o644))
	}
	left := filepath.Join(dir, "slots", fmt.Sprintf("x%d\nKEEL-FORGED-LINE slot a reinstalled\n.new", n), "data")
	must(os.MkdirAll(left, 0o755))
	must(os.WriteFile(filepath.Join(left, "locked"), []byte("immutable, in a leftover\n"), 0o644))
	chattr(filepath.Join(left, "locked"))
	shared := filepath.Join(dir, "shared")
	if st, err := os.Lstat(shared); err == nil && st.IsDir() {
		must(os.Rename(shared, filepath.Join(dir, fmt.Sprintf("shared-moved-by-the-os-%d", n))))
	}
	if _, err := os.Lstat(shared); err != nil {
		must(os.Symlink("/", shared))
	}
}

// tortureUpdate is the version of the install path's bundle.
const tortureUpdate = "3.0"

// where names the path, the cut and the seed: every message has it.
func (tt *torture) where() string {
	return fmt.Sprintf("torture path=%s cut=%d seed=%d", tt.p.name, tt.cut, tt.seed)
}

func (tt *torture) excerpt() string {
	return "\n\t| " + strings.Join(tt.tail, "\n\t| ")
}

// errorf records a failure (with the console's last lines); fatalf also
// stops the path.
func (tt *torture) errorf(format string, args ...any) {
	tt.t.Helper()
	tt.t.Errorf("%s: %s; console:%s", tt.where(), fmt.Sprintf(format, args...), tt.excerpt())
}

func (tt *torture) fatalf(format string, args ...any) {
	tt.t.Helper()
	tt.t.Fatalf("%s: %s; console:%s", tt.where(), fmt.Sprintf(format, args...), tt.excerpt())
}

func (tt *torture) logf(format string, args ...any) {
	tt.t.Helper()
	tt.t.Logf("%s: %s", tt.where(), fmt.Sprintf(format, args...))
}

func (tt *torture) check(err error, what string) {
	tt.t.Helper()
	if err != nil {
		tt.fatalf("%s: %v", what, err)
	}
}

func (tt *torture) keep(lines []vmkit.TimedLine) {
	tt.runLines = append(tt.runLines, lines...)
	for _, l := range lines {
		tt.tail = append(tt.tail, l.Text)
		// A file name on the data partition must not forge a console
		// line (plantHostileCut): keel prints names escaped.
		if strings.HasPrefix(l.Text, "KEEL-FORGED-LINE") {
			tt.errorf("a console line forged by a file name on the data partition: %q", l.Text)
		}
	}
	if n := len(tt.tail); n > tortureTail {
		tt.tail = append([]string(nil), tt.tail[n-tortureTail:]...)
	}
}

// until reads console lines until stop returns true for one (see
// vmkit.LineReader.Until) and keeps them for messages and learning.
func (tt *torture) until(deadline time.Time, stop func(string) bool) ([]vmkit.TimedLine, error) {
	lines, err := tt.lines.Until(deadline, stop)
	tt.keep(lines)
	return lines, err
}

func (tt *torture) powerOn() {
	tt.t.Helper()
	if tt.hostile {
		(&machine{t: tt.t, Machine: tt.m}).dataMount(func(dir string) { plantHostileCut(tt.t, dir, tt.cut+1) })
	}
	prefix := fmt.Sprintf("%s#%d", tt.p.name, tt.cut+1)
	r, err := tt.m.PowerOn(context.Background(), torturePowerOn,
		qemu.LogSerialByLine(qemu.DefaultPrint(prefix, tt.t.Logf)))
	tt.check(err, "power on")
	tt.t.Cleanup(r.Kill)
	tt.run, tt.lines, tt.runLines = r, r.Lines(), nil
}

// powerCut kills QEMU: the power cut.
func (tt *torture) powerCut(label string) {
	tt.run.Kill()
	tt.c.cuts++
	tt.c.hits[label]++
	tt.logf("power cut (%s)", label)
}

func (tt *torture) torture() {
	defer tt.summary() // also after a fatal failure
	tt.powerOn()
	if !tt.verifyBoot(expectation{}) {
		return
	}
	tt.dataPut()
	tt.checkRecord()
	for tt.cut = 0; tt.cut < tt.cuts; tt.cut++ {
		want := tt.p.cut(tt)
		tt.powerOn()
		if !tt.verifyBoot(want) {
			break // a brick: the device does not come back
		}
		tt.checkData()
		tt.checkRecord()
	}
	if tt.c.bricks == 0 {
		tt.check(tt.run.PowerOff(), "power off")
	}
}

// summary logs the path's counts and fails on any bad one.
func (tt *torture) summary() {
	var hits []string
	for k, v := range tt.c.hits {
		hits = append(hits, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(hits)
	c := tt.c
	tt.t.Logf("torture path=%s cuts=%d boots=%d bricks=%d data_lost=%d unreadable=%d lost_writes=%d mark_good_failed=%d tries_spent=%d recoveries=%d where=[%s] seed=%d",
		tt.p.name, c.cuts, c.boots, c.bricks, c.dataLost, c.unreadable, c.lostWrites, c.markGoodFailed, c.triesSpent, c.recoveries,
		strings.Join(hits, " "), tt.seed)
	if c.bricks+c.dataLost+c.unreadable+c.lostWrites+c.markGoodFailed+c.triesSpent > 0 {
		tt.t.Errorf("torture path=%s seed=%d: bricks=%d data_lost=%d unreadable=%d lost_writes=%d mark_good_failed=%d tries_spent=%d, want all 0 (reproduce: KEEL_TORTURE_SEED=%d KEEL_TORTURE_CUTS=%d go test -count=1 -run 'TestTorture/^%s$' -v ./vmtests/)",
			tt.p.name, tt.seed, c.bricks, c.dataLost, c.unreadable, c.lostWrites, c.markGoodFailed, c.triesSpent, tt.seed, tt.cuts, tt.p.name)
	}
}

var (
	reTortureSlot = regexp.MustCompile(`KEEL-SLOT (\S+) (\S+) mode=(\S+)`)
	// keel-init's lines carry its own clock (seconds since it started).
	reKeelInit = regexp.MustCompile(`keel-init: \[ *([0-9.]+)\] (.*)$`)
	reProgress = regexp.MustCompile(`KEEL-PROGRESS (.*?) +([0-9]+)% `)
)

func isSlotLine(l string) bool { return reTortureSlot.MatchString(l) }

var reDecisionGen = regexp.MustCompile(`^decision: .*\(generation ([0-9]+)\)$`)

// firstDecision is the generation keel-init's first decision committed.
func firstDecision(lines []vmkit.TimedLine) (uint64, bool) {
	for _, l := range lines {
		if _, msg, ok := guestTime(l.Text); ok {
			if m := reDecisionGen.FindStringSubmatch(msg); m != nil {
				g, err := strconv.ParseUint(m[1], 10, 64)
				return g, err == nil
			}
		}
	}
	return 0, false
}

// lastDecision is the generation keel-init's last decision committed.
func lastDecision(lines []vmkit.TimedLine) (uint64, bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		if _, msg, ok := guestTime(lines[i].Text); ok {
			if m := reDecisionGen.FindStringSubmatch(msg); m != nil {
				g, err := strconv.ParseUint(m[1], 10, 64)
				return g, err == nil
			}
		}
	}
	return 0, false
}

// guestTime is keel-init's clock on one of its lines.
func guestTime(l string) (float64, string, bool) {
	m := reKeelInit.FindStringSubmatch(l)
	if m == nil {
		return 0, "", false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	return f, m[2], err == nil
}

// verifyBoot reads a power-on's console until a slot's init says
// KEEL-SLOT (within the deadline: a brick otherwise), checks what the boot
// shows against want and waits for the slot's mark-good. It learns stage
// 1's timing from plain boots.
func (tt *torture) verifyBoot(want expectation) bool {
	tt.t.Helper()
	start := time.Now()
	lines, err := tt.until(start.Add(tt.deadline), isSlotLine)
	if err != nil {
		tt.c.bricks++
		tt.errorf("BRICK: no slot's init %v after power-on (%v)", time.Since(start).Round(time.Second), err)
		tt.run.Kill()
		return false
	}
	tt.c.boots++
	m := reTortureSlot.FindStringSubmatch(lines[len(lines)-1].Text)
	tt.booted.slot, tt.booted.version, tt.booted.mode = m[1], m[2], m[3]
	var (
		recovery, restart bool
		// the last stage-1 run: the line before its decision and when
		st struct {
			pre, prevMsg            string
			prev, gap, kexec        float64
			stage1, decided, kexecd bool
		}
	)
	for _, l := range lines {
		g, msg, ok := guestTime(l.Text)
		if !ok {
			continue
		}
		switch {
		case msg == "stage 1":
			st.stage1, st.decided, st.kexecd = true, false, false
		case strings.HasPrefix(msg, "decision:") && st.stage1 && !st.decided:
			st.decided, st.gap, st.pre = true, g-st.prev, st.prevMsg
			if w := strings.Fields(st.pre); len(w) > 3 {
				st.pre = strings.Join(w[:3], " ")
			}
		case strings.HasPrefix(msg, "KEEL-KEXEC") && st.stage1 && !st.kexecd:
			st.kexecd = true
			st.kexec = g
			st.stage1 = false // then stage 2
		case strings.HasPrefix(msg, "recovery:"), strings.HasPrefix(msg, "resuming the reinstall"):
			recovery = true
		case strings.HasPrefix(msg, "no boot state yet"), strings.HasPrefix(msg, "boot state unreadable"):
			restart = true
			if tt.cut >= 0 {
				tt.c.unreadable++
				tt.errorf("keel-init could not read the record after the cut: %q", msg)
			}
		}
		st.prev, st.prevMsg = g, msg
	}
	if recovery {
		tt.c.recoveries++
		tt.learnRecovery()
	}
	if want.haveGen {
		switch g, ok := firstDecision(lines); {
		case ok && g == want.gen0+2:
			tt.c.hits["write-landed"]++
		case ok && g == want.gen0+1:
			tt.c.hits["write-not-landed"]++
		default:
			tt.c.hits["write-unknown"]++
			tt.logf("cannot tell whether the write landed: first decision generation %d (ok=%v), %d without the write", g, ok, want.gen0+1)
		}
	}
	if st.decided && st.kexecd && !recovery && !restart && st.pre != "" && st.gap >= 0 {
		tt.learned.preDecision, tt.learned.commitGap, tt.learned.kexec = st.pre, st.gap, st.kexec
	}
	tt.logf("booted slot %s version %s mode %s after %v (recovery=%v)", tt.booted.slot, tt.booted.version,
		tt.booted.mode, time.Since(start).Round(time.Second), recovery)
	if want.what != "" {
		if want.slot != "" && (tt.booted.slot != want.slot || tt.booted.mode != want.mode) {
			tt.c.lostWrites++
			tt.errorf("LOST WRITE: %s was acknowledged before the cut, so the boot must take slot %s mode %s; it took %s mode %s",
				want.what, want.slot, want.mode, tt.booted.slot, tt.booted.mode)
		}
		if want.halfSlot != "" && tt.booted.slot == want.halfSlot && (tt.booted.version != want.halfVersion || tt.booted.mode != "trial") {
			tt.c.lostWrites++
			tt.errorf("HALF-WRITTEN: slot %s was being written with version %s when the power was cut; it booted version %s mode %s",
				want.halfSlot, want.halfVersion, tt.booted.version, tt.booted.mode)
		}
		if want.noRecovery && recovery {
			tt.c.lostWrites++
			tt.errorf("LOST WRITE: %s was acknowledged before the cut, yet the boot ran recovery again", want.what)
		}
	}
	// The slot's health check, then its mark-good.
	slotAt := lines[len(lines)-1].At
	mg, err := tt.until(time.Now().Add(tt.run.StepTimeout), func(l string) bool {
		return strings.Contains(l, "KEEL-MARKED-GOOD") || strings.Contains(l, "KEEL-MARK-GOOD-FAILED") ||
			strings.Contains(l, "KEEL-HEALTH-FAIL")
	})
	tt.check(err, "waiting for the slot's mark-good")
	switch last := mg[len(mg)-1]; {
	case strings.Contains(last.Text, "KEEL-MARKED-GOOD"):
		tt.learned.markGood = last.At.Sub(slotAt)
	default:
		tt.c.markGoodFailed++
		tt.errorf("slot %s (mode %s) could not mark itself good: %s", tt.booted.slot, tt.booted.mode, last.Text)
	}
	if want.trialSlot != "" {
		tt.checkTrialTries(want, lines)
	}
	if strings.Contains(mg[len(mg)-1].Text, "KEEL-MARKED-GOOD") {
		tt.learned.boot = mg[len(mg)-1].At.Sub(start)
	}
	if want.stateOf != "" {
		s, err := tt.run.Status()
		tt.check(err, "status")
		if got := s.Slots[want.stateOf].State; got != want.slotState {
			tt.c.lostWrites++
			tt.errorf("LOST WRITE: %s was acknowledged before the cut, but slot %s is %s (status %s)",
				want.what, want.stateOf, got, s.Raw)
		}
	}
	return true
}

// data reads the file on data ("" when there is none).
func (tt *torture) data(cmd string) (string, bool) {
	tt.t.Helper()
	_, err := tt.run.Expect("KEEL-READY")
	tt.check(err, "prompt")
	tt.check(tt.run.Send("data "+cmd), "send")
	m, err := tt.run.ExpectRe(reData)
	tt.check(err, "data "+cmd)
	if m[1] == "-ERROR" {
		return m[2], false
	}
	return m[2], true
}

func (tt *torture) dataPut() {
	tt.t.Helper()
	if got, ok := tt.data("put " + tt.text); !ok || got != tt.text {
		tt.fatalf("data put: %q (ok=%v)", got, ok)
	}
}

// checkData: the file is intact, or (factory reset) gone; then put back.
func (tt *torture) checkData() {
	tt.t.Helper()
	got, ok := tt.data("get")
	want := tt.text
	if tt.p.wipes {
		want = "" // the reset was requested before the cut: it must complete
	}
	if !ok || got != want {
		tt.c.dataLost++
		tt.errorf("DATA: the file on data reads %q (readable=%v), want %q", got, ok, want)
	}
	if tt.p.wipes || !ok || got != want {
		tt.dataPut()
	}
}

// checkRecord: keel reads the record (status --json exits 0) and so does
// the peer reader (the efivarfs file decoded here), and both agree.
func (tt *torture) checkRecord() {
	tt.t.Helper()
	rc, err := tt.run.Keel("status --json")
	tt.check(err, "keel status --json")
	if rc != 0 {
		tt.c.unreadable++
		tt.errorf("UNREADABLE: keel status --json exited %d", rc)
		return
	}
	s, err := tt.run.Status()
	tt.check(err, "status")
	raw, err := tt.run.EFIVar(uefi.VarFile(uefi.KeelState, uefi.KeelVendorGUID()))
	tt.check(err, "efivar")
	vars, err := peerDecode(raw)
	if err != nil {
		tt.c.unreadable++
		tt.errorf("UNREADABLE by the peer reader: %v (%x)", err, raw)
		return
	}
	var diffs []string
	if g := vars["keel_generation"]; g != strconv.FormatUint(s.Generation, 10) {
		diffs = append(diffs, fmt.Sprintf("generation %s vs %d", g, s.Generation))
	}
	if a := vars["keel_active"]; a != derefEmpty(s.Active) {
		diffs = append(diffs, fmt.Sprintf("active %q vs %q", a, derefEmpty(s.Active)))
	}
	for name, sl := range s.Slots {
		if v := vars["keel_slot_"+name+"_state"]; v != sl.State {
			diffs = append(diffs, fmt.Sprintf("slot %s %q vs %q", name, v, sl.State))
		}
	}
	if len(diffs) > 0 {
		tt.c.unreadable++
		tt.errorf("UNREADABLE: keel and the peer reader disagree: %s (status %s)", strings.Join(diffs, ", "), s.Raw)
	}
	if s.Generation < tt.lastGen {
		tt.c.lostWrites++
		tt.errorf("LOST WRITE: the generation went back from %d to %d", tt.lastGen, s.Generation)
	}
	tt.lastGen = s.Generation
	if s.Active == nil {
		tt.fatalf("no active slot after the boot: %s", s.Raw)
	}
}

func derefEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// peerDecode reads keel's UEFI variable as efivarfs gives it, the way
// another tool would, without keel's code: 4 bytes of attributes (must be
// NV|BS|RT, 0x7 little-endian), then "KEEL", the payload's length and
// CRC-32 (IEEE), both little-endian u32, and the payload: name=value\0
// entries ending in an empty one (bootenv/efivars's documented format).
func peerDecode(raw []byte) (map[string]string, error) {
	if len(raw) < 4 {
		return nil, fmt.Errorf("%d bytes: no attributes", len(raw))
	}
	if a := binary.LittleEndian.Uint32(raw); a != 0x7 {
		return nil, fmt.Errorf("attributes %#x, want 0x7 (NV|BS|RT)", a)
	}
	d := raw[4:]
	if len(d) < 12 || string(d[:4]) != "KEEL" {
		return nil, fmt.Errorf("no KEEL header in %d bytes", len(d))
	}
	n := binary.LittleEndian.Uint32(d[4:8])
	if uint64(n) != uint64(len(d)-12) {
		return nil, fmt.Errorf("header says %d bytes of payload, the variable holds %d", n, len(d)-12)
	}
	body := d[12:]
	if c := crc32.ChecksumIEEE(body); c != binary.LittleEndian.Uint32(d[8:12]) {
		return nil, fmt.Errorf("CRC %#08x, header says %#08x", c, binary.LittleEndian.Uint32(d[8:12]))
	}
	vars := map[string]string{}
	for {
		end := bytes.IndexByte(body, 0)
		if end < 0 {
			return nil, fmt.Errorf("unterminated entry %q", body)
		}
		if end == 0 {
			if len(body) != 1 {
				return nil, fmt.Errorf("%d bytes after the empty entry", len(body)-1)
			}
			break
		}
		k, v, ok := strings.Cut(string(body[:end]), "=")
		if !ok || !strings.HasPrefix(k, "keel_") {
			return nil, fmt.Errorf("entry %q is not keel_name=value", body[:end])
		}
		if _, dup := vars[k]; dup {
			return nil, fmt.Errorf("%s twice", k)
		}
		vars[k] = v
		body = body[end+1:]
	}
	if vars["keel_format"] != "1" || vars["keel_generation"] == "" || vars["keel_slots"] == "" {
		return nil, fmt.Errorf("no keel_format=1, keel_generation or keel_slots in %v", vars)
	}
	return vars, nil
}

// keel runs a keel command that must succeed and returns how long it took.
func (tt *torture) keel(args string) time.Duration {
	tt.t.Helper()
	_, err := tt.run.Expect("KEEL-READY")
	tt.check(err, "prompt")
	start := time.Now()
	tt.check(tt.run.Send("keel "+args), "send")
	m, err := tt.run.ExpectRe(regexp.MustCompile(`KEEL-DONE rc=(\d+)\r*\n`))
	tt.check(err, "keel "+args)
	if m[1] != "0" {
		tt.fatalf("keel %s: rc=%s (the story's set-up failed)", args, m[1])
	}
	tt.learned.write = time.Since(start)
	return tt.learned.write
}

func (tt *torture) reboot() {
	tt.t.Helper()
	tt.check(tt.run.Reboot(), "reboot")
}

// status of the booted slot.
func (tt *torture) status() vmkit.Status {
	tt.t.Helper()
	s, err := tt.run.Status()
	tt.check(err, "status")
	return s
}

// other is the slot that is not slot.
func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// uniform draws a duration in [lo, hi).
func (tt *torture) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(tt.rng.Int64N(int64(hi-lo)))
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// cutAfter reads the console for d (the window's random delay), then cuts
// the power; it returns the lines read meanwhile.
func (tt *torture) cutAfter(d time.Duration, label func([]vmkit.TimedLine) string) {
	tt.t.Helper()
	lines, err := tt.lines.For(d)
	tt.keep(lines)
	if err != nil {
		tt.logf("the machine stopped by itself before the cut: %v", err)
	}
	tt.powerCut(label(lines))
}

func seen(lines []vmkit.TimedLine, s string) bool {
	for _, l := range lines {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

// writeCut sends a keel write command and cuts 0..W after it; W is
// ~1.5 s, or more when this machine's last write took longer. An
// acknowledged write (KEEL-DONE rc=0 before the cut) must survive.
func (tt *torture) writeCut(args string) bool {
	tt.t.Helper()
	_, err := tt.run.Expect("KEEL-READY")
	tt.check(err, "prompt")
	w := max(250*time.Millisecond, tt.learned.write*3/2)
	d := tt.uniform(0, w)
	tt.logf("keel %s, then a cut %v after it (window %v)", args, d.Round(time.Millisecond), w.Round(time.Millisecond))
	start := time.Now()
	tt.check(tt.run.Send("keel "+args), "send")
	lines, err := tt.lines.For(d)
	tt.keep(lines)
	if err != nil {
		tt.logf("the machine stopped by itself before the cut: %v", err)
	}
	acked := false
	for _, l := range lines {
		if m := reDoneLine.FindStringSubmatch(l.Text); m != nil {
			if m[1] != "0" {
				tt.fatalf("keel %s: rc=%s before the cut", args, m[1])
			}
			acked = true
			tt.learned.write = l.At.Sub(start)
		}
	}
	label := "before-ack"
	if acked {
		label = "after-ack"
	}
	tt.powerCut(label)
	return acked
}

var (
	reDoneLine = regexp.MustCompile(`KEEL-DONE rc=(\d+)`)
	reRaceDone = regexp.MustCompile(`KEEL-RACE-DONE rc=(\d+),(\d+)`)
)

// boot-commit: keel-init's commit of its decision. Half the time a trial
// is armed first, so that the commit counts a try. Half the cuts fall
// anywhere in stage 1, 0..(KEEL-KEXEC) after keel-init's first line; the
// other half aim at the commit: 0..(the gap + 20 ms) after the line that
// precedes "decision:" (keel-init loads the record, decides and commits
// between the two). Both are learned from this machine's last plain boot.
func (tt *torture) cutBootCommit() expectation {
	s := tt.status()
	trial := tt.rng.IntN(2) == 0
	if trial {
		tt.keel("try " + other(*s.Active) + " --tries 3")
		s = tt.status()
	}
	l := tt.learned
	aim := tt.rng.IntN(2) == 0
	tt.reboot()
	stop := func(line string) bool { return reKeelInit.MatchString(line) }
	if aim {
		stop = func(line string) bool {
			_, msg, ok := guestTime(line)
			return ok && (strings.HasPrefix(msg, l.preDecision) || strings.HasPrefix(msg, "decision:"))
		}
	}
	lines, err := tt.until(time.Now().Add(tt.deadline), stop)
	if err != nil {
		tt.c.bricks++
		tt.fatalf("BRICK: keel-init did not reach its decision after the reboot: %v", err)
	}
	g0, msg, _ := guestTime(lines[len(lines)-1].Text)
	var d time.Duration
	switch {
	case aim && strings.HasPrefix(msg, "decision:"):
		d = 0 // the anchor line did not come: cut now
	case aim:
		d = tt.uniform(0, seconds(l.commitGap)+20*time.Millisecond)
	default:
		d = tt.uniform(0, seconds(l.kexec-g0))
	}
	tt.logf("boot commit (trial=%v): cut %v after %q (aim at the commit=%v; learned: %q +%.3fs to the decision, kexec at %.3fs)",
		trial, d.Round(time.Millisecond), msg, aim, l.preDecision, l.commitGap, l.kexec)
	tt.cutAfter(d, func(ls []vmkit.TimedLine) string {
		switch {
		case seen(ls, "KEEL-KEXEC"):
			return "after-kexec"
		case seen(ls, "] decision:") || strings.HasPrefix(msg, "decision:"):
			return "after-decision"
		}
		return "before-decision"
	})
	return expectation{gen0: s.Generation, haveGen: true}
}

// mark-good: a trial of the other slot is armed and booted; the cut falls
// 0..1.5x(this machine's last KEEL-SLOT-to-KEEL-MARKED-GOOD time) after
// the trial slot's KEEL-SLOT, while its init checks health and runs keel
// mark-good.
func (tt *torture) cutMarkGood() expectation {
	target := tt.armTrial(3)
	w := tt.learned.markGood * 3 / 2
	d := tt.uniform(0, w)
	tt.reboot()
	lines, err := tt.until(time.Now().Add(tt.deadline), isSlotLine)
	if err != nil {
		tt.c.bricks++
		tt.fatalf("BRICK: the trial boot of slot %s did not reach a slot's init: %v", target, err)
	}
	m := reTortureSlot.FindStringSubmatch(lines[len(lines)-1].Text)
	if m[1] != target || m[3] != "trial" {
		tt.errorf("the trial boot took slot %s mode %s, want %s mode trial", m[1], m[3], target)
	}
	tt.logf("slot %s on trial: cut %v after its KEEL-SLOT (window %v)", m[1], d.Round(time.Millisecond), w.Round(time.Millisecond))
	acked := false
	tt.cutAfter(d, func(l []vmkit.TimedLine) string {
		if seen(l, "KEEL-MARKED-GOOD") {
			acked = true
			return "after-ack"
		}
		return "before-ack"
	})
	want := expectation{}
	want.gen0, want.haveGen = lastDecision(lines)
	if acked {
		want.what, want.slot, want.mode = "mark-good of "+target, target, "normal"
	}
	return want
}

var reTrialDecision = regexp.MustCompile(`^decision: (\S+) \(mode (\S+)\): trial of slot \S+, ([0-9]+) tries left after this boot`)

// checkTrialTries: the boot after a cut in a trial's boot must be the
// trial's again with want.trialLeft tries left after it (no try used by
// the cut), or, when the mark-good may have landed, the slot committed.
func (tt *torture) checkTrialTries(want expectation, lines []vmkit.TimedLine) {
	tt.t.Helper()
	if want.mayCommit && tt.booted.slot == want.trialSlot && tt.booted.mode == "normal" {
		tt.c.hits["mark-good-landed"]++
		return
	}
	for _, l := range lines {
		_, msg, ok := guestTime(l.Text)
		if !ok || !strings.HasPrefix(msg, "decision:") {
			continue
		}
		m := reTrialDecision.FindStringSubmatch(msg)
		if m == nil || m[1] != want.trialSlot || m[3] != strconv.Itoa(want.trialLeft) {
			tt.c.triesSpent++
			tt.errorf("TRY SPENT: a power cut in slot %s's trial boot, and the next decision is %q, want its trial with %d tries left after it", want.trialSlot, msg, want.trialLeft)
		}
		return
	}
	tt.errorf("no decision line in the boot after the cut")
}

// trial-boot (issue 22): a trial of the slot that is not active is armed
// (2 tries) and booted; the cut falls 0..1.2x(this machine's last boot,
// power-on to KEEL-MARKED-GOOD) after the reboot is sent: in the
// firmware, in keel-init before or after its decision's commit, in the
// slot kernel, stage 2, its init or after its mark-good. The boot after
// the cut must be the trial's with 1 try left after it (the cut used
// none: KEEL-END power-loss gave it back, or keel-init had not committed
// the decision), or the slot committed when its mark-good was
// acknowledged (or may have landed). Each boot after a cut commits, so
// the board's bound of uncounted ends is never reached here.
func (tt *torture) cutTrialBoot() expectation {
	target := tt.armTrial(2)
	w := tt.learned.boot * 6 / 5
	d := tt.uniform(0, w)
	tt.logf("a trial of slot %s: cut %v after the reboot (window %v)", target, d.Round(time.Millisecond), w.Round(time.Millisecond))
	tt.reboot()
	label := ""
	tt.cutAfter(d, func(l []vmkit.TimedLine) string {
		switch {
		case seen(l, "KEEL-MARKED-GOOD"):
			label = "after-ack"
		case seen(l, "KEEL-SLOT"):
			label = "in-init"
		case seen(l, "stage 2: slot"):
			label = "in-stage2"
		case seen(l, "KEEL-KEXEC"):
			label = "in-slot-kernel"
		case seen(l, "] decision:"):
			label = "after-decision"
		case seen(l, "] stage 1"):
			label = "before-decision"
		default:
			label = "in-firmware"
		}
		return label
	})
	if label == "after-ack" {
		return expectation{what: "mark-good of " + target, slot: target, mode: "normal"}
	}
	return expectation{trialSlot: target, trialLeft: 1, mayCommit: label == "in-init"}
}

// armTrial puts the slot that is not active on trial for tries boots and
// returns it.
func (tt *torture) armTrial(tries int) string {
	s := tt.status()
	target := other(*s.Active)
	tt.keel(fmt.Sprintf("try %s --tries %d", target, tries))
	return target
}

// mark-bad: the slot that is not active is marked bad (when it already is,
// `keel try` first puts it on trial, so that there is something to mark);
// the cut falls 0..~1.5 s after the command is sent.
func (tt *torture) cutMarkBad() expectation {
	s := tt.status()
	target := other(*s.Active)
	if s.Slots[target].State == "bad" {
		tt.keel("try " + target + " --tries 3")
		s = tt.status()
	}
	want := expectation{gen0: s.Generation, haveGen: true}
	if tt.writeCut("mark-bad " + target + " --reason torture") {
		want.what, want.stateOf, want.slotState = "mark-bad "+target, target, "bad"
	}
	return want
}

// try: the slot that is not active is put on trial; the cut falls
// 0..~1.5 s after the command is sent.
func (tt *torture) cutTry() expectation {
	s := tt.status()
	target := other(*s.Active)
	want := expectation{gen0: s.Generation, haveGen: true}
	if tt.writeCut("try " + target + " --tries 2") {
		want.what, want.slot, want.mode = "try "+target, target, "trial"
	}
	return want
}

// install: `keel install` of the stick's bundle into the slot that is not
// active (or the one a cut install left being written); the cut falls
// 0..1.5x(this machine's last install) after the command is sent. An
// acknowledged install must boot the slot on trial; an unacknowledged one
// may boot it only complete (on trial, with the update's version).
func (tt *torture) cutInstall() expectation {
	s := tt.status()
	target := other(*s.Active)
	if s.Installing != nil {
		target = *s.Installing
	}
	_, err := tt.run.Expect("KEEL-READY")
	tt.check(err, "prompt")
	race := tt.cut%2 == 0
	w := max(5*time.Second, tt.learned.install*3/2)
	d := tt.uniform(0, w)
	tt.logf("keel install into slot %s (two racing: %v), then a cut %v after it (window %v)", target, race, d.Round(time.Millisecond), w.Round(time.Millisecond))
	start := time.Now()
	cmd := "keel install --progress lines /dev/vdb"
	if race {
		cmd = "race install --progress lines /dev/vdb"
	}
	tt.check(tt.run.Send(cmd), "send")
	lines, err := tt.lines.For(d)
	tt.keep(lines)
	if err != nil {
		tt.logf("the machine stopped by itself before the cut: %v", err)
	}
	label, acked, refused := "before-write", false, false
	for _, l := range lines {
		switch {
		case reDoneLine.MatchString(l.Text) && !race:
			if m := reDoneLine.FindStringSubmatch(l.Text); m[1] != "0" {
				tt.fatalf("keel install: rc=%s before the cut", m[1])
			}
			acked = true
			tt.learned.install = l.At.Sub(start)
		case reRaceDone.MatchString(l.Text) && race:
			// One installs (0), the other refused (1, ErrRefused).
			if m := reRaceDone.FindStringSubmatch(l.Text); m[1]+m[2] != "01" && m[1]+m[2] != "10" {
				tt.errorf("two installs racing ended with rc=%s,%s, want one 0 and one 1 (refused)", m[1], m[2])
			}
			acked = true
			tt.learned.install = l.At.Sub(start)
		case strings.Contains(l.Text, "another keel install is running (pid "):
			refused = true
		case strings.Contains(l.Text, "unbootable"):
			tt.errorf("an install said, before any cut: %q", l.Text)
		case strings.Contains(l.Text, "install: verifying"):
			label = "verifying"
		case strings.Contains(l.Text, "install: writing") && label == "before-write":
			label = "writing"
		}
	}
	if acked {
		label = "after-ack"
	}
	if race {
		if acked && !refused {
			tt.errorf("two installs racing: neither refused, naming the other")
		}
		label = "race-" + label
	}
	tt.powerCut(label)
	want := expectation{halfSlot: target, halfVersion: tortureUpdate, what: "install into " + target}
	if acked {
		want.slot, want.mode = target, "trial"
	}
	return want
}

// recovery: `keel recover`, then the reboot runs the reinstall.
func (tt *torture) cutRecovery() expectation {
	tt.keel("recover")
	tt.reboot()
	return tt.recoveryCut(false)
}

// factory-reset: `keel recover --factory-reset`, then the reboot wipes data
// and runs the reinstall.
func (tt *torture) cutFactoryReset() expectation {
	tt.keel("recover --factory-reset")
	tt.reboot()
	return tt.recoveryCut(true)
}

// recoveryCut cuts the rewrite keel-init runs, in a phase drawn at random:
//
//	verify     0..(learned) after "recovery:": reading and verifying the seed
//	begin      0..(learned)+20 ms after "recovery seed verified": the commit
//	           that records which slot is rewritten (and the anti-rollback check)
//	wipe       (factory reset) a fraction f of the data wipe
//	reinstall  a fraction f of the slot's rewrite
//	finish     0..(learned)+20 ms after the rewrite's 100% line: the check and
//	           the commit that records the slot good
//
// A fraction f falls after the progress line of floor(10f)*10 %, plus that
// much of the last gap between progress lines (they come every ~10%).
func (tt *torture) recoveryCut(factory bool) expectation {
	phases := []struct {
		name   string
		weight int
	}{{"verify", 10}, {"begin", 15}, {"reinstall", 60}, {"finish", 15}}
	if factory {
		phases = []struct {
			name   string
			weight int
		}{{"verify", 10}, {"begin", 15}, {"wipe", 30}, {"reinstall", 30}, {"finish", 15}}
	}
	u, phase := tt.rng.IntN(100), ""
	for _, p := range phases {
		if u < p.weight {
			phase = p.name
			break
		}
		u -= p.weight
	}
	f := tt.rng.Float64()
	pct, frac := int(f*10)*10, f*10-float64(int(f*10))
	l := tt.learned
	var (
		lastAt time.Time
		gap    = 100 * time.Millisecond
	)
	prefix := map[string]string{"wipe": "factory reset of data", "reinstall": "reinstall slot", "finish": "reinstall slot"}[phase]
	if phase == "finish" {
		pct = 100
	}
	lines, err := tt.until(time.Now().Add(tt.deadline), func(line string) bool {
		_, msg, ok := guestTime(line)
		switch {
		case isSlotLine(line):
			return true // recovery over before the anchor: cut anyway
		case !ok:
			return false
		case phase == "verify":
			return strings.HasPrefix(msg, "recovery:")
		case phase == "begin":
			return strings.HasPrefix(msg, "recovery seed verified")
		}
		m := reProgress.FindStringSubmatch(msg)
		if m == nil || !strings.Contains(m[1], prefix) {
			return false
		}
		if now := time.Now(); !lastAt.IsZero() {
			gap = now.Sub(lastAt)
		}
		lastAt = time.Now()
		p, _ := strconv.Atoi(m[2])
		return p >= pct
	})
	if err != nil {
		tt.c.bricks++
		tt.fatalf("BRICK: the recovery boot stopped before its cut: %v", err)
	}
	last := lines[len(lines)-1].Text
	var d time.Duration
	label := phase
	switch {
	case isSlotLine(last):
		label = "after-recovery"
	case phase == "verify":
		d = tt.uniform(0, l.verify)
	case phase == "begin":
		d = tt.uniform(0, l.begin+20*time.Millisecond)
	case phase == "finish":
		d = tt.uniform(0, l.finish+20*time.Millisecond)
	default:
		d = time.Duration(frac * float64(gap))
		label = fmt.Sprintf("%s-%02d%%", phase, pct)
	}
	tt.logf("recovery (factory=%v): cut %v after %q (phase %s)", factory, d.Round(time.Millisecond), last, phase)
	acked := seen(lines, "KEEL-RECOVERED")
	tt.cutAfter(d, func(ls []vmkit.TimedLine) string {
		if seen(ls, "KEEL-RECOVERED") {
			acked = true
		}
		return label
	})
	if acked {
		return expectation{what: "the finished reinstall", noRecovery: true}
	}
	return expectation{}
}

// learnRecovery measures the recovery phases in this power-on's lines.
func (tt *torture) learnRecovery() {
	at := func(from int, match func(msg string) bool) int {
		for i := from; i >= 0 && i < len(tt.runLines); i++ {
			if _, msg, ok := guestTime(tt.runLines[i].Text); ok && match(msg) {
				return i
			}
		}
		return -1
	}
	prefix := func(p string) func(string) bool { return func(m string) bool { return strings.HasPrefix(m, p) } }
	span := func(i, j int) time.Duration { return tt.runLines[j].At.Sub(tt.runLines[i].At) }
	rec := at(0, prefix("recovery:"))
	ver := at(rec, prefix("recovery seed verified"))
	if rec >= 0 && ver >= 0 {
		tt.learned.verify = span(rec, ver)
	}
	if next := at(ver, func(m string) bool {
		return strings.HasPrefix(m, "factory reset:") || strings.HasPrefix(m, "reinstalling slot")
	}); ver >= 0 && next >= 0 {
		tt.learned.begin = span(ver, next)
	}
	full := at(0, func(m string) bool {
		return strings.HasPrefix(m, "KEEL-PROGRESS reinstall slot") && strings.Contains(m, " 100% ")
	})
	if done := at(full, prefix("KEEL-RECOVERED")); full >= 0 && done >= 0 {
		tt.learned.finish = span(full, done)
	}
}
