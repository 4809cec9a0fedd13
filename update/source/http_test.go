package source

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelboot/keel/update/source/sourcetest"
)

func TestHTTPConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    HTTPOptions
	}{
		{"defaults", HTTPOptions{}},
		{"small requests", HTTPOptions{Parallel: 3, MaxRequest: 300 << 10}},
		{"one at a time", HTTPOptions{Parallel: 1, MaxRequest: 64 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testConformance(t, func(t *testing.T, payload []byte) func(t *testing.T) Source {
				// The standard library's Range support, as a reference.
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.ServeContent(w, r, "bundle", time.Time{}, bytes.NewReader(payload))
				}))
				t.Cleanup(srv.Close)
				return func(t *testing.T) Source { return openHTTP(t, srv.URL, tc.o) }
			})
		})
	}
}

// noSleep replaces the back-off in tests that retry.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

func openHTTP(t *testing.T, url string, o HTTPOptions) *HTTPSource {
	t.Helper()
	src, err := HTTP(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src.(*HTTPSource)
}

func testPayload(n int) []byte {
	return randomBytes(rand.New(rand.NewPCG(uint64(n), 2)), n)
}

// total is the bytes ranges ask for.
func total(ranges []Range) int64 {
	var n int64
	for _, r := range ranges {
		n += r.Len
	}
	return n
}

func TestHTTPResumesAfterDrops(t *testing.T) {
	payload := testPayload(4 << 20)
	s := sourcetest.NewServer(t, payload)
	const maxReq = 1 << 20
	src := openHTTP(t, s.URL, HTTPOptions{Parallel: 2, MaxRequest: maxReq, Sleep: noSleep})
	s.Reset()
	// Cut the first 6 answers after an odd number of bytes, mid-piece.
	const cut = 300001
	s.DropAfter(cut, 6)
	ranges := []Range{{Off: 0, Len: 1500000}, {Off: 1500000, Len: 2000000}, {Off: 3600000, Len: 500000}}
	if err := fetchAndCheck(context.Background(), src, payload, ranges); err != nil {
		t.Fatal(err)
	}
	seen := s.Stats()
	st := src.Stats()
	asked := total(ranges)
	t.Logf("asked %d bytes; stats %+v; server served %d bytes in %d requests", asked, st, seen.Served, seen.Requests)
	if st.Retries != 6 || seen.Dropped != 6 {
		t.Errorf("Stats.Retries = %d, want the 6 drops (the server dropped %d)", st.Retries, seen.Dropped)
	}
	// Resumed requests ask only for what is missing: apart from the
	// probe's byte, nothing is fetched twice, and certainly not a whole
	// request again.
	if extra := st.BytesFetched - 1 - asked; extra < 0 || extra >= maxReq {
		t.Errorf("BytesFetched %d for %d bytes asked: %d extra", st.BytesFetched, asked, extra)
	}
	if extra := seen.Served - asked; extra < 0 || extra >= maxReq {
		t.Errorf("the server sent %d bytes for %d asked: %d extra", seen.Served, asked, extra)
	}
	// The first request (bytes 0 to 1 MiB) was cut after 300001 bytes
	// and resumed from there.
	if want := fmt.Sprintf("bytes=%d-%d", cut, maxReq-1); !slices.Contains(seen.Ranges, want) {
		t.Errorf("no resumed request %q among %q", want, seen.Ranges)
	}
	if int64(seen.Requests) != st.Requests-1 {
		t.Errorf("Stats.Requests = %d, the server saw %d plus the probe", st.Requests, seen.Requests)
	}
}

func TestHTTPRetriesResetOnProgress(t *testing.T) {
	// Every answer is cut after 100 KiB: a 1 MiB request needs 11
	// attempts. With Retries 2 it still completes, as each attempt moves.
	payload := testPayload(1 << 20)
	s := sourcetest.NewServer(t, payload)
	src := openHTTP(t, s.URL, HTTPOptions{Retries: 2, Sleep: noSleep})
	s.DropAfter(100<<10, 1000)
	if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 0, Len: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	if st := src.Stats(); st.Retries != 10 || st.BytesFetched != 1<<20+1 {
		t.Errorf("stats %+v, want 10 retries and the bundle's bytes plus the probe's", st)
	}
}

func TestHTTPGivesUp(t *testing.T) {
	payload := testPayload(100000)
	s := sourcetest.NewServer(t, payload)
	var mu sync.Mutex
	var delays []time.Duration
	var logged []string
	src := openHTTP(t, s.URL, HTTPOptions{
		Sleep: func(_ context.Context, d time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			delays = append(delays, d)
			return nil
		},
		Log: func(line string) { logged = append(logged, line) },
	})
	// Headers, then the connection is cut: no progress, ever.
	s.DropAfter(0, 1000)
	err := src.Fetch(context.Background(), []Range{{Off: 5000, Len: 20000}}, func(int64, []byte) error {
		return errors.New("fn called")
	})
	want := fmt.Sprintf("GET %s bytes 5000-24999: gave up after 9 failed attempts in a row: at byte 5000: unexpected EOF", s.URL)
	if err == nil || err.Error() != want {
		t.Errorf("Fetch = %v\nwant %s", err, want)
	}
	ms := time.Millisecond
	if wantDelays := []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms}; !slices.Equal(delays, wantDelays) {
		t.Errorf("back-off %v, want %v", delays, wantDelays)
	}
	if st := src.Stats(); st.Retries != 8 || st.Requests != 1+9 {
		t.Errorf("stats %+v, want 8 retries, 9 requests after the probe", st)
	}
	if len(logged) != 8 || !strings.Contains(logged[0], "retry 1 of 8 in 200ms") {
		t.Errorf("log %q", logged)
	}
}

func TestHTTPCoalescesAdjacentRanges(t *testing.T) {
	payload := testPayload(1 << 20)
	s := sourcetest.NewServer(t, payload)
	ctx := context.Background()

	src := openHTTP(t, s.URL, HTTPOptions{})
	s.Reset()
	ranges := []Range{{Off: 0, Len: 1000}, {Off: 1000, Len: 5000}, {Off: 6000, Len: 100}, {Off: 10000, Len: 10}}
	if err := fetchAndCheck(ctx, src, payload, ranges); err != nil {
		t.Fatal(err)
	}
	seen := s.Stats().Ranges
	slices.Sort(seen)
	if want := []string{"bytes=0-6099", "bytes=10000-10009"}; !slices.Equal(seen, want) {
		t.Errorf("requests %q, want %q: adjacent ranges in one", seen, want)
	}

	// A run longer than MaxRequest takes several requests, none longer.
	const maxReq = 64 << 10
	src = openHTTP(t, s.URL, HTTPOptions{MaxRequest: maxReq})
	s.Reset()
	ranges = []Range{{Off: 0, Len: 100000}, {Off: 100000, Len: 100000}}
	if err := fetchAndCheck(ctx, src, payload, ranges); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Requests != 4 || st.Served != 200000 {
		t.Errorf("requests %q (%d bytes), want 4 covering 200000 bytes", st.Ranges, st.Served)
	}
	for _, h := range st.Ranges {
		if first, last, _ := sourcetest.ParseRange(h); last-first+1 > maxReq {
			t.Errorf("request %q asks for more than MaxRequest (%d)", h, maxReq)
		}
	}
}

// sparse is n ranges of 64 KiB with gaps, one request each.
func sparse(n int) []Range {
	var rs []Range
	for i := range n {
		rs = append(rs, Range{Off: int64(i) * 100000, Len: 64 << 10})
	}
	return rs
}

func TestHTTPParallel(t *testing.T) {
	payload := testPayload(1 << 20)
	for _, tc := range []struct {
		parallel int
		want     func(int) bool
	}{
		{4, func(n int) bool { return n > 1 && n <= 4 }},
		{1, func(n int) bool { return n == 1 }},
	} {
		t.Run(fmt.Sprint(tc.parallel), func(t *testing.T) {
			s := sourcetest.NewServer(t, payload)
			src := openHTTP(t, s.URL, HTTPOptions{Parallel: tc.parallel})
			s.Reset()
			s.Delay(func(int64) time.Duration { return 30 * time.Millisecond })
			if err := fetchAndCheck(context.Background(), src, payload, sparse(8)); err != nil {
				t.Fatal(err)
			}
			n := s.Stats().MaxInFlight
			if !tc.want(n) {
				t.Errorf("Parallel %d: the server saw up to %d requests at once", tc.parallel, n)
			}
		})
	}
}

func TestHTTPOutOfOrderAnswers(t *testing.T) {
	// The earliest requests answer last; pieces still come out in order.
	payload := testPayload(1 << 20)
	s := sourcetest.NewServer(t, payload)
	src := openHTTP(t, s.URL, HTTPOptions{Parallel: 4})
	s.Delay(func(first int64) time.Duration {
		return time.Duration((1<<20 - first) * int64(100*time.Millisecond) >> 20)
	})
	if err := fetchAndCheck(context.Background(), src, payload, sparse(10)); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPBoundedLookahead(t *testing.T) {
	// While fn holds the first piece, no more than Parallel requests are
	// started: that is all Fetch buffers.
	payload := testPayload(2 << 20)
	s := sourcetest.NewServer(t, payload)
	src := openHTTP(t, s.URL, HTTPOptions{Parallel: 3})
	s.Reset()
	release := make(chan struct{})
	held := make(chan struct{})
	done := make(chan error)
	ranges := sparse(20)
	go func() {
		c := newChecker(payload, ranges)
		first := true
		err := src.Fetch(context.Background(), ranges, func(off int64, b []byte) error {
			if first {
				first = false
				close(held)
				<-release
			}
			return c.fn(off, b)
		})
		if err == nil {
			err = c.done()
		}
		done <- err
	}()
	<-held
	// Wait for the 3 requests started to show, then for any more.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s.Stats().Requests >= 3 {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := s.Stats().Requests; n != 3 {
		t.Errorf("%d requests while fn held the first piece, want Parallel = 3", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Requests; n != 20 {
		t.Errorf("%d requests, want 20", n)
	}
}

func TestHTTPNoRangeSupport(t *testing.T) {
	s := sourcetest.NewServer(t, testPayload(10000))
	s.IgnoreRange(true)
	_, err := HTTP(context.Background(), s.URL, HTTPOptions{Sleep: noSleep})
	want := "the server at " + s.URL + " answered 200 to a Range request: it does not support range requests, which streaming needs (RAUC needs the same); serve the bundle from a server with range support, or download it and install the file"
	if err == nil || err.Error() != want {
		t.Errorf("HTTP = %v\nwant %s", err, want)
	}
	if n := s.Stats().Requests; n != 1 {
		t.Errorf("%d requests, want 1: no retry", n)
	}
}

func TestHTTPStatusErrors(t *testing.T) {
	payload := testPayload(10000)
	for _, tc := range []struct {
		status int
		want   string
	}{
		{404, "404 Not Found (no bundle at that URL)"},
		{403, "403 Forbidden (check the credentials, such as an Authorization header)"},
		{416, "416 Requested Range Not Satisfiable (is the bundle empty?)"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			s := sourcetest.NewServer(t, payload)
			s.FailNext(tc.status, tc.status)
			_, err := HTTP(context.Background(), s.URL, HTTPOptions{Sleep: noSleep})
			want := fmt.Sprintf("GET %s bytes 0-0: the server answered %s", s.URL, tc.want)
			if err == nil || err.Error() != want {
				t.Errorf("HTTP = %v\nwant %s", err, want)
			}
			if n := s.Stats().Requests; n != 1 {
				t.Errorf("%d requests, want 1: a %d is not retried", n, tc.status)
			}
		})
	}
	t.Run("503 then success", func(t *testing.T) {
		s := sourcetest.NewServer(t, payload)
		var logged []string
		s.FailNext(503, 503)
		src := openHTTP(t, s.URL, HTTPOptions{Sleep: noSleep, Log: func(l string) { logged = append(logged, l) }})
		if st := src.Stats(); st.Retries != 2 || st.Requests != 3 {
			t.Errorf("stats %+v, want 2 retries in 3 requests", st)
		}
		if len(logged) != 2 || !strings.Contains(logged[0], "the server answered 503 Service Unavailable; retry 1 of 8") {
			t.Errorf("log %q", logged)
		}
		// And during a Fetch.
		s.FailNext(500, 502, 429)
		if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 100, Len: 9000}}); err != nil {
			t.Fatal(err)
		}
		if st := src.Stats(); st.Retries != 5 {
			t.Errorf("stats %+v, want 5 retries", st)
		}
	})
	t.Run("500 for good", func(t *testing.T) {
		s := sourcetest.NewServer(t, payload)
		src := openHTTP(t, s.URL, HTTPOptions{Sleep: noSleep, Retries: 2})
		s.FailNext(500, 500, 500, 500)
		err := src.Fetch(context.Background(), []Range{{Off: 0, Len: 10}}, func(int64, []byte) error { return nil })
		want := fmt.Sprintf("GET %s bytes 0-9: gave up after 3 failed attempts in a row: the server answered 500 Internal Server Error", s.URL)
		if err == nil || err.Error() != want {
			t.Errorf("Fetch = %v\nwant %s", err, want)
		}
	})
}

func TestHTTPBadAnswers(t *testing.T) {
	payload := testPayload(100000)
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request, first, last int64)
		want    string // in the error of HTTP, or of Fetch after it
	}{
		{"wrong Content-Range", func(w http.ResponseWriter, r *http.Request, first, last int64) {
			if first > 0 {
				first++
			}
			writePart(w, payload, first, last, len(payload))
		}, "the answer holds bytes 5001-5099"},
		{"no size", func(w http.ResponseWriter, r *http.Request, first, last int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", first, last))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(payload[first : last+1])
		}, "does not tell the bundle's size"},
		{"size changed", func(w http.ResponseWriter, r *http.Request, first, last int64) {
			size := len(payload)
			if first > 0 {
				size--
			}
			writePart(w, payload, first, last, size)
		}, "the bundle changed on the server: it has 99999 bytes now, 100000 before"},
		{"no Content-Range", func(w http.ResponseWriter, r *http.Request, first, last int64) {
			w.WriteHeader(http.StatusPartialContent)
			w.Write(payload[first : last+1])
		}, `bad Content-Range "" in a 206 answer`},
		{"too long, chunked", func(w http.ResponseWriter, r *http.Request, first, last int64) {
			if first == 0 {
				writePart(w, payload, first, last, len(payload))
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(payload)))
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write(payload[first : last+2])
		}, "the server sent more than the 100 bytes asked"},
		{"gzip", func(w http.ResponseWriter, r *http.Request, first, last int64) {
			if first > 0 {
				w.Header().Set("Content-Encoding", "gzip")
			}
			writePart(w, payload, first, last, len(payload))
		}, "the answer is gzip-encoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				first, last, _ := sourcetest.ParseRange(r.Header.Get("Range"))
				tc.handler(w, r, first, last)
			}))
			defer srv.Close()
			src, err := HTTP(context.Background(), srv.URL, HTTPOptions{Sleep: noSleep})
			if err == nil {
				defer src.Close()
				err = src.Fetch(context.Background(), []Range{{Off: 5000, Len: 100}}, func(int64, []byte) error { return nil })
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func writePart(w http.ResponseWriter, payload []byte, first, last int64, size int) {
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
	w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(payload[first : last+1])
}

func TestHTTPHeaders(t *testing.T) {
	payload := testPayload(3 << 20)
	s := sourcetest.NewServer(t, payload)
	s.RequireAuthorization("Bearer x")
	_, err := HTTP(context.Background(), s.URL, HTTPOptions{})
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized (check the credentials") {
		t.Errorf("HTTP without the header = %v, want a 401 error", err)
	}
	s.Reset()
	src := openHTTP(t, s.URL, HTTPOptions{Headers: http.Header{"Authorization": {"Bearer x"}}, MaxRequest: 256 << 10})
	if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 0, Len: 3 << 20}}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Unauthorized != 0 || st.Requests != 13 {
		t.Errorf("%d of %d requests without the header, want 0 of 13", st.Unauthorized, st.Requests)
	}
}

func TestHTTPTLS(t *testing.T) {
	payload := testPayload(1 << 20)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "bundle", time.Time{}, bytes.NewReader(payload))
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	src := openHTTP(t, srv.URL, HTTPOptions{CAFile: ca})
	if err := fetchAndCheck(ctx, src, payload, []Range{{Off: 0, Len: 100}, {Off: 5000, Len: 600000}}); err != nil {
		t.Fatal(err)
	}

	retried := false
	_, err := HTTP(ctx, srv.URL, HTTPOptions{Sleep: func(context.Context, time.Duration) error { retried = true; return nil }})
	if !errors.As(err, &x509.UnknownAuthorityError{}) || retried {
		t.Errorf("HTTP without the CA = %v (retried: %v), want an x509.UnknownAuthorityError, not retried", err, retried)
	}

	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("not a certificate\n"), 0o644)
	if _, err := HTTP(ctx, srv.URL, HTTPOptions{CAFile: empty}); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("HTTP with a CA file without certificates = %v", err)
	}
	if _, err := HTTP(ctx, srv.URL, HTTPOptions{CAFile: filepath.Join(dir, "missing.pem")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("HTTP with a missing CA file = %v", err)
	}
	if _, err := HTTP(ctx, srv.URL, HTTPOptions{CAFile: ca, Client: srv.Client()}); err == nil {
		t.Error("HTTP with CAFile and Client works, want an error")
	}
	// A caller's client that trusts the server works too.
	src = openHTTP(t, srv.URL, HTTPOptions{Client: srv.Client()})
	if err := fetchAndCheck(ctx, src, payload, []Range{{Off: 1, Len: 1000}}); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPCancel(t *testing.T) {
	payload := testPayload(4 << 20)
	s := sourcetest.NewServer(t, payload)
	base := runtime.NumGoroutine()
	src, err := HTTP(context.Background(), s.URL, HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Slow(true) // about 800 kB/s per request
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	err = src.Fetch(ctx, []Range{{Off: 0, Len: 4 << 20}}, func(int64, []byte) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Fetch took %v after a cancel at 300ms", d)
	}
	src.Close()
	waitGoroutines(t, base)
}

// waitGoroutines waits for the goroutine count to come back to base: the
// transport's connection goroutines end soon after Close, not at once.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHTTPStall(t *testing.T) {
	payload := testPayload(1 << 20)
	s := sourcetest.NewServer(t, payload)
	var logged []string
	src := openHTTP(t, s.URL, HTTPOptions{StallTimeout: 300 * time.Millisecond, Sleep: noSleep, Log: func(l string) { logged = append(logged, l) }})
	s.StallAfter(5000, 1)
	start := time.Now()
	if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 0, Len: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	// More lines than one would be a loaded machine's pause, and fine.
	if len(logged) == 0 || !strings.Contains(logged[0], "at byte 5000: the transfer stalled: no data for 300ms") {
		t.Errorf("log %q, want a stall at byte 5000 first", logged)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Fetch took %v, less than the stall timeout", d)
	}
	if n := s.Stats().Stalled; n != 1 {
		t.Errorf("the server stalled %d answers, want 1", n)
	}
}

func TestHTTPClosed(t *testing.T) {
	s := sourcetest.NewServer(t, testPayload(10000))
	src := openHTTP(t, s.URL, HTTPOptions{})
	src.Close()
	if err := src.Fetch(context.Background(), []Range{{Off: 0, Len: 10}}, func(int64, []byte) error { return nil }); err == nil {
		t.Error("Fetch after Close works")
	}
}

func TestHTTPBadURL(t *testing.T) {
	for _, u := range []string{"ftp://example.com/b", "http://", "http://a b/"} {
		if _, err := HTTP(context.Background(), u, HTTPOptions{}); err == nil {
			t.Errorf("HTTP(%q) works", u)
		}
	}
	// A password in the URL stays out of messages.
	_, err := HTTP(context.Background(), "http://user:secret@127.0.0.1:1/b", HTTPOptions{Retries: -1})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("HTTP = %v, want an error without the password", err)
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                string
		first, last, size int64
		ok                bool
	}{
		{"bytes 0-0/100", 0, 0, 100, true},
		{"bytes 5-9/10", 5, 9, 10, true},
		{"bytes 5-9/*", 5, 9, -1, true},
		{"bytes 5-9/9", 0, 0, 0, false},
		{"bytes 9-5/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"bytes=0-0/100", 0, 0, 0, false},
		{"", 0, 0, 0, false},
		{"bytes -1-5/100", 0, 0, 0, false},
	} {
		first, last, size, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || tc.ok && (first != tc.first || last != tc.last || size != tc.size) {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v", tc.in, first, last, size, err)
		}
	}
}

func TestPlan(t *testing.T) {
	type req struct{ off, len, pieces int64 }
	for _, tc := range []struct {
		name   string
		ranges []Range
		maxReq int64
		want   []req
	}{
		{"adjacent join", []Range{{Off: 0, Len: 100}, {Off: 100, Len: 100}, {Off: 300, Len: 10}}, 8 << 20, []req{{0, 200, 2}, {300, 10, 1}}},
		{"pieces of a long range", []Range{{Off: 10, Len: 3<<20 + 5}}, 8 << 20, []req{{10, 3<<20 + 5, 4}}},
		{"split at MaxRequest", []Range{{Off: 0, Len: 10 << 20}}, 8 << 20, []req{{0, 8 << 20, 8}, {8 << 20, 2 << 20, 2}}},
		{"small MaxRequest cuts pieces", []Range{{Off: 0, Len: 10000}, {Off: 10000, Len: 100}}, 4096, []req{{0, 4096, 1}, {4096, 4096, 1}, {8192, 1908, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []req
			for _, r := range plan(tc.ranges, tc.maxReq) {
				got = append(got, req{r.off, r.len, int64(len(r.pieces))})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHTTPOptionsDefaults(t *testing.T) {
	o := HTTPOptions{}.withDefaults()
	if o.Parallel != 4 || o.MaxRequest != 8<<20 || o.Retries != 8 || o.Backoff != 200*time.Millisecond || o.MaxBackoff != 5*time.Second || o.Sleep == nil {
		t.Errorf("defaults %+v", o)
	}
	o = HTTPOptions{MaxRequest: 10000, Retries: -1}.withDefaults()
	if o.MaxRequest != 8192 || o.Retries != 0 {
		t.Errorf("MaxRequest %d Retries %d, want 8192 and 0", o.MaxRequest, o.Retries)
	}
	if o := (HTTPOptions{MaxRequest: 100}).withDefaults(); o.MaxRequest != 4096 {
		t.Errorf("MaxRequest %d, want 4096", o.MaxRequest)
	}
}

// TestHTTPRedirects: a redirect to another origin (here another port of
// the same host) does not carry Authorization, so a server that wants it
// refuses; a CDN with signed URLs needs none, and works.
// TestHTTPRedirectCredentials covers every kind of redirect.
func TestHTTPRedirects(t *testing.T) {
	payload := testPayload(200000)
	target := sourcetest.NewServer(t, payload)
	redirect := func(to string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to, http.StatusFound)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	auth := HTTPOptions{Headers: http.Header{"Authorization": {"Bearer x"}}}
	ranges := []Range{{Off: 0, Len: 10}, {Off: 1000, Len: 150000}}

	target.RequireAuthorization("Bearer x")
	_, err := HTTP(context.Background(), redirect(target.URL).URL, auth)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "redirected to "+target.URL+", another origin") {
		t.Errorf("HTTP through a redirect to another port = %v, want a 401 that names the redirect: Authorization is not forwarded", err)
	}
	target.RequireAuthorization("")
	src := openHTTP(t, redirect(target.URL).URL, auth)
	if err := fetchAndCheck(context.Background(), src, payload, ranges); err != nil {
		t.Fatal(err)
	}
}
