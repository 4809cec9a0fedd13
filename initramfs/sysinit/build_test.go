package sysinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, s := range []Stage{Stage1, Stage2} {
		got, err := ReadStage(initramfs(t, map[string]string{StagePath: string(s.FileData())}))
		if err != nil || got != s {
			t.Errorf("stage file %q: got %v, %v; want %v", s.FileData(), got, err, s)
		}
	}
	// keel.stage=2 on the command line is no stage file: nothing else
	// than the file counts.
	if got, err := ReadStage(initramfs(t, map[string]string{StagePath: "1", "/proc/cmdline": "keel.stage=2"})); err != nil || got != Stage1 {
		t.Errorf("stage file 1: got %v, %v; want stage 1", got, err)
	}
}

func TestReadStageRefuses(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no file":   {"/proc/cmdline": "console=ttyS0 keel.stage=2 keel.slot=a"},
		"empty":     {StagePath: ""},
		"stage 3":   {StagePath: "3\n"},
		"stage 0":   {StagePath: "0"},
		"two lines": {StagePath: "1\n2\n"},
		"text":      {StagePath: "stage2"},
	} {
		got, err := ReadStage(initramfs(t, files))
		if err == nil {
			t.Errorf("%s: got stage %v, want an error", name, got)
		} else if !strings.Contains(err.Error(), StagePath) {
			t.Errorf("%s: error %q does not name %s", name, err, StagePath)
		}
	}
	// A directory where the file should be.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, StagePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadStage(root); err == nil {
		t.Errorf("directory: got stage %v, want an error", got)
	}
}

func TestDevelopmentBuild(t *testing.T) {
	if DevelopmentBuild(initramfs(t, map[string]string{StagePath: "1", "/proc/cmdline": "keel.debug=1", "/bin/sh": "#!"})) {
		t.Error("no marker (keel.debug=1 on the command line, a shell in the initramfs): development build")
	}
	if !DevelopmentBuild(initramfs(t, map[string]string{DebugPath: "development build\n"})) {
		t.Errorf("%s present: not a development build", DebugPath)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, DebugPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if DevelopmentBuild(root) {
		t.Errorf("a directory at %s: development build", DebugPath)
	}
}
