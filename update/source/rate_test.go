package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelboot/keel/update/source/sourcetest"
)

func TestRateWindow(t *testing.T) {
	var w rateWindow
	for i, tc := range []struct {
		bytes int64
		got   int64
		full  bool
	}{
		{0, 0, false}, {10, 0, false}, {30, 30, true}, {30, 20, true}, {100, 70, true},
	} {
		got, full := w.add(tc.bytes, 2)
		if got != tc.got || full != tc.full {
			t.Errorf("sample %d: add(%d) = %d, %v; want %d, %v", i, tc.bytes, got, full, tc.got, tc.full)
		}
	}
	for _, tc := range []struct {
		got    int64
		window time.Duration
		min    int64
		slow   bool
	}{
		{5119, 10 * time.Second, 512, true},
		{5120, 10 * time.Second, 512, false},
		{0, time.Second, 1, true},
		{1 << 40, DefaultMinRateWindow, DefaultMinRate, false},
	} {
		if got := tooSlow(tc.got, tc.window, tc.min); got != tc.slow {
			t.Errorf("tooSlow(%d, %v, %d) = %v", tc.got, tc.window, tc.min, got)
		}
	}
}

// TestHTTPMinRate: a server that trickles (100 bytes every 20 ms, 5 kB/s,
// each chunk well within the stall timeout) fails a Fetch with ErrTooSlow
// naming the rate, one window after it started, not retried; at a rate
// above the minimum the Fetch completes; with MinRate -1 there is none.
func TestHTTPMinRate(t *testing.T) {
	payload := testPayload(1 << 20)
	s := sourcetest.NewServer(t, payload)
	base := runtime.NumGoroutine()
	const window = 400 * time.Millisecond
	src := openHTTP(t, s.URL, HTTPOptions{MinRate: 20000, MinRateWindow: window, Sleep: noSleep})
	s.Trickle(100, 20*time.Millisecond)
	s.Reset()
	start := time.Now()
	err := src.Fetch(context.Background(), []Range{{Off: 0, Len: 1 << 20}}, func(int64, []byte) error { return nil })
	took := time.Since(start)
	if !errors.Is(err, ErrTooSlow) || !strings.Contains(err.Error(), "below the minimum of 20000 bytes/s") || !strings.Contains(err.Error(), "in the last 400ms of transfer") {
		t.Fatalf("Fetch from a trickling server = %v, want ErrTooSlow naming the rate", err)
	}
	t.Logf("%v after %v", err, took)
	if took < window || took > window+2*time.Second {
		t.Errorf("Fetch gave up after %v, want about the %v window", took, window)
	}
	if st := src.Stats(); st.Retries != 0 {
		t.Errorf("a too slow transfer was retried %d times", st.Retries)
	}
	src.Close()
	waitGoroutines(t, base)

	// Above the minimum: 4 KiB per 5 ms is about 800 kB/s.
	s.Trickle(4<<10, 5*time.Millisecond)
	src = openHTTP(t, s.URL, HTTPOptions{MinRate: 20000, MinRateWindow: window})
	if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 0, Len: 256 << 10}}); err != nil {
		t.Fatal(err)
	}
	// No minimum: the trickle goes on until the caller's deadline.
	s.Trickle(100, 20*time.Millisecond)
	src = openHTTP(t, s.URL, HTTPOptions{MinRate: -1, MinRateWindow: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	if err := src.Fetch(ctx, []Range{{Off: 0, Len: 1 << 20}}, func(int64, []byte) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch without a minimum rate = %v, want the caller's deadline", err)
	}
}

// TestHTTPMinRateSlowTarget: the clock stops while the caller writes what
// it was handed (every request done): a target slower than the minimum
// rate, over several windows, does not fail a link faster than it.
func TestHTTPMinRateSlowTarget(t *testing.T) {
	payload := testPayload(256 << 10)
	s := sourcetest.NewServer(t, payload)
	s.Trickle(4<<10, 5*time.Millisecond) // about 800 kB/s
	src := openHTTP(t, s.URL, HTTPOptions{MinRate: 100000, MinRateWindow: 200 * time.Millisecond, Parallel: 1, MaxRequest: 128 << 10})
	c := newChecker(payload, []Range{{Off: 0, Len: 256 << 10}})
	err := src.Fetch(context.Background(), []Range{{Off: 0, Len: 256 << 10}}, func(off int64, b []byte) error {
		time.Sleep(500 * time.Millisecond) // two and a half windows of writing
		return c.fn(off, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.done(); err != nil {
		t.Fatal(err)
	}
}

// TestStreamGivesUpOnContext: a pipe whose writer trickles (or holds it
// open) does not hold Fetch past the context: it returns the context's
// cause, and the stream fails from then on.
func TestStreamGivesUpOnContext(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	go w.Write(make([]byte, 5000)) // then nothing, and no EOF
	src := Stream(r, "standard input")
	why := errors.New("the install took longer than --timeout")
	ctx, cancel := context.WithTimeoutCause(context.Background(), 300*time.Millisecond, why)
	defer cancel()
	start := time.Now()
	err = src.Fetch(ctx, []Range{{Off: 0, Len: 1 << 20}}, func(int64, []byte) error { return nil })
	if !errors.Is(err, why) || time.Since(start) > 2*time.Second {
		t.Errorf("Fetch = %v after %v, want the context's cause at once", err, time.Since(start))
	}
	if err := src.Fetch(context.Background(), []Range{{Off: 1 << 20, Len: 10}}, func(int64, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "cannot be read further") {
		t.Errorf("Fetch after a given-up read = %v", err)
	}
}

// TestStreamDrain: after the ranges asked for, Drain reads a pipe to its
// end, so its writer (a real process) finishes without EPIPE or SIGPIPE;
// input past the bound, a writer that holds the pipe open, and the
// context end the drain with an error, having read at most the bound.
func TestStreamDrain(t *testing.T) {
	payload := bytes.Repeat([]byte("keel bundle "), 300000) // 3.6 MB, far more than a pipe holds
	file := t.TempDir() + "/bundle"
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, drain bool) error {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cat := exec.Command("cat", file)
		cat.Stdout = w
		if err := cat.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		src := Stream(r, "standard input")
		if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 100, Len: 1000}, {Off: 1 << 20, Len: 4096}}); err != nil {
			t.Fatal(err)
		}
		if drain {
			n, err := src.(Drainer).Drain(context.Background(), int64(len(payload)), 5*time.Second)
			if err != nil || n != int64(len(payload))-(1<<20+4096) {
				t.Errorf("Drain = %d, %v; want the %d bytes left", n, err, len(payload)-(1<<20+4096))
			}
		}
		r.Close() // the reader exits
		return cat.Wait()
	}
	if err := run(t, true); err != nil {
		t.Errorf("cat after a drained read: %v, want success", err)
	}
	// Without the drain the writer dies of SIGPIPE: what the drain is for.
	err := run(t, false)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGPIPE {
		t.Errorf("cat after an undrained read: %v, want SIGPIPE", err)
	}

	// More than the bound: it stops one byte past it.
	src := Stream(bytes.NewReader(payload), "standard input")
	n, err := src.(Drainer).Drain(context.Background(), 1000, time.Second)
	if !errors.Is(err, ErrNotDrained) || n != 1001 {
		t.Errorf("Drain past the bound = %d, %v; want 1001 bytes and ErrNotDrained", n, err)
	}
	// A writer that holds the pipe open: the stall ends the drain.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	w.Write([]byte("tail"))
	start := time.Now()
	n, err = Stream(r, "standard input").(Drainer).Drain(context.Background(), 1<<20, 200*time.Millisecond)
	if n != 4 || err == nil || !strings.Contains(err.Error(), "no data for 200ms") || time.Since(start) > 2*time.Second {
		t.Errorf("Drain of a pipe held open = %d, %v after %v", n, err, time.Since(start))
	}
	// The context's end.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Stream(io.MultiReader(r), "x").(Drainer).Drain(ctx, 10, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain with an ended context = %v", err)
	}
}
