package sysinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/layout"
)

// initramfs makes a root with the files given (path -> content).
func initramfs(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadStage(t *testing.T) {
	for _, s := range []layout.Stage{layout.Stage1, layout.Stage2} {
		got, err := ReadStage(initramfs(t, map[string]string{layout.StagePath: string(s.FileData())}))
		if err != nil || got != s {
			t.Errorf("stage file %q: got %v, %v; want %v", s.FileData(), got, err, s)
		}
	}
	// keel.stage=2 on the command line is no stage file: nothing else
	// than the file counts.
	if got, err := ReadStage(initramfs(t, map[string]string{layout.StagePath: "1", "/proc/cmdline": "keel.stage=2"})); err != nil || got != layout.Stage1 {
		t.Errorf("stage file 1: got %v, %v; want stage 1", got, err)
	}
}

func TestReadStageRefuses(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no file":   {"/proc/cmdline": "console=ttyS0 keel.stage=2 keel.slot=a"},
		"empty":     {layout.StagePath: ""},
		"stage 3":   {layout.StagePath: "3\n"},
		"stage 0":   {layout.StagePath: "0"},
		"two lines": {layout.StagePath: "1\n2\n"},
		"text":      {layout.StagePath: "stage2"},
	} {
		got, err := ReadStage(initramfs(t, files))
		if err == nil {
			t.Errorf("%s: got stage %v, want an error", name, got)
		} else if !strings.Contains(err.Error(), layout.StagePath) {
			t.Errorf("%s: error %q does not name %s", name, err, layout.StagePath)
		}
	}
	// A directory where the file should be.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, layout.StagePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadStage(root); err == nil {
		t.Errorf("directory: got stage %v, want an error", got)
	}
}

func TestDevelopmentBuild(t *testing.T) {
	if DevelopmentBuild(initramfs(t, map[string]string{layout.StagePath: "1", "/proc/cmdline": "keel.debug=1", "/bin/sh": "#!"})) {
		t.Error("no marker (keel.debug=1 on the command line, a shell in the initramfs): development build")
	}
	if !DevelopmentBuild(initramfs(t, map[string]string{layout.DebugPath: "development build\n"})) {
		t.Errorf("%s present: not a development build", layout.DebugPath)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, layout.DebugPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if DevelopmentBuild(root) {
		t.Errorf("a directory at %s: development build", layout.DebugPath)
	}
}
