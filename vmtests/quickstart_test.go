package vmtests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/vmtests/vmkit"
)

// readmeQuickStart returns the quick start of README.md: the commands of
// its ```sh blocks, in order (a line ending in a backslash joined with the
// next, comments dropped), and its ```json block, the spec.json.
func readmeQuickStart(t *testing.T, root string) (cmds []string, spec []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Quick start")
	if i < 0 {
		t.Fatal("README.md has no ## Quick start")
	}
	s = s[i+1:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	comment := regexp.MustCompile(`\s+#\s.*$`)
	for {
		i := strings.Index(s, "\n```")
		if i < 0 {
			break
		}
		s = s[i+len("\n```"):]
		lang, body, _ := strings.Cut(s, "\n")
		end := strings.Index(body, "\n```")
		if end < 0 {
			t.Fatalf("README.md's quick start: a ```%s block without its end", lang)
		}
		body, s = body[:end+1], body[end+len("\n```"):]
		switch lang {
		case "json":
			if spec != nil {
				t.Fatal("README.md's quick start has two ```json blocks")
			}
			spec = []byte(body)
		case "sh":
			cmd := ""
			for _, line := range strings.Split(body, "\n") {
				line = comment.ReplaceAllString(line, "")
				if rest, ok := strings.CutSuffix(line, `\`); ok {
					cmd += rest
					continue
				}
				if cmd += line; strings.TrimSpace(cmd) != "" {
					cmds = append(cmds, strings.TrimSpace(cmd))
				}
				cmd = ""
			}
		}
	}
	if spec == nil || len(cmds) == 0 {
		t.Fatalf("README.md's quick start: %d commands and no spec.json", len(cmds))
	}
	return cmds, spec
}

// TestQuickStartDebian follows README's quick start to the letter: its
// spec.json and its commands (keel keygen, keel secureboot keygen, keel
// image build, keel secureboot ovmf-vars, swtpm and QEMU) run in a new
// folder, with build/ as `make build kernel debian-root` leaves it (keel
// and keel-init of this suite, built from the same source; the kernel and
// the Debian root make kernel and make debian-root made, the root with
// this keel in /usr/bin as make debian-root would put it there). Then
// README's QEMU line boots the disk: under Secure Boot (the db key signed
// keel's UKI and the slot kernel), keel-init boots slot a, systemd reaches
// multi-user.target and keel-mark-good.service commits the slot. The
// Debian root has no test units to power it off: the machine is stopped
// once the commit is on the console.
func TestQuickStartDebian(t *testing.T) {
	t.Parallel()
	art := artefacts(t)
	root, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmds, spec := readmeQuickStart(t, root)
	dir := t.TempDir()

	// make build kernel debian-root, as this suite built it.
	if cmds[0] != "make build kernel debian-root" {
		t.Fatalf("README's quick start begins with %q, want make build kernel debian-root (this test stands in for it)", cmds[0])
	}
	cmds = cmds[1:]
	build := filepath.Join(dir, "build")
	debRoot := filepath.Join(build, "debian-root", "root")
	if err := os.MkdirAll(filepath.Dir(debRoot), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", debianRootDir(t), debRoot).CombinedOutput(); err != nil {
		t.Fatalf("copying the Debian root: %v\n%s", err, out)
	}
	for _, c := range []struct{ src, dst string }{
		{art.Keel, filepath.Join(build, "keel")},
		{art.KeelInit, filepath.Join(build, "keel-init")},
		{art.Keel, filepath.Join(debRoot, "usr", "bin", "keel")},
	} {
		if out, err := exec.Command("cp", c.src, c.dst).CombinedOutput(); err != nil {
			t.Fatalf("cp %s %s: %v\n%s", c.src, c.dst, err, out)
		}
	}
	if err := os.Symlink(filepath.Join(root, "build", "kernel"), filepath.Join(build, "kernel")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), spec, 0o644); err != nil {
		t.Fatal(err)
	}

	// The commands up to the first one that runs in the background (swtpm)
	// in one shell, as a reader types them; then that one; then QEMU.
	var script []string
	for len(cmds) > 0 && !strings.HasSuffix(cmds[0], "&") {
		script = append(script, cmds[0])
		cmds = cmds[1:]
	}
	if len(cmds) != 2 || !strings.Contains(cmds[0], "swtpm ") || !strings.HasPrefix(cmds[1], "qemu-system-x86_64 ") {
		t.Fatalf("README's quick start ends with %q, want swtpm in the background, then qemu-system-x86_64", cmds)
	}
	shell := func(cmd string) *exec.Cmd {
		c := exec.Command("bash", "-euo", "pipefail", "-c", cmd)
		c.Dir = dir
		return c
	}
	start := time.Now()
	out, err := shell(strings.Join(script, "\n")).CombinedOutput()
	if err != nil {
		t.Fatalf("README's quick start:\n%s\n: %v\n%s", strings.Join(script, "\n"), err, out)
	}
	t.Logf("README's commands (keys, image build, OVMF variables) in %s:\n%s\n%s", time.Since(start).Round(time.Millisecond), strings.Join(script, "\n"), out)

	// swtpm, in a process group of its own that the test stops.
	tpm := shell(strings.TrimSpace(strings.TrimSuffix(cmds[0], "&")))
	tpm.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var tpmOut strings.Builder
	tpm.Stdout, tpm.Stderr = &tpmOut, &tpmOut
	if err := tpm.Start(); err != nil {
		t.Fatal(err)
	}
	tpmDone := make(chan struct{})
	go func() { tpm.Wait(); close(tpmDone) }()
	t.Cleanup(func() {
		syscall.Kill(-tpm.Process.Pid, syscall.SIGKILL)
		<-tpmDone
	})
	sock := regexp.MustCompile(`path=(\S+)`).FindStringSubmatch(cmds[0])
	if sock == nil {
		t.Fatalf("README's swtpm line names no socket: %q", cmds[0])
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(dir, sock[1])); err == nil {
			break
		}
		select {
		case <-tpmDone:
			t.Fatalf("swtpm exited: %s", tpmOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not make %s", sock[1])
		}
		time.Sleep(50 * time.Millisecond)
	}

	// README's QEMU line, run in the folder.
	if strings.ContainsAny(cmds[1], `'"$`) {
		t.Fatalf("README's QEMU line needs a shell to split it: %q", cmds[1])
	}
	args := strings.Fields(cmds[1])
	var mu sync.Mutex
	var lines []string
	powerOn := time.Now()
	vm, err := qemu.StartContext(context.Background(), qemu.ArchUseEnvv,
		// In the folder the README's paths are relative to.
		qemu.WithQEMUCommand("env -C "+dir+" "+args[0]),
		qemu.WithKernel(""), qemu.WithInitramfs(""),
		qemu.WithQEMUArgs(args[1:]...),
		qemu.WithVMTimeout(15*time.Minute),
		qemu.LogSerialByLine(func(line string) {
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
			t.Logf("[%7.3fs] %s", time.Since(powerOn).Seconds(), line)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !vm.Waited() {
			vm.Kill()
			vm.Wait()
		}
	})
	at := map[string]time.Duration{}
	expectRe := func(what string, re *regexp.Regexp) []string {
		t.Helper()
		out, err := vm.Console.Expect(expect.Regexp(re), expect.WithTimeout(5*time.Minute))
		if err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, re, err)
		}
		at[what] = time.Since(powerOn)
		return re.FindStringSubmatch(out)
	}
	expectRe("Secure Boot", regexp.MustCompile(`Secure Boot: on; slot kernels must be signed by db`))
	if m := expectRe("stage 2", regexp.MustCompile(`stage 2: slot (\S+) \(mode (\S+)\)`)); m[1] != "a" {
		t.Fatalf("stage 2 booted slot %s (mode %s), want slot a", m[1], m[2])
	}
	expectRe("systemd", regexp.MustCompile(`Welcome to .*Debian GNU/Linux 12`))
	reMulti := regexp.MustCompile(`Reached target .*(multi-user\.target|Multi-User System)`)
	if m := expectRe("commit", regexp.MustCompile(`slot (\S+) is good and active \(generation \d+\)`)); m[1] != "a" {
		t.Fatalf("keel mark-good committed slot %s, want a", m[1])
	}
	// multi-user.target waits for what it wants (keel-mark-good.service
	// among them): it comes after the commit, or with it.
	mu.Lock()
	seen := false
	for _, l := range lines {
		seen = seen || reMulti.MatchString(l)
	}
	mu.Unlock()
	if !seen {
		expectRe("multi-user.target", reMulti)
	}
	vm.Kill()
	vm.Wait()
	t.Logf("power-on to: %s", func() string {
		var sb strings.Builder
		for _, what := range []string{"Secure Boot", "stage 2", "systemd", "commit", "multi-user.target"} {
			if d, ok := at[what]; ok {
				fmt.Fprintf(&sb, "%s %.1fs; ", what, d.Seconds())
			}
		}
		return sb.String()
	}())
}
