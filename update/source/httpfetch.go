package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/keelboot/keel/format/bundle"
)

// readChunk is the most bytes read from a body before the progress is
// published, so that the first piece goes out before the request ends.
const readChunk = 256 << 10

// request is one Range request of a Fetch: a run of adjacent pieces. Its
// own goroutine fills buf, resuming after failures, while Fetch's
// goroutine hands the pieces to fn as soon as they are complete.
type request struct {
	off, len int64
	pieces   []piece
	buf      []byte // len bytes, set before the goroutine starts

	mu   sync.Mutex
	got  int64 // bytes of buf filled; only grows
	done bool
	err  error         // why it failed, once done
	wake chan struct{} // holds a token when got or done changed
}

func (r *request) end() int64 { return r.off + r.len }

// plan cuts ranges into pieces and groups adjacent ones into requests of
// at most maxReq bytes. Pieces are at most min(PieceSize, maxReq) long,
// counted from their range's start, so each lies within one request and
// the piece rules hold wherever requests are cut.
func plan(ranges []Range, maxReq int64) []*request {
	var reqs []*request
	var cur *request
	for _, r := range ranges {
		for _, p := range pieces(r, min(PieceSize, maxReq)) {
			if cur == nil || p.off != cur.end() || cur.len+p.len > maxReq {
				cur = &request{off: p.off, wake: make(chan struct{}, 1)}
				reqs = append(reqs, cur)
			}
			cur.pieces = append(cur.pieces, p)
			cur.len += p.len
		}
	}
	return reqs
}

// Fetch implements Source. Up to Parallel requests run at once: the one
// whose pieces are being handed out and the ones after it. The next one
// starts only when a request has been handed out completely, which
// bounds the buffered bytes to Parallel requests, however slow fn is.
func (s *HTTPSource) Fetch(ctx context.Context, ranges []Range, fn func(off int64, b []byte) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: the source is closed", s.display)
	}
	if err := bundle.CheckRanges(s.display, ranges, s.size); err != nil {
		return err
	}
	reqs := plan(ranges, s.o.MaxRequest)

	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	// On the way out, stop the requests still running and wait for them:
	// Fetch leaves no goroutine behind and no write into a buffer.
	defer wg.Wait()
	defer cancel(nil)
	guard := s.rateGuard()
	if guard != nil {
		wg.Go(func() { guard.run(ctx, s.display, cancel) })
	}

	var free [][]byte // buffers of requests handed out, for reuse
	started := 0
	for i, r := range reqs {
		for ; started < len(reqs) && started < i+s.o.Parallel; started++ {
			next := reqs[started]
			next.buf = takeBuffer(&free, next.len)
			guard.enter()
			wg.Go(func() {
				defer guard.leave()
				next.finish(s.retry(ctx, s.what(next.off, next.end()-1), func(ctx context.Context) (bool, error) {
					return s.fill(ctx, next)
				}))
			})
		}
		if err := r.deliver(ctx, fn); err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrTooSlow) {
				return cause // the guard's reason, not "context canceled"
			}
			return err
		}
		free = append(free, r.buf)
		r.buf = nil
	}
	return nil
}

// takeBuffer reuses the buffer of a request handed out when it is large
// enough, so that a long Fetch allocates about Parallel buffers, not one
// per request. An undersized one is dropped, keeping the count bounded.
func takeBuffer(free *[][]byte, n int64) []byte {
	if k := len(*free); k > 0 {
		b := (*free)[k-1]
		*free = (*free)[:k-1]
		if int64(cap(b)) >= n {
			return b[:n]
		}
	}
	return make([]byte, n)
}

// fill is one attempt at the rest of r: it asks for the bytes not
// received yet, so a resumed request neither fetches nor delivers a byte
// twice, and reads them into r.buf, publishing its progress as it goes.
func (s *HTTPSource) fill(ctx context.Context, r *request) (progress bool, err error) {
	got := r.received()
	first, last := r.off+got, r.end()-1
	ctx, stop, kick := s.stallGuard(ctx)
	defer stop()
	resp, err := s.get(ctx, first, last)
	if err != nil {
		return false, stalled(ctx, err)
	}
	defer resp.Body.Close()
	size, err := checkPart(resp, first, last)
	if err != nil {
		return false, err
	}
	if size != s.size {
		return false, permanent(fmt.Errorf("the bundle changed on the server: it has %d bytes now, %d before", size, s.size))
	}
	for got < r.len {
		n, err := resp.Body.Read(r.buf[got:min(got+readChunk, r.len)])
		if n > 0 {
			got += int64(n)
			progress = true
			s.fetched.Add(int64(n))
			kick()
			r.publish(got)
		}
		if got == r.len {
			break
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a body cut short
		}
		if err != nil {
			return progress, fmt.Errorf("at byte %d: %w", r.off+got, stalled(ctx, err))
		}
	}
	if overlong(resp.Body) {
		return progress, permanent(fmt.Errorf("the server sent more than the %d bytes asked", last-first+1))
	}
	return progress, nil
}

// overlong reports whether a body has bytes after those asked for.
// net/http cuts a body at its Content-Length, so this catches chunked
// answers.
func overlong(body io.Reader) bool {
	var b [1]byte
	n, _ := io.ReadFull(body, b[:])
	return n > 0
}

func (r *request) received() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

func (r *request) publish(got int64) {
	r.mu.Lock()
	r.got = got
	r.mu.Unlock()
	r.signal()
}

func (r *request) finish(err error) {
	r.mu.Lock()
	r.done, r.err = true, err
	r.mu.Unlock()
	r.signal()
}

// signal wakes the waiter, if any; a token already there will do.
func (r *request) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// wait blocks until r has received need bytes, or, with need < 0, until
// it is done, and returns its error if it failed first.
func (r *request) wait(ctx context.Context, need int64) error {
	for {
		r.mu.Lock()
		got, done, err := r.got, r.done, r.err
		r.mu.Unlock()
		switch {
		case need >= 0 && got >= need:
			return nil
		case done:
			return err
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deliver hands r's pieces to fn as they complete, then waits for r's
// verdict on the rest of its answer (a body longer than asked fails).
func (r *request) deliver(ctx context.Context, fn func(off int64, b []byte) error) error {
	for _, p := range r.pieces {
		if err := r.wait(ctx, p.end()-r.off); err != nil {
			return err
		}
		if err := fn(p.off, r.buf[p.off-r.off:p.end()-r.off]); err != nil {
			return err
		}
	}
	return r.wait(ctx, -1)
}
