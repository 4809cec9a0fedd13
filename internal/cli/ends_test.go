package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/efivars"
)

const trialBCmdline = "console=ttyS0 keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=1 keel.store=efivars"

// trialBooted makes, in deps' efivars directory, the record of a device
// whose last decision booted b on trial (2 tries armed, 1 left).
func trialBooted(t *testing.T, deps Deps) {
	t.Helper()
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b", "--tries", "2").ok(t)
	keelDeps(t, deps, "select", "--commit").ok(t)
}

func loadRecord(t *testing.T, deps Deps) bootenv.Record {
	t.Helper()
	s, err := efivars.Open(deps.EFIVarsDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNoteShutdown: keel note-shutdown VERB, as keel's systemd-shutdown
// hook runs it, notes the verb in the record for the booted slot; only
// systemd-shutdown's verbs are taken; on a system keel did not boot it
// notes nothing and succeeds (the hook runs at every shutdown); offline it
// is refused.
func TestNoteShutdown(t *testing.T) {
	deps := eventDeps(t, trialBCmdline, "")
	trialBooted(t, deps)
	out := keelDeps(t, deps, "note-shutdown", "reboot").ok(t).stdout
	if !strings.Contains(out, "noted: slot b's OS ends this boot with reboot") {
		t.Errorf("note-shutdown: %s", out)
	}
	if r := loadRecord(t, deps); r.Shutdown != bootenv.NoteReboot {
		t.Errorf("the record's note %q", r.Shutdown)
	}
	keelDeps(t, deps, "note-shutdown", "kexec").ok(t)
	if r := loadRecord(t, deps); r.Shutdown != bootenv.NoteKexec {
		t.Errorf("the record's note %q after kexec", r.Shutdown)
	}
	for _, args := range [][]string{{"keel-init"}, {"restart"}} {
		keelDeps(t, deps, append([]string{"note-shutdown"}, args...)...).fails(t, 1, "want reboot, poweroff, halt or kexec")
	}
	for _, args := range [][]string{{}, {"reboot", "now"}} {
		keelDeps(t, deps, append([]string{"note-shutdown"}, args...)...).fails(t, 1, "usage: keel note-shutdown")
	}
	keelDeps(t, deps, "--efivars", deps.EFIVarsDir, "note-shutdown", "reboot").fails(t, 1, "takes no -c, --efivars or --image")
	// Slot a's OS cannot note the end of b's boot.
	other := eventDeps(t, strings.Replace(trialBCmdline, "keel.slot=b", "keel.slot=a", 1), "")
	other.EFIVarsDir = deps.EFIVarsDir
	keelDeps(t, other, "note-shutdown", "reboot").fails(t, 1, `the record's last boot ran slot "b", not a`)
	// Not a keel boot.
	plain := eventDeps(t, "console=ttyS0", "")
	if out := keelDeps(t, plain, "note-shutdown", "poweroff").ok(t).stdout; !strings.Contains(out, "nothing to note") {
		t.Errorf("on a system keel did not boot: %s", out)
	}
}

// TestStatusLastEnd: keel status says how the last boot ended, and a
// trial's boots that ended without using a try; --json has last_end
// (null when not known) and each slot's uncounted_ends.
func TestStatusLastEnd(t *testing.T) {
	deps := eventDeps(t, trialBCmdline, "")
	trialBooted(t, deps)
	if m := statusJSONOf(t, deps); string(m["last_end"]) != "null" {
		t.Errorf("last_end before any end: %s", m["last_end"])
	}
	if out := keelDeps(t, deps, "status").ok(t).stdout; !hasLine(out, "last end: not known") {
		t.Errorf("status:\n%s", out)
	}
	// keel-init's next boot after a power cut.
	s, err := efivars.Open(deps.EFIVarsDir)
	if err != nil {
		t.Fatal(err)
	}
	r := loadRecord(t, deps)
	_, n, _ := bootenv.Decide(bootenv.WithEnd(r, bootenv.Classify(r, bootenv.Evidence{WatchdogRead: true}), bootenv.Policy{}), bootenv.Policy{}, nil)
	if err := s.Commit(n); err != nil {
		t.Fatal(err)
	}
	out := keelDeps(t, deps, "status").ok(t).stdout
	for _, want := range []string{
		"trial: b (1 tries left; its last 1 boots ended without using a try (power loss or kexec))",
		"last end: power-loss (slot b, trial): no source explains it: the power went, or the machine was reset from outside; the trial's try is not used (1 of 3 such ends in a row)",
	} {
		if !hasExactLine(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	m := statusJSONOf(t, deps)
	var end bootenv.End
	if err := json.Unmarshal(m["last_end"], &end); err != nil || end.How != bootenv.EndPowerLoss || end.Slot != "b" || end.Mode != bootenv.ModeTrial {
		t.Errorf("last_end %s (%v)", m["last_end"], err)
	}
	var slots map[string]map[string]any
	if err := json.Unmarshal(m["slots"], &slots); err != nil || slots["b"]["uncounted_ends"] != 1.0 || slots["b"]["tries_left"] != 1.0 {
		t.Errorf("slots %s (%v)", m["slots"], err)
	}
}

// TestEventsCrash: keel events ends with the first lines of the last
// boot's crash report keel-init handed over (/run/keel/last-crash.txt),
// made printable, also when the boot is unmeasured (no event log).
func TestEventsCrash(t *testing.T) {
	for _, measured := range []bool{true, false} {
		run := t.TempDir()
		if measured {
			log, err := os.ReadFile(filepath.Join("testdata", "eventlog.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(run, "eventlog.jsonl"), log, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		crash := "<0>[    3.651] Kernel panic - not syncing: sysrq triggered crash\n<4>[    3.652] CPU: 0 PID: 1 \x1b[31mred\n"
		if err := os.WriteFile(filepath.Join(run, "last-crash.txt"), []byte(crash), 0o444); err != nil {
			t.Fatal(err)
		}
		r := keelDeps(t, eventDeps(t, fixtureCmdline, run), "events")
		for _, want := range []string{
			"the last boot's kernel crashed; the first lines of its report, which pstore kept (keel-init read and cleared it: " + filepath.Join(run, "last-crash.txt") + "):",
			"  <0>[    3.651] Kernel panic - not syncing: sysrq triggered crash",
			`  "<4>[    3.652] CPU: 0 PID: 1 \x1b[31mred"`, // quoted and escaped, as keel prints what is not printable
		} {
			if !strings.Contains(r.stdout, want+"\n") {
				t.Errorf("measured=%v: keel events lacks %q:\n%s", measured, want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "\x1b") {
			t.Errorf("measured=%v: a control character reached the terminal", measured)
		}
	}
	// No crash: nothing said.
	if out := keelDeps(t, eventDeps(t, fixtureCmdline, "testdata"), "events").ok(t).stdout; strings.Contains(out, "crashed") {
		t.Errorf("keel events after no crash:\n%s", out)
	}
}
