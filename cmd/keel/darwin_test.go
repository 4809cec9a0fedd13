package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBuildsForDarwin: the host tool is useful on a developer's
// workstation (signing, predicting PCRs, editing images).
func TestBuildsForDarwin(t *testing.T) {
	for _, goarch := range []string{"arm64", "amd64"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "keel"), ".")
		cmd.Env = append(cmd.Environ(), "GOOS=darwin", "GOARCH="+goarch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=darwin GOARCH=%s go build ./cmd/keel: %v\n%s", goarch, err, out)
		}
	}
}
