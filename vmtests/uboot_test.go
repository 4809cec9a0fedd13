package vmtests

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv/ubootenv"
	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// The board qemu-arm64-uboot: QEMU's virt machine (TCG), Debian's U-Boot
// as firmware running boot.scr from the boot partition, Debian's arm64
// kernel, keel built for arm64, the boot state in a redundant U-Boot env on
// the partition bootstate. TestMain builds the x86 board's artefacts; this
// board's are built once, on first use, by ubootArtefacts.

// ubootBuilt holds the arm64 artefacts, built once.
var ubootBuilt struct {
	once sync.Once
	art  *vmkit.Artefacts
	err  error
}

const ubootBoard = "qemu-arm64-uboot"

// ubootArtefacts builds (once) the artefacts of qemu-arm64-uboot: keel-init,
// keel and the test init for GOARCH=arm64, keel's initramfs and the slots'
// initrd with the arm64 kernel's modules. They live in TestMain's folder
// (removed at the end of the suite) when it has one.
func ubootArtefacts(t testing.TB) *vmkit.Artefacts {
	t.Helper()
	ubootBuilt.once.Do(func() {
		ubootBuilt.err = func() error {
			root, err := vmkit.RepoRoot()
			if err != nil {
				return err
			}
			b, err := boards.Get(ubootBoard)
			if err != nil {
				return err
			}
			if err := vmkit.CheckTools(b); err != nil {
				return err
			}
			var dir string
			if built.art != nil {
				dir = filepath.Join(built.art.Dir, b.Arch)
				err = os.MkdirAll(dir, 0o755)
			} else {
				dir, err = os.MkdirTemp("", "keel-vmtests-"+b.Arch+"-")
			}
			if err != nil {
				return err
			}
			start := time.Now()
			ubootBuilt.art, err = vmkit.Build(context.Background(), root, dir, b, os.Stderr)
			fmt.Fprintf(os.Stderr, "vmtests: %s artefacts built in %s\n", b.Name, time.Since(start).Round(time.Millisecond))
			return err
		}()
	})
	if ubootBuilt.err != nil {
		t.Fatalf("building the %s artefacts: %v", ubootBoard, ubootBuilt.err)
	}
	return ubootBuilt.art
}

// ubootTimeout is one power-on of the arm64 machine: TCG emulates arm64
// on x86 more slowly than x86 itself.
const ubootTimeout = 12 * time.Minute

// TestUBootFirstBoot: a new device on qemu-arm64-uboot. U-Boot runs
// keel's boot.scr; keel-init finds no record in the (zero) U-Boot env on
// bootstate, initialises it, boots a with kexec_load (Debian's arm64
// kernel has no kexec_file_load), and a marks itself good. After power-off
// the host reads the env keel wrote with fw_printenv.
func TestUBootFirstBoot(t *testing.T) {
	t.Parallel()
	m := newUBootMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	start := time.Now()
	r := m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.expect("keel: loading keel from virtio 0:1") // boot.scr runs
	r.expect("stage 1")
	t1 := time.Now()
	r.expectRe(reLine("store uboot:/run/keel-fw_env.config"))
	r.expect("no boot state yet: initialising")
	r.expect("KEEL-KEXEC slot a")
	t2 := time.Now()
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Errorf("mode %s, want normal", mode)
	}
	t3 := time.Now()
	t.Logf("power-on -> keel-init %s, keel-init -> kexec %s, kexec -> slot init %s",
		t1.Sub(start).Round(100*time.Millisecond), t2.Sub(t1).Round(100*time.Millisecond), t3.Sub(t2).Round(100*time.Millisecond))
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if deref(s.Active) != "a" || s.Trial != nil || s.Slots["a"].State != "good" || s.Slots["b"].State != "empty" {
		t.Errorf("status after first boot: %+v", s)
	}
	r.powerOff()

	// The host reads the record with libubootenv's fw_printenv.
	env := fwPrintenv(t, m.Disk)
	for _, want := range []string{"keel_active=a", "keel_slot_a_state=good"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("fw_printenv on the bootstate partition: no %s in\n%s", want, env)
		}
	}
}

// fwPrintenv runs fw_printenv on the bootstate partition of disk, with the
// fw_env.config keel-init writes (two 64 KiB copies), and returns what it
// printed.
func fwPrintenv(t *testing.T, disk string) string {
	t.Helper()
	part := filepath.Join(t.TempDir(), "bootstate.img")
	if err := os.WriteFile(part, readPartition(t, disk, layout.Bootstate), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(conf, ubootenv.BootstateFWEnvConfig(part), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fw_printenv", "-c", conf).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv -c %s: %v\n%s", conf, err, out)
	}
	return string(out)
}

// TestUBootFailedTrial: on qemu-arm64-uboot, b's health check fails; after
// its two tries keel-init falls back to a, which never lost a try.
func TestUBootFailedTrial(t *testing.T) {
	t.Parallel()
	m := newUBootMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1, Health: vmkit.HealthFail},
	})
	r := m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 2", 0)
	r.reboot()
	for i := range 2 {
		if mode := r.booted("b", "2.0"); mode != "trial" {
			t.Fatalf("try %d: b in mode %s", i+1, mode)
		}
	}
	if mode := r.booted("a", "1.0"); mode != "fallback" {
		t.Errorf("a came back in mode %s, want fallback", mode)
	}
	s := r.status()
	if b := s.Slots["b"]; b.State != "bad" || !strings.Contains(b.Reason, "no tries left") {
		t.Errorf("b = %+v, want bad: no tries left", b)
	}
	if deref(s.Active) != "a" || s.Slots["a"].State != "good" {
		t.Errorf("a = %+v, active %s", s.Slots["a"], deref(s.Active))
	}
	r.powerOff()
	if env := fwPrintenv(t, m.Disk); !strings.Contains(env, "keel_slot_b_state=bad\n") {
		t.Errorf("fw_printenv: b is not bad:\n%s", env)
	}
}

// TestUBootEnvCopyCorrupted: the newer of the two env copies on bootstate
// is damaged on the host after a power-off (a torn write, a bad sector);
// the next boot reads the older copy, boots a as before, and its commits
// rewrite the damaged copy: both copies pass their CRC afterwards.
func TestUBootEnvCopyCorrupted(t *testing.T) {
	t.Parallel()
	m := newUBootMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	r := m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.powerOff()

	st := readBootstate(t, m.Disk)
	newer := 0
	if st.flag(1)-st.flag(0) == 1 { // the counter flag wraps: 0xff then 0x00
		newer = 1
	}
	if !st.crcOK(0) || !st.crcOK(1) {
		t.Fatalf("after the first boot: copy CRCs %v %v, want both good", st.crcOK(0), st.crcOK(1))
	}
	st.corrupt(newer)
	st.write(t)
	if st.crcOK(newer) {
		t.Fatal("the corruption left the CRC good")
	}

	r = m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	if mode := r.booted("a", "1.0"); mode != "normal" {
		t.Errorf("a in mode %s, want normal", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if deref(s.Active) != "a" || s.Slots["a"].State != "good" {
		t.Errorf("status after the damaged copy: %+v", s)
	}
	r.powerOff()
	st = readBootstate(t, m.Disk)
	if !st.crcOK(0) || !st.crcOK(1) {
		t.Errorf("after the second boot: copy CRCs %v %v, want both repaired", st.crcOK(0), st.crcOK(1))
	}
	if env := fwPrintenv(t, m.Disk); !strings.Contains(env, "keel_active=a\n") {
		t.Errorf("fw_printenv:\n%s", env)
	}
}

// newUBootMachine is newMachine on qemu-arm64-uboot.
func newUBootMachine(t *testing.T, slots map[string]vmkit.SlotSpec) *machine {
	t.Helper()
	vm, err := vmkit.NewMachine(context.Background(), ubootArtefacts(t), t.TempDir(), slots)
	if err != nil {
		t.Fatal(err)
	}
	return &machine{t: t, Machine: vm}
}

// bootstate is the bootstate partition of a disk image, read on the host:
// two redundant env copies of ubootenv.BootstateEnvSize bytes, each a
// CRC-32 (IEEE, little-endian) over its data, a flag byte, then the data
// (U-Boot's env/common.c, CONFIG_SYS_REDUNDAND_ENVIRONMENT).
type bootstate struct {
	disk string
	off  int64
	b    []byte
}

func readBootstate(t *testing.T, disk string) *bootstate {
	t.Helper()
	p := diskPartition(t, disk, layout.Bootstate)
	return &bootstate{disk: disk, off: p.Offset(), b: readPartition(t, disk, layout.Bootstate)[:2*ubootenv.BootstateEnvSize]}
}

func (s *bootstate) copy(i int) []byte {
	return s.b[i*ubootenv.BootstateEnvSize : (i+1)*ubootenv.BootstateEnvSize]
}

func (s *bootstate) flag(i int) byte { return s.copy(i)[4] }

func (s *bootstate) crcOK(i int) bool {
	c := s.copy(i)
	return binary.LittleEndian.Uint32(c) == crc32.ChecksumIEEE(c[5:])
}

// corrupt flips a byte of copy i's data (its first variable).
func (s *bootstate) corrupt(i int) { s.copy(i)[6] ^= 0x20 }

func (s *bootstate) write(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(s.disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(s.b, s.off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUBootUpdateCommit: an update on qemu-arm64-uboot. The running slot a
// installs a bundle of version 2.0 from a USB stick (a second virtio disk,
// /dev/vdb) into b and reboots; U-Boot's boot.scr starts keel-init, which
// boots b on trial; b marks itself good and is committed; a file written on
// data before the update is intact; after power-off fw_printenv on the host
// reads b as the active slot.
func TestUBootUpdateCommit(t *testing.T) {
	t.Parallel()
	m := newUBootMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Empty: true},
	})
	m.Stick = m.bundleFile("b", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 2})
	r := m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.dataPut("survives-the-update")
	out := r.keelOut("install --progress lines /dev/vdb", 0)
	if got := reInstalled.FindStringSubmatch(out); got == nil || got[1] != "2.0" || got[2] != "b" {
		t.Errorf("install printed:\n%s", out)
	}
	mustContain(t, "install", out, "slot b is on trial for 3 boots")
	if s := r.status(); deref(s.Trial) != "b" || s.Slots["b"].Version != "2.0" || s.Installing != nil {
		t.Errorf("after the install: %s", s.Raw)
	}
	r.reboot()
	r.expect("keel: loading keel from virtio 0:1") // U-Boot ran boot.scr again
	r.expectRe(reLine("decision: b (mode trial)"))
	if mode := r.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	s := r.status()
	if deref(s.Active) != "b" || s.Trial != nil || s.Slots["b"].State != "good" || s.Slots["a"].State != "good" {
		t.Errorf("after b marked good: %s", s.Raw)
	}
	if got := r.dataGet(); got != "survives-the-update" {
		t.Errorf("data after the update: %q", got)
	}
	r.powerOff()
	env := fwPrintenv(t, m.Disk)
	for _, want := range []string{"keel_active=b", "keel_slot_b_state=good", "keel_slot_a_state=good"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("fw_printenv after the update: no %s in\n%s", want, env)
		}
	}
}

// TestUBootRecoveryNoBootableSlot: on qemu-arm64-uboot, no slot can boot:
// b's kernel no longer matches its signed manifest (keel-init's first boot
// finds it bad) and a is marked bad from the running system. At the next
// boot keel-init finds nothing to boot, verifies the seed on
// the recovery partition, reinstalls a slot from it and boots it; a file
// written on data before is intact.
func TestUBootRecoveryNoBootableSlot(t *testing.T) {
	t.Parallel()
	m := newUBootMachine(t, withSeed(map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1, CorruptKernel: true},
	}, vmkit.SlotSpec{Version: "0.9-seed", SecurityVersion: 1}))
	r := m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.expect("slot b does not verify: slot-b: kernel digest mismatch")
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.dataPut("precious")
	r.keel("mark-bad a --reason broken-by-test", 0)
	r.reboot()
	r.expect("keel: loading keel from virtio 0:1")
	r.expect("decision: recovery")
	r.expect("recovery seed verified")
	slot := r.expectRe(regexp.MustCompile(`KEEL-RECOVERED slot (\S+)`))[1]
	if mode := r.booted(slot, "0.9-seed"); mode != "recovery" {
		t.Errorf("reinstalled %s booted in mode %s, want recovery", slot, mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	if got := r.dataGet(); got != "precious" {
		t.Errorf("data after recovery: %q, want the file written before", got)
	}
	s := r.status()
	if deref(s.Active) != slot || s.Slots[slot].State != "good" || s.Slots[slot].Version != "0.9-seed" {
		t.Errorf("after recovery: %s", s.Raw)
	}
	mustContain(t, "status", s.Raw, `"last_recovery":"20`)
	r.powerOff()
	if env := fwPrintenv(t, m.Disk); !strings.Contains(env, "keel_active="+slot+"\n") {
		t.Errorf("fw_printenv after recovery:\n%s", env)
	}
}

// TestUBootRAUCScript: adoption of a device whose U-Boot counts tries in
// RAUC's layout (issue 12). The U-Boot script and keel must agree on one
// env: the redundant env on bootstate that keel-init and keel write.
//
//  1. keel's own boot.scr boots a; `keel try b` arms a trial of b and
//     `keel env export --to rauc` writes it in RAUC's layout (BOOT_ORDER="B
//     A", BOOT_B_LEFT=2, BOOT_A_LEFT=3) next to keel's record; after
//     power-off fw_printenv on the host reads those variables.
//  2. boot.scr is replaced with a script in the style of RAUC's documented
//     U-Boot integration (raucBootScript): it loads the env from bootstate,
//     takes the first slot in BOOT_ORDER with attempts left, decrements
//     its counter and saves the env back, as RAUC's script does with
//     saveenv; then it boots keel (keel's Image and initramfs serve both
//     bootnames). The console shows what U-Boot read and wrote.
//  3. keel-init reads the env U-Boot wrote (U-Boot's own variables now in
//     it): keel's record came through intact, so b boots on trial, and
//     `keel env print` shows BOOT_B_LEFT=1 (keel took U-Boot's copy as the
//     newer one: its CRC and flag are right). In b,
//     `keel env import --from rauc --force` turns the counters U-Boot
//     decremented into keel's record: b active with 3 - 1 = 2 unconfirmed
//     boots, a good.
func TestUBootRAUCScript(t *testing.T) {
	t.Parallel()
	m := newUBootMachine(t, map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1},
		"b": {Version: "2.0", SecurityVersion: 1},
	})
	r := m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.booted("a", "1.0")
	r.expect("KEEL-MARKED-GOOD")
	r.keel("try b --tries 2", 0)
	out := r.keelOut("env export --to rauc", 0)
	mustContain(t, "env export", out, "wrote RAUC's boot variables: BOOT_ORDER=B A, BOOT_A_LEFT=3, BOOT_B_LEFT=2")
	mustContain(t, "env export", out, "RAUC's boot script takes slot b next")
	r.powerOff()
	env := fwPrintenv(t, m.Disk)
	for _, want := range []string{"BOOT_ORDER=B A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=2", "keel_trial=b"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("fw_printenv after the export: no %s in\n%s", want, env)
		}
	}

	installBootScript(t, m.Disk, raucBootScript(t, m.Art))
	r = m.powerOn(ubootTimeout)
	r.r.StepTimeout = 8 * time.Minute
	r.expect("rauc-test: env from bootstate copy")
	r.expectRe(reLine("rauc-test: BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=2"))
	r.expectRe(reLine("rauc-test: booting slot B, BOOT_B_LEFT=1"))
	r.expect("rauc-test: env saved to bootstate")
	r.expect("keel: loading keel from virtio 0:1")
	r.expectRe(reLine("decision: b (mode trial)"))
	if mode := r.booted("b", "2.0"); mode != "trial" {
		t.Errorf("b booted in mode %s, want trial", mode)
	}
	r.expect("KEEL-MARKED-GOOD")
	out = r.keelOut("env print BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT", 0)
	for _, want := range []string{"BOOT_ORDER=B A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=1"} {
		mustContain(t, "keel env print", out, want)
	}
	out = r.keelOut("env import --from rauc --force", 0)
	mustContain(t, "env import", out, "imported RAUC's boot state (BOOT_ORDER=B A, BOOT_A_LEFT=3, BOOT_B_LEFT=1)")
	mustContain(t, "env import", out, "b  good (active), 2 unconfirmed boot(s)")
	mustContain(t, "env import", out, "next boot: b (normal)")
	s := r.status()
	if deref(s.Active) != "b" || s.Trial != nil || s.Slots["a"].State != "good" || s.Slots["b"].State != "good" {
		t.Errorf("after the import: %s", s.Raw)
	}
	r.powerOff()
	env = fwPrintenv(t, m.Disk)
	// U-Boot's save brought its own variables (fdtcontroladdr: the device
	// tree U-Boot runs with); keel's commits kept them.
	for _, want := range []string{"BOOT_B_LEFT=1", "keel_active=b", "fdtcontroladdr="} {
		if !strings.Contains(env, want) {
			t.Errorf("fw_printenv after the import: no %s in\n%s", want, env)
		}
	}
}

// Memory raucBootScript uses on QEMU's virt (RAM 0x40000000-0x7fffffff with
// 1 GiB; U-Boot relocates itself to its top): a note of where and with
// which flag the next save goes, the two env copies as read, and a staging
// buffer for env import -c and env export -c, last: env export -c clears
// (and checks room for) its whole CONFIG_ENV_SIZE (256 KiB on qemu_arm64),
// whatever -s says.
const (
	raucNote    = 0x5fff0000
	raucEnvA    = 0x60000000
	raucEnvB    = raucEnvA + ubootenv.BootstateEnvSize
	raucStage   = raucEnvB + ubootenv.BootstateEnvSize
	raucBootEnv = "bootstate"
)

// raucBootScript returns a U-Boot boot script (boot.cmd) in the style of
// RAUC's documented U-Boot integration (RAUC docs, "Integration", U-Boot:
// BOOT_ORDER, BOOT_<x>_LEFT, setexpr to decrement, saveenv, reset when no
// slot is left), written for this test, followed by keel's own boot.scr
// text, which boots keel whichever slot the RAUC part chose.
//
// RAUC's script runs on U-Boot's own env, which saveenv writes to the env
// partition. Debian's qemu_arm64 U-Boot keeps its env in flash that this
// QEMU does not persist, so the script does what U-Boot's env code does
// with CONFIG_SYS_REDUNDAND_ENVIRONMENT on a block device, with U-Boot
// commands: at the start it reads both copies from bootstate (virtio
// read), imports the valid copy with the newer flag (env import -c checks
// its CRC; the redundant layout has a flag byte between the CRC and the
// data, which this U-Boot's env_t lacks, so the copy is staged as CRC then
// data); to save, it exports the whole env (env export -c, as saveenv
// does), puts the flag (the loaded copy's + 1) between CRC and data and
// writes the other copy (virtio write).
func raucBootScript(t *testing.T, art *vmkit.Artefacts) []byte {
	t.Helper()
	b := art.Board
	dev := strings.Fields(b.UBoot.Device) // virtio 0
	blocks := ubootenv.BootstateEnvSize / 512
	data := ubootenv.BootstateEnvSize - 5 // after CRC and flag
	var s strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	// stage copies the redundant copy at addr into the staging buffer as
	// env_t (CRC, data) and imports it; ok is set when its CRC held.
	stage := func(name string, addr, other int) {
		line("if test -z \"${rauc_env_ok}\"; then")
		line("  cp.b %#x %#x %#x", addr+5, raucStage+5, data)
		line("  cp.b %#x %#x 4", addr, raucStage+1)
		line("  if env import -c %#x %#x; then", raucStage+1, ubootenv.BootstateEnvSize-1)
		line("    setenv rauc_env_ok 1")
		line("    echo \"rauc-test: env from bootstate copy %s\"", name)
		line("    setexpr.b rauc_env_flag *%#x", addr+4)
		line("    setexpr rauc_env_flag ${rauc_env_flag} + 1")
		line("    mw.b %#x ${rauc_env_flag}", raucNote+4)
		line("    setexpr.l rauc_env_blk *%#x", other)
		line("    mw.l %#x ${rauc_env_blk}", raucNote)
		line("  fi")
		line("fi")
	}
	// save is saveenv: export, flag, write the copy not loaded; in is
	// the indentation.
	save := func(in string) {
		line := func(format string, args ...any) { fmt.Fprintf(&s, in+format+"\n", args...) }
		line("setenv rauc_env_ok")
		line("setenv rauc_env_flag")
		line("setenv rauc_env_blk")
		line("env export -c -s %#x %#x", ubootenv.BootstateEnvSize-1, raucStage+1)
		line("cp.b %#x %#x 4", raucStage+1, raucNote+8)
		line("cp.b %#x %#x 4", raucNote+8, raucStage)
		line("setexpr.b rauc_env_flag *%#x", raucNote+4)
		line("mw.b %#x ${rauc_env_flag}", raucStage+4)
		line("setexpr.l rauc_env_blk *%#x", raucNote)
		line("virtio write %#x ${rauc_env_blk} %#x", raucStage, blocks)
		line("echo \"rauc-test: env saved to bootstate at block ${rauc_env_blk}, flag ${rauc_env_flag}\"")
		line("setenv rauc_env_flag")
		line("setenv rauc_env_blk")
	}
	line("# A RAUC-style A/B boot script (keel vmtests, TestUBootRAUCScript).")
	line("# Load the env from keel's bootstate partition: two redundant copies.")
	line("part start %s %s %s rauc_env_blk", dev[0], dev[1], raucBootEnv)
	line("setexpr rauc_env_blk2 ${rauc_env_blk} + %#x", blocks)
	line("mw.l %#x ${rauc_env_blk}", raucNote+12)
	line("mw.l %#x ${rauc_env_blk2}", raucNote+16)
	line("%s read %#x ${rauc_env_blk} %#x", dev[0], raucEnvA, blocks)
	line("%s read %#x ${rauc_env_blk2} %#x", dev[0], raucEnvB, blocks)
	line("setenv rauc_env_blk2")
	line("# The newer copy: the flag after the CRC counts up and wraps.")
	line("setenv rauc_env_first a")
	line("if itest.b *%#x > *%#x; then setenv rauc_env_first b; fi", raucEnvB+4, raucEnvA+4)
	line("if itest.b *%#x == 0xff && itest.b *%#x == 0; then setenv rauc_env_first b; fi", raucEnvA+4, raucEnvB+4)
	line("if itest.b *%#x == 0xff && itest.b *%#x == 0; then setenv rauc_env_first a; fi", raucEnvB+4, raucEnvA+4)
	line("setenv rauc_env_ok")
	line("if test ${rauc_env_first} = b; then")
	stage("b", raucEnvB, raucNote+12)
	line("fi")
	// The newer copy first; if its CRC fails, the other.
	stage("a", raucEnvA, raucNote+16)
	stage("b", raucEnvB, raucNote+12)
	line("if test -z \"${rauc_env_ok}\"; then")
	line("  echo \"rauc-test: no valid env on bootstate, the default env of U-Boot\"")
	line("  mw.l %#x ${rauc_env_blk}", raucNote)
	line("  mw.b %#x 1", raucNote+4)
	line("fi")
	line("setenv rauc_env_first")
	line("")
	line("# RAUC: BOOT_ORDER names the slots in the order they are tried,")
	line("# BOOT_<x>_LEFT the boot attempts each has left.")
	line("test -n \"${BOOT_ORDER}\" || setenv BOOT_ORDER \"A B\"")
	line("test -n \"${BOOT_A_LEFT}\" || setenv BOOT_A_LEFT 3")
	line("test -n \"${BOOT_B_LEFT}\" || setenv BOOT_B_LEFT 3")
	line("echo \"rauc-test: BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT}\"")
	line("setenv rauc_slot")
	line("for BOOT_SLOT in ${BOOT_ORDER}; do")
	for _, x := range []string{"A", "B"} {
		line("  if test -z \"${rauc_slot}\" && test \"${BOOT_SLOT}\" = %s && test ${BOOT_%s_LEFT} -gt 0; then", x, x)
		line("    setexpr BOOT_%s_LEFT ${BOOT_%s_LEFT} - 1", x, x)
		line("    setenv rauc_slot %s", x)
		line("    echo \"rauc-test: booting slot %s, BOOT_%s_LEFT=${BOOT_%s_LEFT}\"", x, x, x)
		line("  fi")
	}
	line("done")
	line("setenv BOOT_SLOT")
	line("if test -z \"${rauc_slot}\"; then")
	line("  echo \"rauc-test: no slot has attempts left: every counter back to 3, reset\"")
	line("  setenv BOOT_A_LEFT 3")
	line("  setenv BOOT_B_LEFT 3")
	save("  ")
	line("  reset")
	line("fi")
	line("setenv rauc_slot")
	save("")
	line("")
	line("# keel boots whichever slot the RAUC part chose: keel decides from its record.")
	keel, err := image.BootScript(image.BootScriptOptions{
		Board: b.Name, Device: b.UBoot.Device, Part: 1,
		KernelAddr: b.UBoot.KernelAddr, RamdiskAddr: b.UBoot.RamdiskAddr,
		Cmdline: strings.ReplaceAll(vmkit.KeelCmdline, "console=ttyS0", "console="+b.Console),
	})
	if err != nil {
		t.Fatal(err)
	}
	// U-Boot's hush shell cannot parse a single quote inside double
	// quotes: keep them out of the RAUC part's commands.
	for _, l := range strings.Split(s.String(), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") && strings.Contains(l, "'") {
			t.Fatalf("RAUC boot script: a single quote in %q", l)
		}
	}
	s.Write(keel)
	return []byte(s.String())
}

// installBootScript makes the script image of the boot script text cmd
// with mkimage and puts it on disk's boot partition as boot.scr, in place
// of keel's (mcopy on the partition's FAT).
func installBootScript(t *testing.T, disk string, cmd []byte) {
	t.Helper()
	dir := t.TempDir()
	src, scr := filepath.Join(dir, "boot.cmd"), filepath.Join(dir, "boot.scr")
	if err := os.WriteFile(src, cmd, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := image.MkScript(context.Background(), src, scr, "rauc-test"); err != nil {
		t.Fatal(err)
	}
	p := diskPartition(t, disk, layout.Boot)
	out, err := exec.Command("mcopy", "-o", "-i", fmt.Sprintf("%s@@%d", disk, p.Offset()), scr, "::"+image.BootScriptPath).CombinedOutput()
	if err != nil {
		t.Fatalf("mcopy boot.scr onto the boot partition: %v\n%s", err, out)
	}
}
