package update

import (
	"errors"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
)

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "2.0", -1},
		{"1.10", "1.9", 1},
		{"2.0", "1.99.7", 1},
		{"1.0", "1.0.1", -1},
		{"2026.11.30", "2026.12.01", -1},
		{"v3", "v10", -1},
		{"b", "a", 1},
	} {
		if got := manifest.CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := manifest.CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

// TestInstallPolicy: below the anti-rollback counter is always refused;
// an older version or security version only without --allow-downgrade.
func TestInstallPolicy(t *testing.T) {
	running := &manifest.Manifest{Version: "2.0", SecurityVersion: 4}
	b := func(version string, secver uint64) *bundle.Bundle {
		return &bundle.Bundle{Header: &bundle.Header{Version: version, SecurityVersion: secver}}
	}
	for _, c := range []struct {
		name           string
		version        string
		secver         uint64
		counter        int64
		allowDowngrade bool
		want           string // "" ok
	}{
		{"newer", "2.1", 4, 4, false, ""},
		{"same", "2.0", 4, 4, false, ""},
		{"below the counter", "3.0", 3, 4, false, "below this device's anti-rollback counter 4"},
		{"below the counter, downgrade allowed", "3.0", 3, 4, true, "anti-rollback counter"},
		{"older version", "1.9", 4, 4, false, "--allow-downgrade"},
		{"older security version", "2.1", 3, 0, false, "--allow-downgrade"},
		{"older, allowed", "1.9", 4, 4, true, ""},
		{"no TPM", "2.1", 1, -1, false, "--allow-downgrade"},
		{"no TPM, allowed", "2.1", 1, -1, true, ""},
	} {
		err := Policy(running, c.allowDowngrade, c.counter)(b(c.version, c.secver))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, bootenv.ErrRefused)):
			t.Errorf("%s: %v, want a refusal with %q", c.name, err, c.want)
		}
	}
}
