package channel

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelboot/keel/update/source/sourcetest"
)

// BenchmarkChannelCheck (make bench-channel): how many devices' metadata
// checks one nginx on 127.0.0.1 serves per second, with 64 devices at
// once for -benchtime each:
//
//   - server: what an up-to-date device's check asks of the server, on one
//     new connection: GET the next root (404) and timestamp.json (snapshot
//     and targets only when the timestamp names new ones);
//   - device: the whole check, keel's Client.Refresh (TUF's workflow:
//     parsing, signatures, the kept state in memory here), client and
//     server on this machine's cores;
//   - floor: one GET of timestamp.json per new connection, the least any
//     check can ask.
//
// The client shares the machine with nginx, so the server numbers are a
// lower bound for a server of its own.
func BenchmarkChannelCheck(b *testing.B) {
	f := newFixture(b)
	r := f.repoAt(time.Time{})
	if err := r.Init(nil); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Publish(context.Background(), Publish{Bundle: f.b2, Deltas: []string{f.d12}, Rollout: 100}); err != nil {
		b.Fatal(err)
	}
	url := sourcetest.Nginx(b, f.repo)
	root, err := os.ReadFile(filepath.Join(f.repo, "root.json"))
	if err != nil {
		b.Fatal(err)
	}
	const devices = 64
	rates := map[string]float64{}
	run := func(name, unit string, check func(hc *http.Client) error, device func() func() error) {
		b.Run(name, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(max(1, devices/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				t := &http.Transport{}
				hc := &http.Client{Transport: t, Timeout: 30 * time.Second}
				var dev func() error
				if device != nil {
					dev = device()
				}
				for pb.Next() {
					var err error
					if dev != nil {
						err = dev()
					} else {
						err = check(hc)
						t.CloseIdleConnections()
					}
					if err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			})
			rates[name] = float64(n.Load()) / b.Elapsed().Seconds()
			b.ReportMetric(rates[name], unit)
		})
	}
	get := func(hc *http.Client, path string, want int) error {
		res, err := hc.Get(url + path)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		io.Copy(io.Discard, res.Body)
		if res.StatusCode != want {
			return &http.ProtocolError{ErrorString: res.Status}
		}
		return nil
	}
	run("server", "checks/s", func(hc *http.Client) error {
		if err := get(hc, "/2.root.json", http.StatusNotFound); err != nil {
			return err
		}
		return get(hc, "/timestamp.json", http.StatusOK)
	}, nil)
	run("device", "checks/s", nil, func() func() error {
		c := &Client{URL: url, Root: root, State: shmDir(b), Tries: 1}
		return func() error {
			_, err := c.Refresh(context.Background())
			return err
		}
	})
	run("floor", "gets/s", func(hc *http.Client) error { return get(hc, "/timestamp.json", http.StatusOK) }, nil)
	b.Logf("checks/s: server %.0f, device (whole TUF check, client on this machine) %.0f; floor %.0f GETs/s (a check's server work is %.2f GETs')",
		rates["server"], rates["device"], rates["floor"], rates["floor"]/max(rates["server"], 1))
}

// shmDir is a state folder in memory (/dev/shm when there is one): the
// benchmark measures the server and the check, not this machine's disk.
func shmDir(b *testing.B) string {
	d, err := os.MkdirTemp("/dev/shm", "keel-channel-bench-")
	if err != nil {
		return b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}
