package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusShowsFactoryReset: a pending factory reset (keel recover
// --factory-reset, keel_factory_reset=1) shows in keel status, text and
// --json, so an admin sees that the next boot erases the data; a plain
// recovery request, a withdrawn one, and a reinstall with a factory reset
// still to finish (recovery resumes it and wipes again) say so too.
func TestStatusShowsFactoryReset(t *testing.T) {
	cfg := envConfig(t, true)
	k := func(args ...string) result { return keel(t, append([]string{"-c", cfg}, args...)...) }
	check := func(name string, want bool, line string) {
		t.Helper()
		out := k("status").ok(t).stdout
		if got := hasLine(out, "factory reset:"); got != want || want && !hasLine(out, line) {
			t.Errorf("%s: status text, want a factory reset line %v (%q):\n%s", name, want, line, out)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(k("status", "--json").ok(t).stdout), &m); err != nil {
			t.Fatal(err)
		}
		if got := string(m["factory_reset"]); got != map[bool]string{true: "true", false: "false"}[want] {
			t.Errorf("%s: status --json factory_reset = %s, want %v", name, got, want)
		}
	}
	k("init", "--active", "a").ok(t)
	check("nothing requested", false, "")
	k("recover", "--reason", "support ticket 12").ok(t)
	check("recovery without a reset", false, "")
	k("recover", "--cancel").ok(t)
	k("recover", "--factory-reset", "--reason", "support ticket 12").ok(t)
	check("factory reset", true, "factory reset: PENDING: the next boot's recovery ERASES the data partition (keel recover --cancel withdraws it)")
	k("recover", "--cancel").ok(t)
	check("withdrawn", false, "")
	// A reinstall cut by a power loss, with its factory reset: the next
	// boot resumes it and erases the data (again).
	k("env", "set", "keel_slot_b_state=empty", "keel_reinstalling=b", "keel_factory_reset=1").ok(t)
	check("reinstall with a factory reset", true, "factory reset: PENDING: the next boot resumes reinstalling slot b and ERASES the data partition")
	if out := k("status").ok(t).stdout; strings.Contains(out, "--cancel withdraws") {
		t.Errorf("status offers --cancel for a reinstall under way:\n%s", out)
	}
}
