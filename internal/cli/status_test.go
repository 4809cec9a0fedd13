package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// hasLine reports whether out has a line that starts with want, runs of
// blanks (tabwriter's padding) counting as one space.
func hasLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.Join(strings.Fields(l), " "), want) {
			return true
		}
	}
	return false
}

// hasExactLine is hasLine for the whole line.
func hasExactLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == want {
			return true
		}
	}
	return false
}

// fellBack makes, in the efivars directory deps names, the record of a
// device whose trial of b (version 2.0) ran out: a booted in fallback.
func fellBack(t *testing.T, deps Deps) {
	t.Helper()
	dir := []string{"--efivars", deps.EFIVarsDir}
	keelDeps(t, deps, append(dir, "init", "--active", "a")...).ok(t)
	keelDeps(t, deps, append(dir, "try", "b", "--tries", "1", "--version", "2.0")...).ok(t)
	keelDeps(t, deps, append(dir, "select", "--commit")...).ok(t) // b's trial
	keelDeps(t, deps, append(dir, "select", "--commit")...).ok(t) // back to a
}

// statusJSONOf runs status --json and returns it as an object.
func statusJSONOf(t *testing.T, deps Deps, args ...string) map[string]json.RawMessage {
	t.Helper()
	out := keelDeps(t, deps, append(args, "status", "--json")...).ok(t).stdout
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return m
}

// TestStatusBootedAndLastFallback: on a system keel booted, status says
// the booted slot and mode (keel.slot=, keel.mode= on the kernel command
// line) with the slot's version, and the last fallback: which slot
// failed, why, what booted instead, at which generation.
func TestStatusBootedAndLastFallback(t *testing.T) {
	deps := eventDeps(t, "console=ttyS0 keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=2 keel.store=efivars", "")
	fellBack(t, deps)
	// Booted b on trial (the record says b's version), then a fell back.
	out := keelDeps(t, deps, "status").ok(t).stdout
	for _, want := range []string{
		"booted: slot b (trial), version 2.0, security version 2",
		"last fallback: slot b failed, fallback to slot a (generation 5): trial of slot b failed: its tries ran out and it was never marked good",
	} {
		if !hasLine(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "booted:") > strings.Index(out, "generation:") {
		t.Errorf("booted is not at the top:\n%s", out)
	}
	m := statusJSONOf(t, deps)
	if b := strings.Join(strings.Fields(string(m["booted"])), ""); b != `{"by_keel":true,"slot":"b","mode":"trial","version":"2.0","security_version":2,"measured":true}` {
		t.Errorf("booted %s", b)
	}
	var f map[string]any
	if err := json.Unmarshal(m["last_fallback"], &f); err != nil {
		t.Fatal(err)
	}
	if f["failed_slot"] != "b" || f["booted_slot"] != "a" || f["mode"] != "fallback" || f["generation"] != 5.0 || !strings.Contains(f["reason"].(string), "tries ran out") {
		t.Errorf("last_fallback %s", m["last_fallback"])
	}
	// The fields other tools read are all there, as before.
	for _, k := range []string{"active", "trial", "installing", "generation", "slots", "last_boot", "next_boot", "last_recovery", "store"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}
	// Unmeasured: said.
	deps.Cmdline = func() (string, error) {
		return "keel.stage=2 keel.slot=a keel.mode=fallback keel.secver=1 keel.tpm=unmeasured keel.store=efivars", nil
	}
	if out := keelDeps(t, deps, "status").ok(t).stdout; !hasLine(out, "booted: slot a (fallback), security version 1, unmeasured (no TPM)") {
		t.Errorf("unmeasured boot:\n%s", out)
	}
}

// TestStatusNotAKeelBoot: on a system keel did not boot, status says so
// (text and JSON); with a store given for another system, or a disk
// image, it says nothing of the running system.
func TestStatusNotAKeelBoot(t *testing.T) {
	deps := eventDeps(t, "console=ttyS0 root=/dev/sda2", "")
	keelDeps(t, deps, "--efivars", deps.EFIVarsDir, "init", "--active", "a").ok(t)
	if out := keelDeps(t, deps, "status").ok(t).stdout; !hasLine(out, "booted: not a keel boot (no keel.slot= on the kernel command line)") {
		t.Errorf("status:\n%s", out)
	}
	if b := strings.Join(strings.Fields(string(statusJSONOf(t, deps)["booted"])), ""); b != `{"by_keel":false}` {
		t.Errorf("booted %s", b)
	}
	for _, args := range [][]string{{"--efivars", deps.EFIVarsDir}} {
		if out := keelDeps(t, deps, append(args, "status")...).ok(t).stdout; strings.Contains(out, "booted:") {
			t.Errorf("%v: status:\n%s", args, out)
		}
		if _, ok := statusJSONOf(t, deps, args...)["booted"]; ok {
			t.Errorf("%v: status --json has booted", args)
		}
	}
	// A disk image is never the running system, whatever booted it.
	img := diskImage(t)
	keel(t, "--image", img, "init", "--active", "a").ok(t)
	deps.Cmdline = func() (string, error) { return "keel.stage=2 keel.slot=a keel.mode=normal", nil }
	if out := keelDeps(t, deps, "--image", img, "status").ok(t).stdout; strings.Contains(out, "booted:") {
		t.Errorf("image status:\n%s", out)
	}
	// -c or --efivars on a system keel booted: shown.
	if out := keelDeps(t, deps, "--efivars", deps.EFIVarsDir, "status").ok(t).stdout; !hasExactLine(out, "booted: slot a (normal)") {
		t.Errorf("--efivars on a keel boot:\n%s", out)
	}
}

// TestStatusBadCmdline: a keel parameter given twice, or a slot name that
// is none, is reported; status still shows the record.
func TestStatusBadCmdline(t *testing.T) {
	for line, want := range map[string]string{
		"keel.slot=a keel.slot=b keel.mode=normal": "booted: unknown: the kernel command line: keel command line: keel.slot is given 2 times",
		"keel.slot=A/b keel.mode=normal":           `booted: unknown: the kernel command line: keel.slot="A/b" is not a slot name`,
		"keel.slot=a keel.mode=normal keel.mode=x": "keel.mode is given 2 times",
	} {
		deps := eventDeps(t, line, "")
		keelDeps(t, deps, "--efivars", deps.EFIVarsDir, "init", "--active", "a").ok(t)
		out := keelDeps(t, deps, "status").ok(t).stdout
		if !hasLine(out, "booted: unknown: the kernel command line: ") || !strings.Contains(strings.Join(strings.Fields(out), " "), want) || !hasLine(out, "active: a") {
			t.Errorf("%q: status:\n%s", line, out)
		}
	}
}

// TestStatusNoFallbackYet: a record without a fallback (one written before
// keel kept it, too) says none; JSON null.
func TestStatusNoFallbackYet(t *testing.T) {
	cfg := envConfig(t, true)
	keel(t, "-c", cfg, "env", "set", "keel_format=1", "keel_slots=a,b", "keel_active=a", "keel_generation=6",
		"keel_last_slot=a", "keel_last_mode=fallback", "keel_last_reason=slot b failed its trial; back to slot a",
		"keel_slot_a_state=good", "keel_slot_b_state=bad", "keel_slot_b_reason=trial failed").ok(t)
	if out := keel(t, "-c", cfg, "status").ok(t).stdout; !hasLine(out, "last fallback: none recorded") {
		t.Errorf("status:\n%s", out)
	}
	var deps Deps // keel's own offline Deps
	deps.Cmdline = func() (string, error) { return "", nil }
	if f := string(statusJSONOf(t, deps, "-c", cfg)["last_fallback"]); f != "null" {
		t.Errorf("last_fallback %s", f)
	}
}
