package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoBootCode: the host tool links no device-side boot code (keel-init's
// stages, kexec, device-mapper): it is the CLI, the image builder and the
// formats they share.
func TestNoBootCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/keelboot/keel/initramfs") {
			t.Errorf("cmd/keel imports %s", p)
		}
	}
}

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
