package kmodtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Module is one fake module: its path under the modules folder
// (kernel/fs/ext4/ext4.ko) and its .modinfo fields ("name=ext4",
// "depends=jbd2,mbcache").
type Module struct {
	Path    string
	Modinfo []string
}

// M is shorthand for a Module.
func M(path string, modinfo ...string) Module { return Module{path, modinfo} }

// Tree compiles the modules into a new temporary folder and returns it. It
// skips the test when gcc is not installed.
func Tree(t testing.TB, mods ...Module) string {
	t.Helper()
	dir := t.TempDir()
	Build(t, dir, mods...)
	return dir
}

// Build compiles the modules into dir.
func Build(t testing.TB, dir string, mods ...Module) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not installed: needed to build fake kernel modules (scripts/install-deps.sh installs it)")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(mods))
	for i, m := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Compile(gcc, filepath.Join(dir, m.Path), m.Modinfo)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// Compile writes out, an object file with a .modinfo section holding
// fields (each NUL-terminated), using gcc.
func Compile(gcc, out string, fields []string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	var lit strings.Builder
	for _, f := range fields {
		for _, c := range []byte(f) {
			fmt.Fprintf(&lit, "\\%03o", c) // octal escapes: any byte, no C quoting issues
		}
		lit.WriteString(`\000`)
	}
	src := fmt.Sprintf("static const char __mod_info[] __attribute__((section(\".modinfo\"), used)) = \"%s\";\nint init_module(void) { return 0; }\n", lit.String())
	c := out + ".c"
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		return err
	}
	defer os.Remove(c)
	if b, err := exec.Command(gcc, "-c", "-o", out, c).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc -c %s: %v\n%s", c, err, b)
	}
	return nil
}
