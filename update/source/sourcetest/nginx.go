package sourcetest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
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

// nginxConf is a configuration that keeps every file nginx writes in a
// directory of its own (%[1]s), so it runs as any user, next to any other
// nginx, listening on 127.0.0.1:%[2]d and serving the directory %[3]q.
// The location /%[4]s answers 204: the probe that tells this nginx from
// anything else on the port.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
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
		root %[3]q;
		location = /%[4]s { return 204; }
	}
}
`

// Nginx starts an nginx of its own serving the files in dir (the file
// dir/a is at baseURL+"/a", with nginx's Range support) on a free port of
// 127.0.0.1, and returns baseURL (http://127.0.0.1:port, no trailing
// slash). nginx is stopped when the test ends. Without an nginx binary
// the test fails: scripts/install-deps.sh installs it.
func Nginx(t testing.TB, dir string) (baseURL string) {
	t.Helper()
	baseURL, _ = NginxLogged(t, dir)
	return baseURL
}

// NginxLogged is Nginx, and also returns the path of its access log
// (nginx's combined format: the status, then the body's bytes sent, after
// the request line), for a benchmark that counts the bytes served.
func NginxLogged(t testing.TB, dir string) (baseURL, accessLog string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx" // not in a user's PATH on Debian
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("sourcetest: nginx is not installed: run scripts/install-deps.sh (it installs nginx-light)")
		}
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	// The free port may be taken between finding it and nginx binding
	// it: try a few.
	var lastErr error
	for range 3 {
		url, err := runNginx(t, bin, work, root, freePort(t))
		if err == nil {
			return url, filepath.Join(work, "access.log")
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return "", ""
}

// runNginx starts nginx on port and waits until it answers.
func runNginx(t testing.TB, bin, work, root string, port int) (string, error) {
	token := make([]byte, 8)
	rand.Read(token)
	probe := "sourcetest-probe-" + hex.EncodeToString(token)
	conf := filepath.Join(work, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, work, port, root, probe), 0o644); err != nil {
		return "", err
	}
	var out bytes.Buffer
	// -e: the error log before the configuration is read, which would
	// otherwise be the system's.
	cmd := exec.Command(bin, "-p", work, "-c", conf, "-e", filepath.Join(work, "error.log"))
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
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			log, _ := os.ReadFile(filepath.Join(work, "error.log"))
			return "", fmt.Errorf("sourcetest: nginx exited (%v): %s\n%s", err, out.Bytes(), log)
		case <-time.After(50 * time.Millisecond):
		}
		err := probeNginx(base + "/" + probe)
		if err == nil {
			return base, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("sourcetest: nginx does not answer at %s: %w", base, err)
		}
	}
}

// probeNginx checks that our nginx, and no other server, answers.
func probeNginx(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.HasPrefix(resp.Header.Get("Server"), "nginx") {
		return errors.New("answer " + resp.Status + " from " + resp.Header.Get("Server"))
	}
	return nil
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
