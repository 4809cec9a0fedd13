package cli

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The tests below set up a U-Boot env the way a device running RAUC or
// Mender has it, with libubootenv's own fw_setenv (package
// libubootenv-tool, scripts/install-deps.sh), import it with keel, and read
// the result back with fw_printenv.

// boardEnv is what U-Boot's default environment gives a board: variables
// keel must keep exactly as they are.
const boardEnv = "bootcmd=run distro_bootcmd; reset\n" +
	"bootdelay=2\n" +
	"bootargs=console=ttyS0,115200 rootwait rw quiet\n" +
	"mmcdev=0\n"

func fwTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (package libubootenv-tool; scripts/install-deps.sh installs it): %v", name, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// fwSetenv runs fw_setenv -c cfg with args; a blank env starts from the
// board's default environment, as on a device U-Boot never saved.
func fwSetenv(t *testing.T, cfg string, args ...string) {
	t.Helper()
	def := filepath.Join(filepath.Dir(cfg), "default.env")
	if err := os.WriteFile(def, []byte(boardEnv), 0o644); err != nil {
		t.Fatal(err)
	}
	fwTool(t, "fw_setenv", append([]string{"-c", cfg, "-f", def}, args...)...)
}

// fwScript sets variables in one commit with fw_setenv -s, as the Mender
// client does. libubootenv reads NAME=VALUE lines (meta-mender patches it
// to take Mender's "NAME VALUE" too).
func fwScript(t *testing.T, cfg string, lines ...string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fwSetenv(t, cfg, "-s", script)
}

// fwPrintenv returns fw_printenv's lines.
func fwPrintenv(t *testing.T, cfg string, names ...string) []string {
	t.Helper()
	out := fwTool(t, "fw_printenv", append([]string{"-c", cfg}, names...)...)
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// without drops the lines whose variable name starts with one of prefixes.
func without(lines []string, prefixes ...string) []string {
	var out []string
	for _, l := range lines {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(l, p) }) {
			out = append(out, l)
		}
	}
	return out
}

// currentEntries returns the entries ("name=value\x00"...) of the current
// copy of the redundant env envConfig made (copies at 0 and 0x4000, counter
// flags): the bytes as stored, up to the empty entry.
func currentEntries(t *testing.T, cfg string) []byte {
	t.Helper()
	img, err := os.ReadFile(filepath.Join(filepath.Dir(cfg), "env.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var best []byte
	bestFlag := -1
	for _, off := range []int{0, 0x4000} {
		c := img[off : off+0x4000]
		data := c[5:]
		if binary.LittleEndian.Uint32(c[:4]) != crc32.ChecksumIEEE(data) {
			continue
		}
		if int(c[4]) > bestFlag { // flags stay small in a test: no wrap
			bestFlag, best = int(c[4]), data
		}
	}
	if best == nil {
		t.Fatal("no valid env copy")
	}
	end := bytes.Index(best, []byte{0, 0})
	return best[:end+1]
}

// keepsEnv checks that after holds every entry of before, byte for byte and
// in the same order, followed only by keel_* entries.
func keepsEnv(t *testing.T, before, after []byte) {
	t.Helper()
	if !bytes.HasPrefix(after, before) {
		t.Fatalf("the env's variables changed:\nbefore %q\nafter  %q", before, after)
	}
	for _, e := range bytes.Split(bytes.TrimSuffix(after[len(before):], []byte{0}), []byte{0}) {
		if !bytes.HasPrefix(e, []byte("keel_")) {
			t.Errorf("the import added %q, not a keel_ variable", e)
		}
	}
}

func TestEnvImportRAUC(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     [][]string // fw_setenv calls, as RAUC and its U-Boot script make them
		active  string
		trial   string
		states  map[string]string
		next    string
		unconfA string
	}{
		{
			// An update to B booted 3 times and was never marked good:
			// the script falls back to A. RAUC writes its counters as
			// "%x"; a script may write 0x-hex.
			name:   "B failed, back on A",
			set:    [][]string{{"BOOT_ORDER", "B A"}, {"BOOT_B_LEFT", "0"}, {"BOOT_A_LEFT", "0x3"}},
			active: "a", trial: "b",
			states: map[string]string{"a": "good", "b": "trial"},
			next:   "a fallback",
		},
		{
			// Steady state on A, booted and not yet marked good (the
			// script left 2); boot-attempts 10 written by RAUC as "a".
			name:   "steady state",
			set:    [][]string{{"BOOT_ORDER", "A B"}, {"BOOT_A_LEFT", "2"}, {"BOOT_B_LEFT", "a"}},
			active: "a",
			states: map[string]string{"a": "good", "b": "good"},
			next:   "a normal", unconfA: "keel_slot_a_unconfirmed=1",
		},
		{
			// RAUC marked B bad: out of BOOT_ORDER, counter 0.
			name:   "B marked bad",
			set:    [][]string{{"BOOT_ORDER", "A"}, {"BOOT_A_LEFT", "3"}, {"BOOT_B_LEFT", "0"}},
			active: "a",
			states: map[string]string{"a": "good", "b": "bad"},
			next:   "a normal",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := envConfig(t, true)
			for _, kv := range tc.set {
				fwSetenv(t, cfg, kv...)
			}
			before, beforeLines := currentEntries(t, cfg), fwPrintenv(t, cfg)
			out := keel(t, "-c", cfg, "env", "import", "--from", "rauc").ok(t).stdout
			if !strings.Contains(out, "imported RAUC's boot state") || !strings.Contains(out, "next boot: "+strings.Fields(tc.next)[0]) {
				t.Errorf("import says:\n%s", out)
			}
			s := status(t, "-c", cfg)
			if s.Active == nil || *s.Active != tc.active || (tc.trial == "") != (s.Trial == nil) || (s.Trial != nil && *s.Trial != tc.trial) || s.Generation != 1 {
				t.Errorf("status after import: %+v", s)
			}
			for slot, st := range tc.states {
				if s.Slots[slot].State != st {
					t.Errorf("slot %s is %s, want %s (%+v)", slot, s.Slots[slot].State, st, s.Slots[slot])
				}
			}
			if s.Slots["b"].State == "bad" && !strings.Contains(s.Slots["b"].Reason, "not bootable in RAUC's BOOT_ORDER/BOOT_x_LEFT") {
				t.Errorf("b's reason: %q", s.Slots["b"].Reason)
			}
			if got := strings.TrimSpace(keel(t, "-c", cfg, "select", "--json").ok(t).stdout); !strings.Contains(got, `"slot":"`+strings.Fields(tc.next)[0]+`"`) || !strings.Contains(got, `"mode":"`+strings.Fields(tc.next)[1]+`"`) {
				t.Errorf("select: %s, want %s", got, tc.next)
			}
			// Every variable that was there is still there, byte for
			// byte and in place (RAUC's too); only keel_* were added.
			after := fwPrintenv(t, cfg)
			if got := without(after, "keel_"); !slices.Equal(got, beforeLines) {
				t.Errorf("fw_printenv, keel_* left out:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(beforeLines, "\n"))
			}
			if tc.unconfA != "" && !slices.Contains(after, tc.unconfA) {
				t.Errorf("fw_printenv has no %s:\n%s", tc.unconfA, strings.Join(after, "\n"))
			}
			keepsEnv(t, before, currentEntries(t, cfg))
		})
	}
}

func TestEnvExportRAUC(t *testing.T) {
	cfg := envConfig(t, true)
	fwSetenv(t, cfg, "BOOT_ORDER", "A B")
	fwSetenv(t, cfg, "BOOT_A_LEFT", "3")
	fwSetenv(t, cfg, "BOOT_B_LEFT", "3")
	keel(t, "-c", cfg, "env", "import", "--from", "rauc").ok(t)
	// keel takes over: an update goes on trial in b.
	keel(t, "-c", cfg, "mark-bad", "b", "--reason", "overwritten by the update").ok(t)
	keel(t, "-c", cfg, "try", "b", "--tries", "2").ok(t)
	gen := status(t, "-c", cfg).Generation
	keelBefore := without(fwPrintenv(t, cfg), "BOOT_")
	out := keel(t, "-c", cfg, "env", "export", "--to", "rauc").ok(t).stdout
	if !strings.Contains(out, "takes slot b next") {
		t.Errorf("export says:\n%s", out)
	}
	// RAUC's script boots B twice, then A: as keel does.
	if got := fwPrintenv(t, cfg, "BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT"); !slices.Equal(got, []string{"BOOT_ORDER=B A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=2"}) {
		t.Errorf("fw_printenv after export: %q", got)
	}
	// The keel record and the board's variables are untouched.
	if got := without(fwPrintenv(t, cfg), "BOOT_"); !slices.Equal(got, keelBefore) {
		t.Errorf("export changed other variables:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(keelBefore, "\n"))
	}
	if g := status(t, "-c", cfg).Generation; g != gen {
		t.Errorf("export changed the record: generation %d -> %d", gen, g)
	}
	// After a boot of the trial and mark-good, b is primary with full
	// attempts; then two boots of b that the OS does not confirm use two.
	keel(t, "-c", cfg, "select", "--commit").ok(t)
	keel(t, "-c", cfg, "mark-good", "--slot", "b").ok(t)
	keel(t, "-c", cfg, "env", "export", "--to", "rauc").ok(t)
	if got := fwPrintenv(t, cfg, "BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT"); !slices.Equal(got, []string{"BOOT_ORDER=B A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=3"}) {
		t.Errorf("fw_printenv after mark-good and export: %q", got)
	}
	keel(t, "-c", cfg, "select", "--commit").ok(t)
	keel(t, "-c", cfg, "select", "--commit").ok(t)
	keel(t, "-c", cfg, "env", "export", "--to", "rauc").ok(t)
	if got := fwPrintenv(t, cfg, "BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT"); !slices.Equal(got, []string{"BOOT_ORDER=B A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=1"}) {
		t.Errorf("fw_printenv after two unconfirmed boots and export: %q", got)
	}
	// Re-importing what was exported keeps the decision.
	keel(t, "-c", cfg, "env", "import", "--from", "rauc", "--force").ok(t)
	if s := status(t, "-c", cfg); *s.Active != "b" || s.Slots["a"].State != "good" || s.Generation <= gen {
		t.Errorf("re-import: %+v", s)
	}
}

func TestEnvImportMender(t *testing.T) {
	cfg := envConfig(t, true)
	// The device runs partition 2; the Mender client installed an update
	// into 3 and wrote its variables in one fw_setenv -s commit.
	fwScript(t, cfg, "mender_boot_part=2", "mender_boot_part_hex=2", "upgrade_available=0", "bootcount=0", "bootlimit=1")
	fwScript(t, cfg, "upgrade_available=1", "mender_boot_part=3", "mender_boot_part_hex=3", "bootcount=0")
	before, beforeLines := currentEntries(t, cfg), fwPrintenv(t, cfg)
	keel(t, "-c", cfg, "env", "import", "--from", "mender", "--parts", "2=a,3=b").ok(t)
	s := status(t, "-c", cfg)
	if s.Active == nil || *s.Active != "a" || s.Trial == nil || *s.Trial != "b" || s.Slots["b"].TriesLeft != 1 || s.Slots["a"].State != "good" {
		t.Fatalf("status after import: %+v", s)
	}
	if got := without(fwPrintenv(t, cfg), "keel_"); !slices.Equal(got, beforeLines) {
		t.Errorf("fw_printenv, keel_* left out:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(beforeLines, "\n"))
	}
	keepsEnv(t, before, currentEntries(t, cfg))
	// keel boots the update once, as U-Boot would; the OS commits it.
	if got := strings.TrimSpace(keel(t, "-c", cfg, "select", "--commit").ok(t).stdout); got != "b" {
		t.Fatalf("trial boot: %q", got)
	}
	keel(t, "-c", cfg, "mark-good", "--slot", "b").ok(t)
	keel(t, "-c", cfg, "env", "export", "--to", "mender").ok(t)
	want := []string{"mender_boot_part=3", "mender_boot_part_hex=3", "upgrade_available=0", "bootcount=0", "bootlimit=1"}
	if got := fwPrintenv(t, cfg, "mender_boot_part", "mender_boot_part_hex", "upgrade_available", "bootcount", "bootlimit"); !slices.Equal(got, want) {
		t.Errorf("after mark-good and export: %q, want %q", got, want)
	}
	// A new trial of a with three tries: bootlimit is raised to hold them.
	keel(t, "-c", cfg, "try", "a", "--tries", "3").ok(t)
	keel(t, "-c", cfg, "env", "export", "--to", "mender", "--bootlimit", "1").ok(t)
	want = []string{"mender_boot_part=2", "mender_boot_part_hex=2", "upgrade_available=1", "bootcount=0", "bootlimit=3"}
	if got := fwPrintenv(t, cfg, "mender_boot_part", "mender_boot_part_hex", "upgrade_available", "bootcount", "bootlimit"); !slices.Equal(got, want) {
		t.Errorf("after try a and export: %q, want %q", got, want)
	}
	// The board's variables survived all of it.
	for _, l := range strings.Split(strings.TrimSpace(boardEnv), "\n") {
		if got := fwPrintenv(t, cfg, strings.SplitN(l, "=", 2)[0]); !slices.Equal(got, []string{l}) {
			t.Errorf("fw_printenv %q, want %q", got, l)
		}
	}
}

func TestEnvImportMenderCommitted(t *testing.T) {
	cfg := envConfig(t, true)
	fwScript(t, cfg, "mender_boot_part=3", "mender_boot_part_hex=3", "upgrade_available=0", "bootcount=1", "bootlimit=1")
	keel(t, "-c", cfg, "env", "import", "--from", "mender").ok(t) // default --parts 2=a,3=b
	s := status(t, "-c", cfg)
	if *s.Active != "b" || s.Trial != nil || s.Slots["b"].State != "good" || s.Slots["a"].State != "empty" || !strings.Contains(s.Slots["a"].Reason, "Mender keeps no state") {
		t.Errorf("status after import: %+v", s)
	}
}

func TestEnvImportExportRefusals(t *testing.T) {
	envFile := func(cfg string) []byte {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(cfg), "env.bin"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// unchanged runs args, wants exit code and message, and checks that
	// not one byte of the env changed.
	unchanged := func(cfg string, code int, want string, args ...string) {
		t.Helper()
		b := envFile(cfg)
		keel(t, append([]string{"-c", cfg}, args...)...).fails(t, code, want)
		if !bytes.Equal(envFile(cfg), b) {
			t.Errorf("%v changed the env", args)
		}
	}
	rauc := func() string {
		cfg := envConfig(t, true)
		fwSetenv(t, cfg, "BOOT_ORDER", "A B")
		fwSetenv(t, cfg, "BOOT_A_LEFT", "3")
		fwSetenv(t, cfg, "BOOT_B_LEFT", "3")
		return cfg
	}

	cfg := rauc()
	fwSetenv(t, cfg, "BOOT_B_LEFT", "x3")
	unchanged(cfg, ExitUsage, `BOOT_B_LEFT="x3"`, "env", "import", "--from", "rauc")
	fwSetenv(t, cfg, "BOOT_B_LEFT", "0")
	fwSetenv(t, cfg, "BOOT_A_LEFT", "0")
	unchanged(cfg, ExitUsage, "no slot is bootable", "env", "import", "--from", "rauc")
	fwSetenv(t, cfg, "BOOT_ORDER", "A B R")
	unchanged(cfg, ExitUsage, `names slot "R"`, "env", "import", "--from", "rauc")
	unchanged(cfg, ExitUsage, "mender_boot_part is not set", "env", "import", "--from", "mender")
	board := envConfig(t, true)
	fwSetenv(t, board, "bootdelay", "3")
	unchanged(board, ExitUsage, "BOOT_ORDER is not set", "env", "import", "--from", "rauc", "--slots", "system0=a,system1=b")

	// Flags.
	cfg = rauc()
	unchanged(cfg, ExitUsage, "--from rauc or --from mender", "env", "import")
	unchanged(cfg, ExitUsage, `unknown layout "swupdate"`, "env", "import", "--from", "swupdate")
	unchanged(cfg, ExitUsage, "--parts and --bootlimit are for Mender", "env", "import", "--from", "rauc", "--parts", "2=a,3=b")
	unchanged(cfg, ExitUsage, "--slots is for RAUC", "env", "export", "--to", "mender", "--slots", "A=a,B=b")
	unchanged(cfg, ExitUsage, "mapped twice", "env", "import", "--from", "rauc", "--slots", "A=a,B=a")
	unchanged(cfg, ExitUsage, "--bootlimit 0", "env", "export", "--to", "mender", "--bootlimit", "0")
	unchanged(cfg, ExitUsage, "usage: keel env import", "env", "import", "--from", "rauc", "extra")
	unchanged(cfg, ExitUsage, "want print, set, import or export", "env", "frobnicate")

	// Export needs a record.
	unchanged(cfg, ExitStorage, "keel init", "env", "export", "--to", "rauc")

	// An existing record is replaced only with --force.
	keel(t, "-c", cfg, "init", "--active", "b").ok(t)
	keel(t, "-c", cfg, "try", "a").ok(t)
	unchanged(cfg, ExitUsage, "--force", "env", "import", "--from", "rauc")
	keel(t, "-c", cfg, "env", "import", "--from", "rauc", "--force").ok(t)
	if s := status(t, "-c", cfg); *s.Active != "a" || s.Trial != nil || s.Generation != 3 {
		t.Errorf("after import --force: %+v (want a active, generation 3: the old record's 2 plus one)", s)
	}

	// A record keel cannot read is replaced only with --force too.
	fwSetenv(t, cfg, "keel_format", "9")
	unchanged(cfg, ExitStorage, "add --force", "env", "import", "--from", "rauc")
	keel(t, "-c", cfg, "env", "import", "--from", "rauc", "--force").ok(t)
	if got := fwPrintenv(t, cfg, "keel_format", "keel_generation"); !slices.Equal(got, []string{"keel_format=1", "keel_generation=1"}) {
		t.Errorf("after import --force over a corrupt record: %q", got)
	}

	// Recovery cannot be exported.
	keel(t, "-c", cfg, "recover").ok(t)
	unchanged(cfg, ExitUsage, "RAUC's layout has no recovery", "env", "export", "--to", "rauc")
	unchanged(cfg, ExitUsage, "Mender's layout has no recovery", "env", "export", "--to", "mender")
	keel(t, "-c", cfg, "recover", "--cancel").ok(t)
	// A slot the mapping leaves out cannot be exported.
	unchanged(cfg, ExitUsage, "not mapped", "env", "export", "--to", "rauc", "--slots", "A=a")

	// Mender: the two partition variables disagree.
	cfg = envConfig(t, true)
	fwScript(t, cfg, "mender_boot_part=3", "mender_boot_part_hex=2", "upgrade_available=0")
	unchanged(cfg, ExitUsage, "mender_boot_part_hex", "env", "import", "--from", "mender")
	// An update with the boot counter off.
	fwScript(t, cfg, "mender_boot_part_hex=3", "upgrade_available=1", "bootlimit=0")
	unchanged(cfg, ExitUsage, "bootlimit=0", "env", "import", "--from", "mender")

	// A blank env has nothing to import; an efivars store has no env.
	keel(t, "-c", envConfig(t, true), "env", "import", "--from", "rauc").fails(t, ExitStorage, "blank")
	keel(t, "--efivars", t.TempDir(), "env", "import", "--from", "rauc").fails(t, ExitUsage, "U-Boot environment")
}
