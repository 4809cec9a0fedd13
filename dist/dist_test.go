package dist

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/layout"
)

// unitFile is a unit or configuration file: section -> key -> values.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is neither a section nor a key=value", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// words are the space-separated values of every line of a key.
func (u unitFile) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// TestMarkGoodUnit: keel-mark-good.service follows systemd's
// boot-complete.target convention (systemd.special(7), as
// systemd-bless-boot.service does): it requires the target and runs after
// it, so it runs only when every health check ordered before the target
// and required by it has succeeded; a oneshot that stays active, on
// systems keel booted only, enabled by multi-user.target.
func TestMarkGoodUnit(t *testing.T) {
	u := parseUnit(t, filepath.Join("systemd", "keel-mark-good.service"))
	for _, c := range []struct{ section, key, want string }{
		{"Unit", "Requires", "boot-complete.target"},
		{"Unit", "After", "boot-complete.target"},
		{"Unit", "ConditionKernelCommandLine", "keel.slot"},
		{"Service", "Type", "oneshot"},
		{"Service", "RemainAfterExit", "yes"},
		{"Install", "WantedBy", "multi-user.target"},
	} {
		if !slices.Contains(u.words(c.section, c.key), c.want) {
			t.Errorf("[%s] %s=%v, want %s in it", c.section, c.key, u[c.section][c.key], c.want)
		}
	}
	if got := u[`Service`]["ExecStart"]; len(got) != 1 || got[0] != "/usr/bin/keel mark-good" {
		t.Errorf("ExecStart=%q, want /usr/bin/keel mark-good (where scripts/debian-root.sh installs keel)", got)
	}
	// Nothing may order the commit before the health checks.
	for _, key := range []string{"Before", "DefaultDependencies"} {
		if v := u["Unit"][key]; v != nil {
			t.Errorf("[Unit] %s=%v: the commit must come after the health checks, with the default dependencies", key, v)
		}
	}
}

// TestWatchdogDropIn: systemd's runtime watchdog is off in the slots (PID 1
// must not take over the watchdog keel-init armed before the slot is
// committed), with a key and value the installed systemd knows: its
// system.conf lists every [Manager] key, commented out, with its default.
func TestWatchdogDropIn(t *testing.T) {
	u := parseUnit(t, filepath.Join("systemd", "system.conf.d", "keel-watchdog.conf"))
	if len(u) != 1 || len(u["Manager"]) != 1 || !slices.Equal(u["Manager"]["RuntimeWatchdogSec"], []string{"off"}) {
		t.Fatalf("keel-watchdog.conf: %v, want only [Manager] RuntimeWatchdogSec=off", u)
	}
	conf, err := os.ReadFile("/etc/systemd/system.conf")
	if err != nil {
		t.Fatalf("%v (install systemd: make deps)", err)
	}
	if !strings.Contains(string(conf), "\n[Manager]\n") || !strings.Contains(string(conf), "\n#RuntimeWatchdogSec=") {
		t.Errorf("the installed systemd's system.conf has no [Manager] RuntimeWatchdogSec=")
	}
}

// TestSystemdAnalyzeVerify: systemd-analyze verify accepts keel's unit and a
// health check written to the convention, in a root with the installed
// systemd's units (the ones they refer to: boot-complete.target,
// multi-user.target...), keel at /usr/bin/keel and both units enabled as
// systemctl enable does. Any message is a failure: verify warns about an
// unknown key or a bad value and still exits 0.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("%v (the systemd package: make deps)", err)
	}
	root := t.TempDir()
	units := filepath.Join(root, "usr", "lib", "systemd", "system")
	if err := os.MkdirAll(filepath.Dir(units), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system/.", units).CombinedOutput(); err != nil {
		t.Fatalf("copying the installed units: %v\n%s", err, out)
	}
	mark, err := os.ReadFile(filepath.Join("systemd", "keel-mark-good.service"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"usr/bin/keel":         "#!/bin/sh\n",
		"usr/bin/health-check": "#!/bin/sh\n",
		"usr/lib/systemd/system/keel-mark-good.service": string(mark),
		"etc/systemd/system/health-check.service": `[Unit]
Description=A health check
Before=boot-complete.target

[Service]
Type=oneshot
ExecStart=/usr/bin/health-check

[Install]
RequiredBy=boot-complete.target
`,
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "usr/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"etc/systemd/system/multi-user.target.wants/keel-mark-good.service":     "/usr/lib/systemd/system/keel-mark-good.service",
		"etc/systemd/system/boot-complete.target.requires/health-check.service": "/etc/systemd/system/health-check.service",
	} {
		p := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "--root="+root, "keel-mark-good.service", "health-check.service", "boot-complete.target")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// And verify does see a mistake in such a root.
	bad := strings.Replace(string(mark), "Type=oneshot", "Type=oneshoot", 1)
	if err := os.WriteFile(filepath.Join(units, "keel-mark-good.service"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(analyze, "verify", "--root="+root, "keel-mark-good.service").CombinedOutput(); !strings.Contains(string(out), "oneshoot") {
		t.Errorf("systemd-analyze verify did not report a bad Type=: %q", out)
	}
}

// TestShutdownHook: keel's systemd-shutdown hook is an executable shell
// script that hands systemd-shutdown's one argument (halt, poweroff,
// reboot, kexec) to keel note-shutdown, where scripts/debian-root.sh
// installs keel. It runs: with a keel stand-in it passes the verb on.
func TestShutdownHook(t *testing.T) {
	p := filepath.Join("systemd", "system-shutdown", "keel")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable (%v): systemd-shutdown runs only executables", p, st.Mode())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "#!/bin/sh\n") || !strings.Contains(string(b), "\nexec /usr/bin/keel note-shutdown \"$1\"\n") {
		t.Errorf("%s does not run /usr/bin/keel note-shutdown \"$1\":\n%s", p, b)
	}
	if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v\n%s", p, err, out)
	}
	// Run it with /usr/bin/keel replaced by a stand-in that prints its
	// arguments.
	dir := t.TempDir()
	stand := filepath.Join(dir, "keel")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.Replace(string(b), "/usr/bin/keel", stand, 1)
	for _, verb := range []string{"halt", "poweroff", "reboot", "kexec"} {
		out, err := exec.Command("sh", "-c", script, "keel", verb).CombinedOutput()
		if err != nil || string(out) != "note-shutdown "+verb+"\n" {
			t.Errorf("the hook with %s: %q, %v", verb, out, err)
		}
	}
}

// TestUpdateUnits: keel-update.timer starts keel-update.service after a
// random delay, now and then; the service runs keel update apply with
// JSON events, reboots through systemd, never on a trial's boot (the file
// keel-init leaves then), retries a failed check with a bound; both pass
// systemd-analyze verify.
func TestUpdateUnits(t *testing.T) {
	svc := parseUnit(t, filepath.Join("systemd", "keel-update.service"))
	for _, c := range []struct{ section, key, want string }{
		{"Unit", "ConditionKernelCommandLine", "keel.slot"},
		{"Unit", "ConditionPathExists", "!" + layout.TrialIDPath},
		{"Unit", "ConditionPathExists", layout.ChannelURLPath},
		{"Unit", "After", "keel-mark-good.service"},
		{"Service", "Type", "oneshot"},
		{"Service", "Restart", "on-failure"},
	} {
		if !slices.Contains(svc.words(c.section, c.key), c.want) {
			t.Errorf("keel-update.service [%s] %s=%v, want %s in it", c.section, c.key, svc[c.section][c.key], c.want)
		}
	}
	start := strings.Join(svc["Service"]["ExecStart"], " ")
	for _, w := range []string{"/usr/bin/keel update apply", "--json", "--progress json", "--reboot", `--reboot-command "systemctl --no-block reboot"`} {
		if !strings.Contains(start, w) {
			t.Errorf("ExecStart=%s: no %s", start, w)
		}
	}
	timer := parseUnit(t, filepath.Join("systemd", "keel-update.timer"))
	for _, key := range []string{"RandomizedDelaySec", "OnBootSec", "OnUnitInactiveSec"} {
		if len(timer["Timer"][key]) != 1 {
			t.Errorf("keel-update.timer: [Timer] %s=%v", key, timer["Timer"][key])
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("%v (the systemd package: make deps)", err)
	}
	root := t.TempDir()
	units := filepath.Join(root, "usr", "lib", "systemd", "system")
	os.MkdirAll(filepath.Dir(units), 0o755)
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system/.", units).CombinedOutput(); err != nil {
		t.Fatalf("copying the installed units: %v\n%s", err, out)
	}
	for _, name := range []string{"keel-update.service", "keel-update.timer", "keel-mark-good.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(units, name), b, 0o644)
	}
	os.MkdirAll(filepath.Join(root, "usr", "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr", "bin", "keel"), []byte("#!/bin/sh\n"), 0o755)
	out, err := exec.Command(analyze, "verify", "--root="+root, "keel-update.service", "keel-update.timer").CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
