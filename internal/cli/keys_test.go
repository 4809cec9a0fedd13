package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/manifest"
)

// writeKeys writes a trusted-keys file with n new keys to p and returns
// their IDs.
func writeKeys(t *testing.T, p string, n int) []string {
	t.Helper()
	var b bytes.Buffer
	var ids []string
	b.WriteString("# trusted keys\n")
	for i := 0; i < n; i++ {
		_, pub, err := manifest.GenerateKey(nil, "test")
		if err != nil {
			t.Fatal(err)
		}
		line, _ := pub.MarshalText()
		b.Write(line)
		ids = append(ids, pub.ID())
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o444); err != nil {
		t.Fatal(err)
	}
	return ids
}

func keyIDs(keys []manifest.PublicKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID()
	}
	return ids
}

// TestTrustedKeys: --keys FILE wins; without it the keys keel-init handed
// over in RunDir (trusted-keys) are used; with neither the error says the
// system was not booted by a keel-init that hands over its keys, names the
// missing file and asks for --keys (a usage error). A --keys file that is
// missing, or a handed-over file that does not parse, is that file's
// error.
func TestTrustedKeys(t *testing.T) {
	if d := (Deps{}).withDefaults(); d.RunDir != layout.RunDir {
		t.Errorf("default RunDir %q, want %q", d.RunDir, layout.RunDir)
	}
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run", "keel")
	c := &command{deps: Deps{RunDir: runDir}.withDefaults()}

	// Neither.
	_, err := c.trustedKeys("")
	want := "no trusted keys: this system was not booted by a keel-init that hands over its keys (" +
		filepath.Join(runDir, "trusted-keys") + " is missing); give --keys FILE"
	if err == nil || err.Error() != want {
		t.Errorf("no keys anywhere: %v\nwant: %s", err, want)
	}
	if ExitCode(err) != ExitUsage {
		t.Errorf("exit code %d, want %d", ExitCode(err), ExitUsage)
	}
	// By default it is the OS's path.
	if layout.TrustedKeysRunPath != filepath.Join(layout.RunDir, "trusted-keys") {
		t.Errorf("layout.TrustedKeysRunPath %q is not RunDir/trusted-keys", layout.TrustedKeysRunPath)
	}

	// A --keys file that is not there is its own error.
	missing := filepath.Join(dir, "nope.pub")
	if _, err := c.trustedKeys(missing); err == nil || !strings.Contains(err.Error(), missing) || strings.Contains(err.Error(), "hands over") {
		t.Errorf("missing --keys file: %v", err)
	}

	// Handed over by keel-init.
	handed := writeKeys(t, filepath.Join(runDir, "trusted-keys"), 2)
	keys, err := c.trustedKeys("")
	if err != nil || strings.Join(keyIDs(keys), ",") != strings.Join(handed, ",") {
		t.Errorf("handed-over keys: %v, %v; want %v", keyIDs(keys), err, handed)
	}

	// --keys wins over the handed-over keys.
	given := writeKeys(t, filepath.Join(dir, "release.pub"), 1)
	keys, err = c.trustedKeys(filepath.Join(dir, "release.pub"))
	if err != nil || strings.Join(keyIDs(keys), ",") != strings.Join(given, ",") {
		t.Errorf("--keys: %v, %v; want %v", keyIDs(keys), err, given)
	}

	// A handed-over file that does not parse says so (not "missing").
	bad := filepath.Join(runDir, "trusted-keys")
	if err := os.Chmod(bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("ssh-ed25519 AAAA\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := c.trustedKeys(""); err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "missing") {
		t.Errorf("unparsable handed-over keys: %v", err)
	}
}
