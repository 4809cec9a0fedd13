package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/swtpmtest"
)

type result struct {
	stdout, stderr string
	code           int
}

func keel(t *testing.T, args ...string) result {
	t.Helper()
	return keelDeps(t, Deps{Cmdline: func() (string, error) { return "", nil },
		DisarmWatchdog: func() error { t.Error("offline command touched the watchdog"); return nil },
		OpenTPM: func() (transport.TPMCloser, error) {
			t.Error("offline command opened the TPM")
			return nil, errors.New("no TPM in tests")
		}}, args...)
}

func keelDeps(t *testing.T, deps Deps, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb, deps)
	return result{out.String(), errb.String(), code}
}

func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

func (r result) fails(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("stderr %q does not mention %q", r.stderr, want)
	}
}

// envConfig makes a redundant (or single) env file and its fw_env.config.
func envConfig(t *testing.T, redundant bool) string {
	t.Helper()
	dir := t.TempDir()
	env := filepath.Join(dir, "env.bin")
	if err := os.WriteFile(env, make([]byte, 0x8000), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := env + " 0x0 0x4000\n"
	if redundant {
		cfg += env + " 0x4000 0x4000\n"
	}
	p := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type statusOut struct {
	Active     *string `json:"active"`
	Trial      *string `json:"trial"`
	Generation uint64  `json:"generation"`
	Slots      map[string]struct {
		State     string `json:"state"`
		TriesLeft int    `json:"tries_left"`
		Reason    string `json:"reason"`
	} `json:"slots"`
	Store struct {
		PowerSafe bool   `json:"power_safe"`
		Note      string `json:"note"`
	} `json:"store"`
}

func status(t *testing.T, store ...string) statusOut {
	t.Helper()
	r := keel(t, append(store, "status", "--json")...).ok(t)
	var s statusOut
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

func stores(t *testing.T) map[string][]string {
	return map[string][]string{
		"uboot-redundant": {"-c", envConfig(t, true)},
		"uboot-single":    {"-c", envConfig(t, false)},
		"efivars":         {"--efivars", t.TempDir()},
		"image":           {"--image", diskImage(t)},
	}
}

func diskImage(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 16 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	_, err = gpt.Create(f, size, []gpt.Spec{
		{Name: "esp", Type: gpt.MustParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), Size: 4 << 20},
		{Name: "bootstate", Type: gpt.MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4"), Size: 1 << 20},
		{Name: "data", Type: gpt.MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStories runs the A/B stories through the CLI on every backend.
func TestStories(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			k := func(args ...string) result { t.Helper(); return keel(t, append(st, args...)...) }
			k("status").fails(t, ExitStorage, "keel init")
			k("init", "--slots", "a,b", "--active", "a").ok(t)
			k("init", "--active", "a").fails(t, ExitUsage, "--force")
			s := status(t, st...)
			if s.Active == nil || *s.Active != "a" || s.Trial != nil || s.Slots["a"].State != "good" || s.Slots["b"].State != "empty" {
				t.Fatalf("after init: %+v", s)
			}
			if s.Store.PowerSafe != (name != "uboot-single") {
				t.Errorf("power_safe = %v", s.Store.PowerSafe)
			}
			if name == "uboot-single" && !strings.Contains(k("status").ok(t).stdout, "NOT power-safe") {
				t.Errorf("status does not warn about the single copy")
			}
			// Failed trial: exactly 2 boots of b, then a.
			k("try", "b", "--tries", "2").ok(t)
			if s := status(t, st...); s.Trial == nil || *s.Trial != "b" || s.Slots["b"].TriesLeft != 2 {
				t.Fatalf("after try: %+v", s)
			}
			for i, want := range []string{"b", "b", "a", "a"} {
				if got := strings.TrimSpace(k("select", "--commit").ok(t).stdout); got != want {
					t.Fatalf("boot %d: %q, want %q", i+1, got, want)
				}
			}
			s = status(t, st...)
			if s.Slots["b"].State != "bad" || !strings.Contains(s.Slots["b"].Reason, "no tries left") || s.Slots["a"].State != "good" {
				t.Fatalf("after failed trial: %+v", s)
			}
			// Update that commits.
			k("try", "b", "--tries", "3", "--version", "2.0").ok(t)
			if got := strings.TrimSpace(k("select", "--commit").ok(t).stdout); got != "b" {
				t.Fatalf("trial boot: %q", got)
			}
			k("mark-good").ok(t) // the booted slot, from the last decision
			s = status(t, st...)
			if *s.Active != "b" || s.Trial != nil || s.Slots["a"].State != "good" {
				t.Fatalf("after mark-good: %+v", s)
			}
			gen := s.Generation
			k("mark-good", "--slot", "b").ok(t) // no change: nothing written
			if g := status(t, st...).Generation; g != gen {
				t.Errorf("a no-op mark-good wrote generation %d -> %d", gen, g)
			}
			// select without --commit changes nothing.
			k("select").ok(t)
			if g := status(t, st...).Generation; g != gen {
				t.Errorf("select without --commit wrote")
			}
			k("set-active", "a").ok(t)
			k("mark-bad", "a", "--reason", "disk errors").ok(t)
			if s := status(t, st...); *s.Active != "b" || s.Slots["a"].Reason != "disk errors" {
				t.Fatalf("after mark-bad: %+v", s)
			}
			k("recover").ok(t)
			if got := strings.TrimSpace(k("select").ok(t).stdout); got != "recovery" {
				t.Errorf("select after recover: %q", got)
			}
			k("recover", "--cancel").ok(t)
			// Refusals: exit 1, state untouched.
			gen = status(t, st...).Generation
			k("try", "b").fails(t, ExitUsage, "active good slot")
			k("try", "z").fails(t, ExitUsage, "unknown slot")
			k("set-active", "a").fails(t, ExitUsage, "only a good slot")
			k("frobnicate").fails(t, ExitUsage, "unknown command")
			k("try").fails(t, ExitUsage, "usage")
			if g := status(t, st...).Generation; g != gen {
				t.Errorf("a refused command wrote")
			}
		})
	}
}

func TestEnvCommands(t *testing.T) {
	cfg := envConfig(t, true)
	keel(t, "-c", cfg, "env", "set", "bootcmd=run keel", "bootdelay=0").ok(t)
	keel(t, "-c", cfg, "init", "--active", "a").ok(t)
	keel(t, "-c", cfg, "try", "b").ok(t)
	out := keel(t, "-c", cfg, "env", "print").ok(t).stdout
	if !strings.HasPrefix(out, "bootcmd=run keel\nbootdelay=0\nkeel_format=1\n") {
		t.Errorf("env print:\n%s", out)
	}
	if got := keel(t, "-c", cfg, "env", "print", "-n", "keel_trial").ok(t).stdout; got != "b\n" {
		t.Errorf("print -n: %q", got)
	}
	keel(t, "-c", cfg, "env", "print", "nope").fails(t, ExitUsage, "not defined: nope")
	keel(t, "-c", cfg, "env", "set", "bootdelay=").ok(t)
	if strings.Contains(keel(t, "-c", cfg, "env", "print").ok(t).stdout, "bootdelay") {
		t.Error("NAME= did not delete")
	}
	keel(t, "-c", cfg, "env", "set", "keel_slot_a_state=banana").fails(t, ExitUsage, "unreadable")
	keel(t, "-c", cfg, "env", "set", "keel_generation=x").fails(t, ExitUsage, "keel_generation")
	keel(t, "-c", cfg, "env", "set", "novalue").fails(t, ExitUsage, "NAME=VALUE")
	keel(t, "--efivars", t.TempDir(), "env", "print").fails(t, ExitUsage, "U-Boot environment")
	keel(t, "-c", cfg, "status").ok(t)
}

// TestCorruptNothingWritten: both copies corrupt -> exit 2, a clear error,
// and not one byte of the file changes, whatever the command.
func TestCorruptNothingWritten(t *testing.T) {
	cfg := envConfig(t, true)
	env := filepath.Join(filepath.Dir(cfg), "env.bin")
	keel(t, "-c", cfg, "init", "--active", "a").ok(t)
	keel(t, "-c", cfg, "try", "b").ok(t) // both copies now hold a record
	b, _ := os.ReadFile(env)
	b[10] ^= 0xff
	b[0x4000+10] ^= 0xff
	os.WriteFile(env, b, 0o644)
	for _, args := range [][]string{
		{"status"}, {"status", "--json"}, {"try", "b"}, {"select", "--commit"}, {"mark-good", "--slot", "a"},
		{"mark-bad", "b"}, {"set-active", "a"}, {"recover"}, {"env", "print"}, {"env", "set", "x=1"},
		{"init", "--active", "a"},
	} {
		r := keel(t, append([]string{"-c", cfg}, args...)...)
		if r.code != ExitStorage || !strings.Contains(r.stderr, env) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", args, r.code, r.stderr, env)
		}
		if after, _ := os.ReadFile(env); !bytes.Equal(after, b) {
			t.Fatalf("%v wrote to a corrupt env", args)
		}
	}
	// The fix the error names works.
	keel(t, "-c", cfg, "init", "--active", "a", "--force").ok(t)
	keel(t, "-c", cfg, "status").ok(t)
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.config")
	keel(t, "-c", missing, "status").fails(t, ExitStorage, missing)
	cfg := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfg, []byte(filepath.Join(dir, "missing.bin")+" 0 0x4000\n"), 0o644)
	keel(t, "-c", cfg, "status").fails(t, ExitStorage, "missing.bin")
	keel(t, "--image", filepath.Join(dir, "none.img"), "status").fails(t, ExitStorage, "none.img")
	notGPT := filepath.Join(dir, "zero.img")
	os.WriteFile(notGPT, make([]byte, 1<<20), 0o644)
	keel(t, "--image", notGPT, "status").fails(t, ExitStorage, "zero.img")
	// An image without a bootstate partition names the fix.
	img := filepath.Join(dir, "nobootstate.img")
	f, _ := os.Create(img)
	f.Truncate(8 << 20)
	if _, err := gpt.Create(f, 8<<20, []gpt.Spec{{Name: "data", Type: gpt.MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	keel(t, "--image", img, "status").fails(t, ExitStorage, `"bootstate"`)
	keel(t, "-c", cfg, "--efivars", dir, "status").fails(t, ExitUsage, "only one")
	keel(t).fails(t, ExitUsage, "no command")
	keel(t, "--efivars", t.TempDir(), "init", "--slots", "a,B").fails(t, ExitUsage, `"B"`)
	keel(t, "--efivars", t.TempDir(), "init", "--slots", "a,b", "--active", "c").fails(t, ExitUsage, `"c"`)
}

func TestDefaultStoreFromCmdline(t *testing.T) {
	dir := t.TempDir()
	disarmed := 0
	deps := Deps{
		Cmdline:        func() (string, error) { return "console=ttyS0 keel.store=efivars keel.slot=b keel.secver=0", nil },
		EFIVarsDir:     dir,
		FWEnvConfig:    filepath.Join(dir, "none"),
		DisarmWatchdog: func() error { disarmed++; return nil },
		OpenTPM:        func() (transport.TPMCloser, error) { return nil, fmt.Errorf("TPM: %w", fs.ErrNotExist) },
	}
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b").ok(t)
	keelDeps(t, deps, "select", "--commit").ok(t)
	// mark-good without --slot takes keel.slot from the command line.
	if out := keelDeps(t, deps, "mark-good").ok(t).stdout; !strings.Contains(out, "slot b is good") {
		t.Errorf("mark-good: %s", out)
	}
	if disarmed != 1 {
		t.Errorf("mark-good on a keel-booted device disarmed the watchdog %d times, want 1", disarmed)
	}
	// mark-good never needs the TPM: keel-init advances the counter.
	if r := keelDeps(t, deps, "mark-good"); r.code != 0 || !strings.Contains(r.stdout, "keel-init raises it to 0") {
		t.Errorf("mark-good without a TPM: %+v", r)
	}
	none := Deps{Cmdline: func() (string, error) { return "", nil }, EFIVarsDir: filepath.Join(dir, "x"), FWEnvConfig: filepath.Join(dir, "y")}
	keelDeps(t, none, "status").fails(t, ExitUsage, "no boot state store found")
}

// TestImageReadableByFwPrintenv: the env keel writes into a disk image's
// bootstate partition is read by libubootenv's fw_printenv with the
// matching config.
func TestImageReadableByFwPrintenv(t *testing.T) {
	img := diskImage(t)
	keel(t, "--image", img, "init", "--active", "a").ok(t)
	keel(t, "--image", img, "try", "b", "--tries", "2").ok(t)
	f, _ := os.Open(img)
	tab, err := gpt.Read(f, 16<<20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tab.Find("bootstate")
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	os.WriteFile(cfg, []byte(img+" "+hexStr(p.Offset())+" 0x10000\n"+img+" "+hexStr(p.Offset()+0x10000)+" 0x10000\n"), 0o644)
	out, err := exec.Command("fw_printenv", "-c", cfg, "keel_trial", "keel_slot_b_tries").CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v\n%s", err, out)
	}
	if string(out) != "keel_trial=b\nkeel_slot_b_tries=2\n" {
		t.Errorf("fw_printenv says %q", out)
	}
}

func hexStr(n int64) string { return fmt.Sprintf("%#x", n) }

type nopCloser struct{ transport.TPM }

func (nopCloser) Close() error { return nil }

// TestMarkGoodLeavesCounterToKeelInit: on a keel-booted device mark-good
// commits the slot and says that keel-init advances the anti-rollback
// counter to the booted slot's verified security version (keel.secver=)
// at the slot's next normal boot; it never opens the TPM (only keel-init
// writes the counter, package tpm), so a failing TPM does not matter.
func TestMarkGoodLeavesCounterToKeelInit(t *testing.T) {
	sw := swtpmtest.Start(t, "")
	dir := t.TempDir()
	opened := 0
	deps := Deps{
		Cmdline:        func() (string, error) { return "keel.store=efivars keel.slot=b keel.mode=trial keel.secver=3", nil },
		EFIVarsDir:     dir,
		FWEnvConfig:    filepath.Join(dir, "none"),
		DisarmWatchdog: func() error { return nil },
		OpenTPM:        func() (transport.TPMCloser, error) { opened++; return nopCloser{sw.TPM()}, nil },
	}
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b", "--security-version", "3").ok(t)
	keelDeps(t, deps, "select", "--commit").ok(t)
	out := keelDeps(t, deps, "mark-good").ok(t).stdout
	if !strings.Contains(out, "keel-init raises it to 3 (slot b's security version) on every normal boot of slot b") {
		t.Errorf("mark-good: %s", out)
	}
	if opened != 0 {
		t.Errorf("mark-good opened the TPM %d times", opened)
	}
	if _, err := tpm.ReadCounter(sw.TPM(), tpm.CounterIndex); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("mark-good touched the counter: %v", err)
	}
	// The next boot is normal and commits b: what keel-init advances to.
	var st statusOut
	if err := json.Unmarshal([]byte(keelDeps(t, deps, "status", "--json").ok(t).stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Active == nil || *st.Active != "b" || st.Trial != nil {
		t.Errorf("after mark-good: %+v", st)
	}
	// A failing TPM does not matter.
	deps.OpenTPM = func() (transport.TPMCloser, error) { return nil, errors.New("TPM /dev/tpmrm0: device busy") }
	keelDeps(t, deps, "mark-good").ok(t)
}

// TestFactoryResetIsTyped: only --factory-reset requests a factory reset;
// a reason that reads like one is just text (issue 9 item 7).
func TestFactoryResetIsTyped(t *testing.T) {
	cfg := envConfig(t, true)
	keel(t, "-c", cfg, "init", "--active", "a").ok(t)
	keel(t, "-c", cfg, "recover", "--reason", "factory-reset: wipe it").ok(t)
	if got := keel(t, "-c", cfg, "env", "print").ok(t).stdout; strings.Contains(got, "keel_factory_reset") {
		t.Errorf("a free-text reason set the factory reset:\n%s", got)
	}
	keel(t, "-c", cfg, "recover", "--cancel").ok(t)
	keel(t, "-c", cfg, "recover", "--factory-reset").ok(t)
	if got := keel(t, "-c", cfg, "env", "print").ok(t).stdout; !strings.Contains(got, "keel_factory_reset=1") {
		t.Errorf("--factory-reset did not set keel_factory_reset=1:\n%s", got)
	}
	keel(t, "-c", cfg, "recover", "--cancel").ok(t)
	if got := keel(t, "-c", cfg, "env", "print").ok(t).stdout; strings.Contains(got, "keel_factory_reset") || strings.Contains(got, "keel_recovery=") {
		t.Errorf("--cancel left the request:\n%s", got)
	}
	// A value other than 1 would make a corrupt record: refused.
	keel(t, "-c", cfg, "env", "set", "keel_recovery=x", "keel_factory_reset=yes").fails(t, 1, `keel_factory_reset="yes"`)
}

// cmdlineDeps are the Deps of a keel-booted device with the kernel command
// line line, a TPM (nil: none; counted in *opened) and a watchdog (its
// disarms counted in *disarmed).
func cmdlineDeps(t *testing.T, line string, tp transport.TPM, opened, disarmed *int) Deps {
	dir := t.TempDir()
	return Deps{
		Cmdline:        func() (string, error) { return line, nil },
		EFIVarsDir:     dir,
		FWEnvConfig:    filepath.Join(dir, "none"),
		DisarmWatchdog: func() error { *disarmed++; return nil },
		OpenTPM: func() (transport.TPMCloser, error) {
			*opened++
			if tp == nil {
				return nil, fmt.Errorf("TPM: %w", fs.ErrNotExist)
			}
			return nopCloser{tp}, nil
		},
	}
}

// TestMarkGoodSecurityVersionFromCmdline: the version mark-good announces
// is keel.secver= (the security version keel-init verified and measured),
// not the boot record's copy, which anyone who can write the store can
// set; it says when they differ. keel-init itself advances the counter to
// the verified manifest's version at the next normal boot.
func TestMarkGoodSecurityVersionFromCmdline(t *testing.T) {
	var opened, disarmed int
	deps := cmdlineDeps(t, "console=ttyS0 keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=2 keel.store=efivars", nil, &opened, &disarmed)
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b", "--security-version", "9").ok(t)
	keelDeps(t, deps, "select", "--commit").ok(t)
	r := keelDeps(t, deps, "mark-good").ok(t)
	if !strings.Contains(r.stdout, "keel-init raises it to 2 (slot b's security version)") {
		t.Errorf("mark-good: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "says slot b has security version 9") {
		t.Errorf("mark-good does not say the record differs: %q", r.stderr)
	}
	if opened != 0 || disarmed != 1 {
		t.Errorf("TPM opened %d times, watchdog disarmed %d times; want 0 and 1", opened, disarmed)
	}
}

// TestMarkGoodUnmeasured: on a board without a TPM (keel-init passes
// keel.tpm=unmeasured) mark-good commits and says nothing of a counter.
func TestMarkGoodUnmeasured(t *testing.T) {
	var opened, disarmed int
	deps := cmdlineDeps(t, "console=ttyAMA0 keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=2 keel.tpm=unmeasured keel.store=efivars", nil, &opened, &disarmed)
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b").ok(t)
	keelDeps(t, deps, "select", "--commit").ok(t)
	r := keelDeps(t, deps, "mark-good").ok(t)
	if !strings.Contains(r.stdout, "slot b is good and active") || strings.Contains(r.stdout+r.stderr, "anti-rollback") {
		t.Errorf("mark-good without a TPM says:\n%s%s", r.stdout, r.stderr)
	}
}

// TestMarkGoodOnlyTheBootedSlot: on a keel-booted device mark-good marks
// the slot keel.slot= names; another slot is refused (exit 1) with nothing
// written, no TPM and no watchdog touched. Offline (--efivars) any slot may
// be marked, without the TPM. (The old mark-good marked b good and
// advanced the counter to b's recorded security version.)
func TestMarkGoodOnlyTheBootedSlot(t *testing.T) {
	var opened, disarmed int
	deps := cmdlineDeps(t, "keel.stage=2 keel.slot=a keel.mode=normal keel.secver=1 keel.store=efivars", nil, &opened, &disarmed)
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b", "--security-version", "7").ok(t)
	for _, args := range [][]string{{"mark-good", "--slot", "b"}, {"mark-good", "b"}} {
		keelDeps(t, deps, args...).fails(t, ExitUsage, "this system booted slot a")
	}
	var st statusOut
	if err := json.Unmarshal([]byte(keelDeps(t, deps, "status", "--json").ok(t).stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Trial == nil || *st.Trial != "b" || st.Slots["b"].State != "trial" || *st.Active != "a" {
		t.Errorf("a refused mark-good changed the record: %+v", st)
	}
	if opened != 0 || disarmed != 0 {
		t.Errorf("a refused mark-good opened the TPM %d times, disarmed the watchdog %d times", opened, disarmed)
	}
	// --slot naming the booted slot is fine.
	keelDeps(t, deps, "mark-good", "--slot", "a").ok(t)
	if opened != 0 || disarmed != 1 {
		t.Errorf("mark-good --slot a: TPM opened %d times, watchdog disarmed %d times; want 0 and 1", opened, disarmed)
	}
	// Offline, on the same store: b may be marked; no TPM, no watchdog.
	keelDeps(t, deps, "--efivars", deps.EFIVarsDir, "mark-good", "--slot", "b").ok(t)
	if opened != 0 || disarmed != 1 {
		t.Errorf("offline mark-good: TPM opened %d times, watchdog disarmed %d times; want no more", opened, disarmed)
	}
}

// TestMarkGoodWithoutSecver: a command line without keel.secver= (a
// keel-init that does not pass it) marks the booted slot good and says the
// command line lacks it; it never falls back to the record's version.
func TestMarkGoodWithoutSecver(t *testing.T) {
	var opened, disarmed int
	deps := cmdlineDeps(t, "keel.stage=2 keel.slot=b keel.mode=trial keel.store=efivars", nil, &opened, &disarmed)
	keelDeps(t, deps, "init", "--active", "a").ok(t)
	keelDeps(t, deps, "try", "b", "--security-version", "5").ok(t)
	keelDeps(t, deps, "select", "--commit").ok(t)
	r := keelDeps(t, deps, "mark-good").ok(t)
	if !strings.Contains(r.stdout, "slot b is good") || !strings.Contains(r.stderr, "no keel.secver=") || strings.Contains(r.stdout, "advances it") {
		t.Errorf("mark-good without keel.secver=: %+v", r)
	}
	if opened != 0 || disarmed != 1 {
		t.Errorf("TPM opened %d times, watchdog disarmed %d times; want 0 and 1", opened, disarmed)
	}
}

// TestMarkGoodBadCmdline: keel.slot= or keel.secver= given twice, or a
// security version that is not a number, is refused before anything is
// written.
func TestMarkGoodBadCmdline(t *testing.T) {
	for _, line := range []string{
		"keel.slot=a keel.slot=b keel.secver=1 keel.store=efivars",
		"keel.slot=a keel.secver=1 keel.secver=2 keel.store=efivars",
		"keel.slot=a keel.secver=x keel.store=efivars",
	} {
		var opened, disarmed int
		deps := cmdlineDeps(t, line, nil, &opened, &disarmed)
		keelDeps(t, deps, "init", "--active", "b").ok(t)
		keelDeps(t, deps, "mark-good", "--slot", "a").fails(t, ExitStorage, "kernel command line")
		var st statusOut
		if err := json.Unmarshal([]byte(keelDeps(t, deps, "status", "--json").ok(t).stdout), &st); err != nil {
			t.Fatal(err)
		}
		if st.Active == nil || *st.Active != "b" || st.Generation != 1 {
			t.Errorf("%q: mark-good wrote the record: %+v", line, st)
		}
		if opened != 0 || disarmed != 0 {
			t.Errorf("%q: TPM opened %d times, watchdog disarmed %d times", line, opened, disarmed)
		}
	}
}

// TestBootOK: keel boot-ok confirms a good slot's boot (the unconfirmed
// count keel-init keeps ends) and refuses a slot on trial (issue 9 item 2).
func TestBootOK(t *testing.T) {
	cfg := envConfig(t, true)
	keel(t, "-c", cfg, "init", "--active", "a").ok(t)
	keel(t, "-c", cfg, "select", "--commit").ok(t) // one boot of a, unconfirmed
	if got := keel(t, "-c", cfg, "env", "print").ok(t).stdout; !strings.Contains(got, "keel_slot_a_unconfirmed=1") {
		t.Fatalf("a boot was not counted as unconfirmed:\n%s", got)
	}
	keel(t, "-c", cfg, "boot-ok", "--slot", "a").ok(t)
	if got := keel(t, "-c", cfg, "env", "print").ok(t).stdout; strings.Contains(got, "keel_slot_a_unconfirmed") {
		t.Errorf("boot-ok left the count:\n%s", got)
	}
	keel(t, "-c", cfg, "env", "set", "keel_slot_b_state=bad").ok(t)
	keel(t, "-c", cfg, "boot-ok", "--slot", "b").fails(t, 1, "only a good slot")
}
