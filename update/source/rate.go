package source

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// This file holds the minimum transfer rate of an HTTP source: the stall
// timeout ends an attempt that receives nothing for a while, but a server
// (or a middlebox) that sends a few bytes just before each timeout would
// keep an install busy for ever, resuming after every drop.

// ErrTooSlow is why a Fetch ended when its requests received less than
// HTTPOptions.MinRate bytes per second over HTTPOptions.MinRateWindow.
// It is not retried: the link or the server is too slow, not broken.
var ErrTooSlow = errors.New("the transfer is too slow")

// Default minimum rate. 512 bytes/s over 10 minutes is below the slowest
// cellular data links devices are updated over (GPRS on one time slot at
// its most robust coding scheme, 9 kbit/s, is about 1.1 kB/s), and over a
// window long enough for a link that comes and goes (a train in a
// tunnel: the stall timeout and the retries carry the transfer through
// gaps shorter than that); a link slower than that needs days for a
// bundle of a few tens of megabytes anyway, and sets its own (or none).
const (
	DefaultMinRate       = 512
	DefaultMinRateWindow = 10 * time.Minute
)

// rateSamples is how many times per window the rate guard samples.
const rateSamples = 20

// rateGuard watches the bytes an HTTP source receives during a Fetch. Its
// clock runs only while a request is running (waiting for or reading an
// answer, or backing off before a retry): time the caller spends writing
// what it was handed, with every request done and waiting to be handed
// out, does not count against the link.
type rateGuard struct {
	min     int64 // bytes per second
	window  time.Duration
	bytes   func() int64 // bytes received so far
	running atomic.Int64 // requests running
}

// rateGuard returns the guard of a Fetch, or nil without a minimum rate.
func (s *HTTPSource) rateGuard() *rateGuard {
	if s.o.MinRate < 0 {
		return nil
	}
	return &rateGuard{min: s.o.MinRate, window: s.o.MinRateWindow, bytes: s.fetched.Load}
}

// enter and leave count a request that runs (a nil guard does nothing).
func (g *rateGuard) enter() {
	if g != nil {
		g.running.Add(1)
	}
}

func (g *rateGuard) leave() {
	if g != nil {
		g.running.Add(-1)
	}
}

// run samples the bytes received every window/rateSamples while a
// request runs, and calls fail (then returns) when the last window of
// samples holds less than min bytes per second. It returns when ctx ends.
func (g *rateGuard) run(ctx context.Context, display string, fail func(error)) {
	t := time.NewTicker(g.window / rateSamples)
	defer t.Stop()
	var w rateWindow
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.running.Load() == 0 {
			continue // nothing is asked for: the clock stops
		}
		got, full := w.add(g.bytes(), rateSamples)
		if full && tooSlow(got, g.window, g.min) {
			fail(fmt.Errorf("%w: %s sent %d bytes in the last %v of transfer (%.0f bytes/s), below the minimum of %d bytes/s",
				ErrTooSlow, display, got, g.window, float64(got)/g.window.Seconds(), g.min))
			return
		}
	}
}

// rateWindow holds the byte counts of the last samples.
type rateWindow struct{ samples []int64 }

// add records a sample of the bytes received so far and returns the bytes
// received over the last n intervals, once there are n of them (full).
func (w *rateWindow) add(bytes int64, n int) (got int64, full bool) {
	w.samples = append(w.samples, bytes)
	if len(w.samples) > n+1 {
		w.samples = w.samples[len(w.samples)-n-1:]
	}
	if len(w.samples) < n+1 {
		return 0, false
	}
	return w.samples[n] - w.samples[0], true
}

// tooSlow reports whether got bytes over window are fewer than min bytes
// per second.
func tooSlow(got int64, window time.Duration, min int64) bool {
	return float64(got) < float64(min)*window.Seconds()
}
