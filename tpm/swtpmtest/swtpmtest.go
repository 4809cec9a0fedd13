// Package swtpmtest starts swtpm for tests: one process per test, talking
// over a unix socket, with its state in a directory that can outlive it.
// A missing swtpm fails the test (it is a declared dependency), it does not
// skip it.
package swtpmtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
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
	Socket   string // TPM command socket (unixio); empty with StartTCP
	Ctrl     string // control socket
	Port     int    // TCP command port with StartTCP (control: Port+1)
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
		stateDir = tempDir(t)
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

// StartTCP is Start with swtpm's TCP server on 127.0.0.1 (command port
// Port, control port Port+1) instead of unix sockets: tpm2-tools 5.4's
// swtpm TCTI (TCTI()) only speaks TCP. Each command is its own connection,
// so other clients can take turns.
func StartTCP(t testing.TB, stateDir string) *SWTPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatalf("swtpm not found (apt-get install swtpm): %v", err)
	}
	if stateDir == "" {
		stateDir = tempDir(t)
	}
	s := &SWTPM{t: t, StateDir: stateDir, Port: freePortPair(t)}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// TCTI is the tpm2-tools -T argument for a StartTCP swtpm.
func (s *SWTPM) TCTI() string { return fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", s.Port) }

// tempDir is a fresh state directory, removed when the test ends. Not
// t.TempDir: its path holds the test's name, and swtpm's --tpmstate
// splits its argument at commas.
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "swtpm-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freePortPair finds a port p with p and p+1 free on 127.0.0.1.
func freePortPair(t testing.TB) int {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no free pair of TCP ports")
	return 0
}

// tcpTPM sends each command over a new TCP connection to swtpm.
type tcpTPM struct{ addr string }

func (c tcpTPM) Send(cmd []byte) ([]byte, error) {
	conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10) // tag u16, size u32, code u32
	if _, err := io.ReadFull(conn, hdr); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<20 {
		return nil, fmt.Errorf("swtpm: bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(conn, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

func (tcpTPM) Close() error { return nil }

func (s *SWTPM) start() {
	s.t.Helper()
	s.out.Reset()
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + s.StateDir,
		"--flags", "not-need-init,startup-clear"}
	if s.Port != 0 {
		args = append(args, "--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.Port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.Port+1))
	} else {
		os.Remove(s.Socket)
		os.Remove(s.Ctrl)
		args = append(args, "--server", "type=unixio,path="+s.Socket, "--ctrl", "type=unixio,path="+s.Ctrl)
	}
	s.cmd = exec.Command("swtpm", args...)
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
		if s.Port != 0 {
			tpm := tcpTPM{fmt.Sprintf("127.0.0.1:%d", s.Port)}
			_, err := tpm2.GetRandom{BytesRequested: 1}.Execute(tpm)
			if err == nil {
				s.tpm = tpm
				return
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("swtpm does not answer on port %d: %v\n%s", s.Port, err, s.out.String())
			}
		} else if _, err := os.Stat(s.Socket); err == nil {
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
func (s *SWTPM) String() string {
	if s.Port != 0 {
		return fmt.Sprintf("swtpm(127.0.0.1:%d)", s.Port)
	}
	return fmt.Sprintf("swtpm(%s)", s.Socket)
}
