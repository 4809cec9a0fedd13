// Package swtpmtest starts swtpm for tests: one process per test, talking
// over a unix socket, with its state in a directory that can outlive it.
// A missing swtpm fails the test (it is a declared dependency), it does not
// skip it.
package swtpmtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// SWTPM is a running swtpm.
type SWTPM struct {
	t        testing.TB
	StateDir string
	Socket   string // TPM command socket (unixio)
	Ctrl     string // control socket
	cmd      *exec.Cmd
	out      bytes.Buffer
	done     chan struct{}
	tpm      transport.TPMCloser
}

// Start runs swtpm with its state in stateDir (empty: a fresh temporary
// directory) and stops it when the test ends.
func Start(t testing.TB, stateDir string) *SWTPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatalf("swtpm not found (apt-get install swtpm): %v", err)
	}
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	// unix socket paths are limited to 108 bytes: keep them short.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &SWTPM{t: t, StateDir: stateDir,
		Socket: filepath.Join(sockDir, "tpm.sock"), Ctrl: filepath.Join(sockDir, "ctrl.sock")}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *SWTPM) start() {
	s.t.Helper()
	os.Remove(s.Socket)
	os.Remove(s.Ctrl)
	s.out.Reset()
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--server", "type=unixio,path="+s.Socket,
		"--ctrl", "type=unixio,path="+s.Ctrl,
		"--tpmstate", "dir="+s.StateDir,
		"--flags", "not-need-init,startup-clear")
	s.cmd.Stdout = &s.out
	s.cmd.Stderr = &s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting swtpm: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.done:
			s.t.Fatalf("swtpm exited: %v\n%s", s.cmd.ProcessState, s.out.String())
		default:
		}
		if _, err := os.Stat(s.Socket); err == nil {
			tpm, err := linuxudstpm.Open(s.Socket)
			if err == nil {
				_, err = tpm2.GetRandom{BytesRequested: 1}.Execute(tpm)
				if err == nil {
					s.tpm = tpm
					return
				}
				tpm.Close()
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("swtpm does not answer on %s: %v\n%s", s.Socket, err, s.out.String())
			}
		} else if time.Now().After(deadline) {
			s.t.Fatalf("swtpm did not create %s\n%s", s.Socket, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TPM is a transport to this swtpm (valid until Stop or Restart).
func (s *SWTPM) TPM() transport.TPM { return s.tpm }

// Stop terminates swtpm (SIGTERM: it saves its state) and waits for it.
func (s *SWTPM) Stop() {
	if s.cmd == nil {
		return
	}
	if s.tpm != nil {
		s.tpm.Close()
		s.tpm = nil
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart stops swtpm and starts it again on the same state directory: a
// TPM reset (PCRs back to zero, NV kept).
func (s *SWTPM) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// String describes the instance.
func (s *SWTPM) String() string { return fmt.Sprintf("swtpm(%s)", s.Socket) }
