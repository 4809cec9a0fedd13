package source

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keelboot/keel/update/source/sourcetest"
)

// TestNginxConformance runs the Source contract against nginx serving the
// bundle as a static file: a real server's Range support, not only Go's.
func TestNginxConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    HTTPOptions
	}{
		{"defaults", HTTPOptions{}},
		{"small requests", HTTPOptions{Parallel: 4, MaxRequest: 256 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testConformance(t, func(t *testing.T, payload []byte) func(t *testing.T) Source {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "bundle.raucb"), payload, 0o644); err != nil {
					t.Fatal(err)
				}
				url := sourcetest.Nginx(t, dir) + "/bundle.raucb"
				return func(t *testing.T) Source { return openHTTP(t, url, tc.o) }
			})
		})
	}
}
