package slotwrite

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/update/source"
	"github.com/keelboot/keel/update/source/sourcetest"
)

// Installs over real HTTP on 127.0.0.1: the Go server of package
// sourcetest (faults, byte counts) and nginx (a real server's Range
// support).

// fastRetries are HTTP options whose back-off keeps a test with drops
// fast.
func fastRetries(maxRequest int64) source.HTTPOptions {
	return source.HTTPOptions{MaxRequest: maxRequest, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
}

// installURL opens the bundle at url and installs it, as keel install
// does with a URL.
func installURL(t *testing.T, url string, ho source.HTTPOptions, o opts) (*Result, error) {
	t.Helper()
	src, err := source.HTTP(context.Background(), url, ho)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return install(t, src, o)
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	return bytes.Count(b, []byte{0}) == len(b)
}

// TestInstallHTTPDrops: a full install over HTTP whose connection is cut
// mid-answer several times (in the header and tree reads and in the data)
// completes, resuming each cut request where it stopped: no request is
// sent twice, and the server sends less than one request's worth (less
// than even one cut answer's bytes) beyond what the installer used.
func TestInstallHTTPDrops(t *testing.T) {
	f := newFixture(t, 11, 400, 6, false)
	s := sourcetest.NewServer(t, f.full2)
	// The next 5 answers longer than 6001 bytes are cut after 6001 bytes,
	// mid-block.
	const drops, cut = 5, 6001
	s.DropAfter(cut, drops)
	d := newDevice(t, nil)
	const maxReq = 64 << 10
	res, err := installURL(t, s.URL, fastRetries(maxReq), d.options(f.trusted, nil))
	if err != nil {
		t.Fatal(err)
	}
	d.checkSlot(t, f.v2)
	st := s.Stats()
	t.Logf("bundle %d bytes; fetched %d; server: %d requests, %d bytes served, %d dropped", len(f.full2), res.Fetched, st.Requests, st.Served, st.Dropped)
	if st.Dropped != drops {
		t.Fatalf("the server dropped %d answers, want %d: the test did not exercise the drops", st.Dropped, drops)
	}
	if res.Fetched < int64(len(f.full2))/2 {
		t.Errorf("fetched %d bytes of a %d-byte bundle into an empty target, want most of it", res.Fetched, len(f.full2))
	}
	// Served: the size probe's byte, the bytes the installer used, and
	// what was sent twice: nothing, as every resumed request asks only
	// for the rest. Starting a cut request over would send its first
	// 6001 bytes again.
	if extra := st.Served - 1 - res.Fetched; extra < 0 || extra >= cut {
		t.Errorf("the server sent %d bytes, the installer used %d (and the probe 1): %d extra, want 0 (at most less than one cut answer, %d, let alone a request, %d)", st.Served, res.Fetched, extra, cut, maxReq)
	}
	asked := map[string]bool{}
	for _, r := range st.Ranges {
		if asked[r] {
			t.Errorf("Range %q asked twice: a cut request was sent again instead of resumed", r)
		}
		asked[r] = true
	}
}

// TestInstallHTTPNoRange: a server that ignores Range (answers 200 with
// the whole file) fails the install with an error that says so, before
// Begin and before anything is written: whether it ignores Range from the
// start (the size probe) or only later (a load balancer with one such
// server behind it).
func TestInstallHTTPNoRange(t *testing.T) {
	f := newFixture(t, 12, 200, 3, false)
	for _, tc := range []struct {
		name       string
		afterProbe bool
	}{
		{"from the start", false},
		{"after the size probe", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sourcetest.NewServer(t, f.full2)
			d := newDevice(t, f.v1)
			o := d.options(f.trusted, nil)
			begun := false
			o.Begin = func(*bundle.Bundle) error { begun = true; return nil }
			var err error
			if tc.afterProbe {
				src, serr := source.HTTP(context.Background(), s.URL, fastRetries(0))
				if serr != nil {
					t.Fatal(serr)
				}
				defer src.Close()
				s.IgnoreRange(true)
				_, err = install(t, src, o)
			} else {
				s.IgnoreRange(true)
				_, err = installURL(t, s.URL, fastRetries(0), o)
			}
			if err == nil || !strings.Contains(err.Error(), "does not support range requests") {
				t.Fatalf("install from a server without Range support: %v, want an error saying it does not support range requests", err)
			}
			t.Logf("error: %v", err)
			if begun {
				t.Error("Begin was called")
			}
			if !isZero(d.slot.Bytes()) || !isZero(d.root.Bytes()) {
				t.Error("the target was written")
			}
			// A 200 is not retried: one request (the probe) or two.
			want := 1
			if tc.afterProbe {
				want = 2
			}
			if n := s.Stats().Requests; n != want {
				t.Errorf("%d requests, want %d", n, want)
			}
		})
	}
}

// TestInstallHTTPNginx installs from nginx: the full bundle on a device
// running the old version fetches only a small part of it; the static
// delta installs too; and a full transfer (NoLocal) works through nginx's
// Range support.
func TestInstallHTTPNginx(t *testing.T) {
	f := newFixture(t, 13, 400, 6, false)
	delta := staticDelta(t, f)
	f.full2 = bundletest.ChunkedBundle(t, f.v2, bundle.MinChunk, f.key)
	dir := t.TempDir()
	for name, b := range map[string][]byte{"full.raucb": f.full2, "delta.raucb": delta} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := sourcetest.Nginx(t, dir)
	ho := source.HTTPOptions{MaxRequest: 64 << 10}

	t.Run("full bundle, old version active", func(t *testing.T) {
		d := newDevice(t, f.v1)
		res, err := installURL(t, base+"/full.raucb", ho, d.options(f.trusted, nil))
		if err != nil {
			t.Fatal(err)
		}
		d.checkSlot(t, f.v2)
		t.Logf("fetched %d of %d bytes (%.1f%%), blocks %v", res.Fetched, len(f.full2), 100*float64(res.Fetched)/float64(len(f.full2)), res.Blocks)
		if limit := chunkedLimit(mustHeader(t, f, f.full2), 6); res.Fetched > limit || res.Blocks.Fetched > 6 {
			t.Errorf("fetched %d bytes (%d blocks) of a %d-byte bundle for a 6-block change, want at most %d (6 chunks)", res.Fetched, res.Blocks.Fetched, len(f.full2), limit)
		}
	})
	t.Run("static delta", func(t *testing.T) {
		d := newDevice(t, f.v1)
		res, err := installURL(t, base+"/delta.raucb", ho, d.options(f.trusted, nil))
		if err != nil {
			t.Fatal(err)
		}
		d.checkSlot(t, f.v2)
		t.Logf("static delta: fetched %d of %d bytes", res.Fetched, len(delta))
		if res.Fetched > int64(len(delta)) {
			t.Errorf("fetched %d bytes of a %d-byte delta", res.Fetched, len(delta))
		}
	})
	t.Run("full bundle, nothing local", func(t *testing.T) {
		d := newDevice(t, f.v1)
		o := d.options(f.trusted, nil)
		o.NoLocal = true
		res, err := installURL(t, base+"/full.raucb", ho, o)
		if err != nil {
			t.Fatal(err)
		}
		d.checkSlot(t, f.v2)
		if res.Fetched < int64(len(f.full2))/2 {
			t.Errorf("NoLocal fetched %d bytes of a %d-byte bundle, want most of it", res.Fetched, len(f.full2))
		}
	})
}

// TestInstallHTTPFetchedMatchesServed: a delta install (the old version
// active) over HTTP without faults. Result.Fetched is exactly what the
// server sent apart from the size probe's byte, and it is at most the
// header and manifest, the tree and the changed blocks.
func TestInstallHTTPFetchedMatchesServed(t *testing.T) {
	const changed = 6
	f := newFixture(t, 14, 400, changed, false)
	for _, format := range []string{"format 1", "format 2"} {
		t.Run(format, func(t *testing.T) {
			b := bundletest.PlainBundle(t, f.v2, f.key)
			if format == "format 2" {
				b = bundletest.ChunkedBundle(t, f.v2, bundle.MinChunk, f.key)
			}
			fetchedMatchesServed(t, f, b, changed)
		})
	}
}

func fetchedMatchesServed(t *testing.T, f *fixture, full []byte, changed int) {
	s := sourcetest.NewServer(t, full)
	d := newDevice(t, f.v1)
	res, err := installURL(t, s.URL, source.HTTPOptions{}, d.options(f.trusted, nil))
	if err != nil {
		t.Fatal(err)
	}
	d.checkSlot(t, f.v2)
	st := s.Stats()
	if st.Dropped+st.Stalled != 0 {
		t.Fatalf("stats %+v: faults in a test without any", st)
	}
	if res.Fetched != st.Served-1 {
		t.Errorf("Result.Fetched = %d, the server sent %d bytes: want that minus the probe's 1", res.Fetched, st.Served)
	}
	// The preamble, header and manifest come before the kernel; the
	// kernel and initrd are the active slot's.
	h := mustHeader(t, f, full)
	kp, _ := h.Part(bundle.PartKernel)
	tp, _ := h.Part(bundle.PartTree)
	padded := (tp.Size + bundle.Align - 1) / bundle.Align * bundle.Align
	limit := kp.Offset + padded + int64(changed)*bundle.Align
	if h.Chunks != nil {
		limit = chunkedLimit(h, changed)
	}
	t.Logf("fetched %d of %d bytes (%.1f%%) in %d requests; limit %d; blocks %v", res.Fetched, len(full), 100*float64(res.Fetched)/float64(len(full)), st.Requests, limit, res.Blocks)
	if res.Fetched > limit {
		t.Errorf("fetched %d bytes, want at most the header and manifest (%d), the tree (%d) and the %d changed blocks (chunks): %d", res.Fetched, kp.Offset, padded, changed, limit)
	}
	if h.Chunks == nil && res.Fetched*100 > int64(len(full))*5 {
		t.Errorf("fetched %d bytes of a %d-byte bundle, want a few percent", res.Fetched, len(full))
	}
}
