package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/update/source/sourcetest"
)

// TestInstallTimeout: --timeout stops an install from a server that
// trickles (50 kB/s: no stall, and above the default minimum rate), with
// an error naming the flag; the slot is left as a cut install (run it
// again).
func TestInstallTimeout(t *testing.T) {
	f := newUpdateFixture(t)
	d := newFakeDevice(t, f)
	keelDeps(t, d.deps(t, nil), "--efivars", d.efi, "init", "--active", "a").ok(t)
	b, _ := os.ReadFile(f.b2)
	s := sourcetest.NewServer(t, b)
	s.Trickle(1000, 20*time.Millisecond)
	start := time.Now()
	r := keelDeps(t, d.deps(t, nil), "install", "--progress", "none", "--no-delta", "--timeout", "1s", s.URL)
	r.fails(t, ExitStorage, "the install took longer than --timeout 1s and was stopped")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the install stopped after %v, --timeout 1s", took)
	}
	if !strings.Contains(r.stderr, "run the install again") {
		t.Errorf("no advice: %s", r.stderr)
	}
	// The flags' values are checked.
	for _, args := range [][]string{{"--timeout", "-1s"}, {"--min-rate", "-5"}, {"--min-rate-window", "10ms"}} {
		keelDeps(t, d.deps(t, nil), append(append([]string{"install"}, args...), f.b2)...).fails(t, ExitUsage, args[0])
	}
}

// TestInstallMinRate: a download slower than --min-rate over
// --min-rate-window fails, naming the rate seen and the flags; --min-rate
// 0 turns the check off (the same trickle then completes).
func TestInstallMinRate(t *testing.T) {
	f := newUpdateFixture(t)
	d := newFakeDevice(t, f)
	keelDeps(t, d.deps(t, nil), "--efivars", d.efi, "init", "--active", "a").ok(t)
	b, _ := os.ReadFile(f.b2)
	s := sourcetest.NewServer(t, b)
	s.Trickle(4000, 20*time.Millisecond) // 200 kB/s
	r := keelDeps(t, d.deps(t, nil), "install", "--progress", "none", "--no-delta", "--min-rate", "1000000", "--min-rate-window", "1s", s.URL)
	r.fails(t, ExitStorage, "below the minimum of 1000000 bytes/s (--min-rate 1000000 bytes/s over --min-rate-window 1s: give a lower --min-rate")
	if !strings.Contains(r.stderr, "bytes in the last 1s of transfer (") {
		t.Errorf("the error does not say the rate seen: %s", r.stderr)
	}
	keelDeps(t, d.deps(t, nil), "install", "--progress", "none", "--no-delta", "--min-rate", "0", "--min-rate-window", "1s", s.URL).ok(t)
}

// pipeBundle is a version of f.v1 with only data block 5 changed: an
// install of it from a pipe needs the bundle up to block 5 and leaves the
// rest, 194 blocks, more than a pipe holds, unread.
func pipeBundle(t *testing.T, f *updateFixture) string {
	v := *f.v1
	v.Version = "1.1"
	v.Data = append([]byte(nil), f.v1.Data...)
	v.Data[5*bundle.Align] ^= 1
	bundletest.Seal(t, &v, f.key)
	path := filepath.Join(f.dir, "v1.1.bundle")
	mustWrite(t, path, bundletest.Bundle(t, &v, f.key), 0o644)
	return path
}

// TestInstallStdinDrained: `cat BUNDLE | keel install -` with a real
// pipe and a real writer: after the install keel reads the rest of the
// pipe, so cat finishes and exits 0 (it died of SIGPIPE: the install
// needed the bundle only up to data block 5). A pipe that goes on past
// the bound, or is held open, ends the drain with a warning; the install
// succeeded all the same.
func TestInstallStdinDrained(t *testing.T) {
	f := newUpdateFixture(t)
	bundleFile := pipeBundle(t, f)
	install := func(t *testing.T, stdin io.Reader, args ...string) result {
		d := newFakeDevice(t, f)
		keelDeps(t, d.deps(t, nil), "--efivars", d.efi, "init", "--active", "a").ok(t)
		return keelDeps(t, d.deps(t, stdin), append(append([]string{"install", "--progress", "none"}, args...), "-")...)
	}
	t.Run("cat", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cat := exec.Command("cat", bundleFile)
		cat.Stdout = w
		if err := cat.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		res := install(t, r).ok(t)
		r.Close() // keel exits
		if err := cat.Wait(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGPIPE {
				t.Fatalf("cat died of SIGPIPE: standard input was not read to its end")
			}
			t.Fatalf("cat: %v", err)
		}
		if strings.Contains(res.stderr, "standard input") {
			t.Errorf("stderr: %s", res.stderr)
		}
	})
	t.Run("past the bound", func(t *testing.T) {
		b, _ := os.ReadFile(bundleFile)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		written := make(chan error, 1)
		go func() {
			_, err := w.Write(append(b, make([]byte, 3<<20)...))
			w.Close()
			written <- err
		}()
		res := install(t, r).ok(t)
		r.Close()
		if !strings.Contains(res.stderr, "standard input was not read to its end (the input goes on past its end") {
			t.Errorf("stderr: %s", res.stderr)
		}
		if err := <-written; !errors.Is(err, syscall.EPIPE) {
			t.Errorf("the writer of 3 MiB too many got %v, want EPIPE", err)
		}
	})
	t.Run("held open", func(t *testing.T) {
		b, _ := os.ReadFile(bundleFile)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		go w.Write(b) // and no EOF
		start := time.Now()
		res := install(t, r, "--timeout", "3s").ok(t)
		r.Close()
		if !strings.Contains(res.stderr, "--timeout 3s") || !strings.Contains(res.stdout, "installed version 1.1") {
			t.Errorf("stdout %s\nstderr: %s", res.stdout, res.stderr)
		}
		if took := time.Since(start); took > 8*time.Second {
			t.Errorf("the install took %v with --timeout 3s", took)
		}
	})
	// A bundle in memory (no pipe) is drained too, and silently.
	b, _ := os.ReadFile(bundleFile)
	if res := install(t, bytes.NewReader(b)).ok(t); strings.Contains(res.stderr, "standard input") {
		t.Errorf("stderr: %s", res.stderr)
	}
}
