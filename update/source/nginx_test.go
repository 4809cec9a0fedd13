package source

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
				url := startNginx(t, payload)
				return func(t *testing.T) Source { return openHTTP(t, url, tc.o) }
			})
		})
	}
}

// nginxConf is a configuration that keeps every file nginx writes in the
// test's directory (%[1]s), so it runs as any user, next to any other
// nginx, listening on 127.0.0.1:%[2]d.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:%[2]d;
		root %[1]s/www;
	}
}
`

// startNginx serves payload as /bundle.raucb from an nginx of its own
// and returns the URL; nginx is killed when the test ends.
func startNginx(t *testing.T, payload []byte) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx" // not in a user's PATH on Debian
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("nginx not installed (scripts/install-deps.sh installs nginx-light)")
		}
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "bundle.raucb"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	// The free port may be taken between finding it and nginx binding
	// it: try a few.
	var lastErr error
	for range 3 {
		url, err := runNginx(t, bin, dir, freePort(t))
		if err == nil {
			return url
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return ""
}

// runNginx starts nginx on port and waits until it serves the bundle.
func runNginx(t *testing.T, bin, dir string, port int) (string, error) {
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, port), 0o644); err != nil {
		return "", err
	}
	var out bytes.Buffer
	// -e: the error log before the configuration is read, which would
	// otherwise be the system's.
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/bundle.raucb", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return "", fmt.Errorf("nginx exited (%v): %s\n%s", err, out.Bytes(), log)
		case <-time.After(50 * time.Millisecond):
		}
		err := probeNginx(url)
		if err == nil {
			return url, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("nginx does not answer at %s: %w", url, err)
		}
	}
}

// probeNginx checks that nginx, and no other server, answers a Range
// request for the bundle.
func probeNginx(url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Server"), "nginx") {
		return errors.New("answer " + resp.Status + " from " + resp.Header.Get("Server"))
	}
	return nil
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
