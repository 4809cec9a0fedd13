//go:build linux

package stage2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/layout"
)

// handoff writes the files stage 1 handed over (name -> content) to a
// fresh hand-off folder, as the kernel unpacks them (mode 0644, whatever
// stage 1 asked for: stage 2 must not rely on it), and returns it with an
// empty run folder (not yet made) and a log.
func handoff(t *testing.T, files map[string]string) (from, to string, logf Logf, log *[]string) {
	t.Helper()
	dir := t.TempDir()
	from, to = filepath.Join(dir, "keel"), filepath.Join(dir, "run", "keel")
	if files != nil {
		if err := os.Mkdir(from, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(from, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log = new([]string)
	return from, to, func(f string, a ...any) { *log = append(*log, fmt.Sprintf(f, a...)) }, log
}

func warnings(log []string) []string {
	var w []string
	for _, l := range log {
		if strings.HasPrefix(l, "warning:") {
			w = append(w, l)
		}
	}
	return w
}

func checkFile(t *testing.T, p, data string, perm fs.FileMode) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != data || st.Mode() != perm {
		t.Errorf("%s: %v %q, want %v %q", p, st.Mode(), b, perm, data)
	}
}

// TestKeepHandoff: the event log and the trusted keys stage 1 handed over
// arrive in /run/keel byte for byte, the keys read-only (0444, at the
// name of layout.TrustedKeysRunPath) and the event log 0644, without a
// warning.
func TestKeepHandoff(t *testing.T) {
	if layout.TrustedKeysRunPath != "/run/keel/trusted-keys" || layout.EventLogPath != "/run/keel/eventlog.jsonl" {
		t.Fatalf("the OS's paths moved: %s, %s", layout.TrustedKeysRunPath, layout.EventLogPath)
	}
	const (
		log  = `{"pcr":8,"type":"keel.separator"}` + "\n"
		keys = "# release keys\nkeel-ed25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ci\n"
	)
	from, to, logf, lines := handoff(t, map[string]string{"eventlog.jsonl": log, "trusted-keys": keys})
	keepHandoff(from, to, logf)
	checkFile(t, filepath.Join(to, filepath.Base(layout.EventLogPath)), log, 0o644)
	checkFile(t, filepath.Join(to, filepath.Base(layout.TrustedKeysRunPath)), keys, 0o444)
	if w := warnings(*lines); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	// An unmeasured boot hands over the keys alone.
	from, to, logf, lines = handoff(t, map[string]string{"trusted-keys": keys})
	keepHandoff(from, to, logf)
	checkFile(t, filepath.Join(to, "trusted-keys"), keys, 0o444)
	if _, err := os.Stat(filepath.Join(to, "eventlog.jsonl")); !os.IsNotExist(err) {
		t.Errorf("an event log appeared: %v", err)
	}
	if w := warnings(*lines); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
}

// TestKeepHandoffWithoutKeys: a stage 1 that hands over no keys (an older
// keel-init) costs one warning line naming the missing file; the event log
// is still kept, and nothing else goes wrong (keepHandoff cannot fail the
// boot).
func TestKeepHandoffWithoutKeys(t *testing.T) {
	const log = `{"pcr":8,"type":"keel.separator"}` + "\n"
	for name, files := range map[string]map[string]string{
		"event log only": {"eventlog.jsonl": log},
		"empty":          {},
		"no hand-off":    nil, // an older keel-init, unmeasured
	} {
		t.Run(name, func(t *testing.T) {
			from, to, logf, lines := handoff(t, files)
			keepHandoff(from, to, logf)
			w := warnings(*lines)
			if len(w) != 1 || !strings.Contains(w[0], "no trusted keys") || !strings.Contains(w[0], filepath.Join(to, "trusted-keys")) || strings.Contains(w[0], "\n") {
				t.Errorf("warnings %q, want one line about the missing keys", w)
			}
			if _, err := os.Stat(filepath.Join(to, "trusted-keys")); !os.IsNotExist(err) {
				t.Errorf("trusted-keys: %v", err)
			}
			if files["eventlog.jsonl"] != "" {
				checkFile(t, filepath.Join(to, "eventlog.jsonl"), log, 0o644)
			}
		})
	}
}

// TestExistsIn: /sbin/init is looked up as the slot will see it once its
// root is /: Debian's absolute links (/sbin -> usr/sbin, /usr/sbin/init ->
// /lib/systemd/systemd, /lib -> usr/lib) resolve inside the new root, not
// in the initramfs; a link leading nowhere in the new root is missing even
// when the initramfs has its target.
func TestExistsIn(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/sbin", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/systemd/systemd"), []byte("#!\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostTarget := filepath.Join(t.TempDir(), "init") // exists outside the root only
	if err := os.WriteFile(hostTarget, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"sbin":                 "usr/sbin",
		"lib":                  "usr/lib",
		"usr/sbin/init":        "/lib/systemd/systemd",
		"usr/sbin/outside":     hostTarget,
		"usr/sbin/dotdot-init": "../../../../../../lib/systemd/systemd",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]bool{
		"/sbin/init": true, "/sbin/dotdot-init": true, "/usr/lib/systemd/systemd": true,
		"/sbin/outside": false, "/sbin/none": false,
	} {
		err := existsIn(root, name)
		if (err == nil) != want {
			t.Errorf("existsIn(%s): %v, want exists=%v", name, err, want)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("existsIn(%s): %v, want fs.ErrNotExist", name, err)
		}
	}
}
