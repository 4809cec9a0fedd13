// Package sourcetest serves update bundles over HTTP on 127.0.0.1 for
// tests: of package update/source's HTTP source, and of installs over
// HTTP (package update). It is a normal package so that tests of several
// packages can share it; only tests import it.
//
// NewServer is a Go server with HTTP Range support and the faults an
// HTTP source must survive (connections dropped or stalled mid-answer,
// error statuses, Range ignored, slow or late answers), which records what
// it saw (the Range headers, the body bytes it sent). Nginx starts a real
// nginx serving a directory, for a real server's Range support.
package sourcetest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server serves one payload over HTTP on 127.0.0.1 with Range support
// (one range per request, bytes=first-last), with faults set by its
// methods, and records what it saw (Stats). It is safe for concurrent use.
type Server struct {
	// URL is the payload's URL: the server answers every path with the
	// payload; URL names it /bundle.raucb.
	URL string

	payload []byte
	srv     *httptest.Server

	mu sync.Mutex
	// Faults.
	ignoreRange bool
	auth        string
	statuses    []int
	dropAfter   int64
	drops       int
	stallAfter  int64
	stalls      int
	// trickle: every body goes out chunk bytes per every (0: at once).
	chunk int
	every time.Duration
	delay func(first int64) time.Duration
	// What it saw.
	st       Stats
	inflight int
}

// Stats is what a Server saw since it started or since the last Reset.
type Stats struct {
	// Ranges is the Range header of every request, in the order they
	// arrived ("" for a request without one); Requests is len(Ranges).
	Ranges   []string
	Requests int
	// Served is the body bytes the server wrote, counted as they went
	// out (a dropped answer counts the bytes sent before the cut).
	Served int64
	// MaxInFlight is the most requests it was answering at once.
	MaxInFlight int
	// Unauthorized is the requests refused with 401 (RequireAuthorization).
	Unauthorized int
	// Dropped and Stalled are the answers cut by DropAfter and stalled by
	// StallAfter.
	Dropped, Stalled int
}

// NewServer starts a Server for payload; it is stopped when the test
// ends (connections still open are closed first).
func NewServer(t testing.TB, payload []byte) *Server {
	t.Helper()
	s := &Server{payload: payload}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		// A stalled answer waits for its client: close the connections
		// so that Close, which waits for every handler, returns.
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	s.URL = s.srv.URL + "/bundle.raucb"
	return s
}

// DropAfter makes the server cut the connection after n body bytes in
// each of the next k answers longer than n bytes (shorter answers are
// sent whole and do not count). A resumed request is such an answer too
// if what it asks for is longer than n.
func (s *Server) DropAfter(n int64, k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropAfter, s.drops = n, k
}

// StallAfter makes the server send n body bytes of each of the next k
// answers longer than n bytes, then nothing until the client leaves.
// Pending drops (DropAfter) come first.
func (s *Server) StallAfter(n int64, k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stallAfter, s.stalls = n, k
}

// IgnoreRange makes the server answer 200 with the whole payload to every
// request, as a server without Range support does (on: true), or honour
// Range again (false).
func (s *Server) IgnoreRange(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignoreRange = on
}

// RequireAuthorization makes the server answer 401 to requests whose
// Authorization header is not value ("": no header needed).
func (s *Server) RequireAuthorization(value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = value
}

// FailNext makes the server answer the next requests with these statuses,
// one each, in order (after the Authorization check), then serve again.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses = append([]int(nil), statuses...)
}

// Slow makes the server trickle every body, 4 KiB per 5 ms (about
// 800 kB/s per request), or stop trickling (false).
func (s *Server) Slow(on bool) {
	if on {
		s.Trickle(4<<10, 5*time.Millisecond)
	} else {
		s.Trickle(0, 0)
	}
}

// Trickle makes the server send every body chunk bytes at a time, one
// chunk per every: a slow link, or a server that keeps a client busy
// with a few bytes now and then. Trickle(0, 0) sends at once again.
func (s *Server) Trickle(chunk int, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chunk, s.every = chunk, every
}

// Delay makes the server wait f(first) after the headers of an answer
// whose body starts at byte first, before the body (nil: no wait).
func (s *Server) Delay(f func(first int64) time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = f
}

// Stats returns what the server saw since it started or since Reset.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Ranges = append([]string(nil), st.Ranges...)
	return st
}

// Reset forgets what the server saw (typically the size probe of a new
// source), not the faults still to come.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = Stats{}
}

// fault is what to do with one answer.
type fault int

const (
	answer fault = iota
	drop         // send cut bytes, then cut the connection
	stall        // send cut bytes, then nothing until the client leaves
)

// admit records a request and decides its fate: an error status, or
// answering with fault f after cut bytes.
func (s *Server) admit(r *http.Request, bodyLen int64) (status int, f fault, cut int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Ranges = append(s.st.Ranges, r.Header.Get("Range"))
	s.st.Requests++
	s.inflight++
	s.st.MaxInFlight = max(s.st.MaxInFlight, s.inflight)
	if s.auth != "" && r.Header.Get("Authorization") != s.auth {
		s.st.Unauthorized++
		return http.StatusUnauthorized, answer, 0, false
	}
	if len(s.statuses) > 0 {
		status, s.statuses = s.statuses[0], s.statuses[1:]
		return status, answer, 0, false
	}
	switch {
	case s.drops > 0 && bodyLen > s.dropAfter:
		s.drops--
		s.st.Dropped++
		return 0, drop, s.dropAfter, true
	case s.stalls > 0 && bodyLen > s.stallAfter:
		s.stalls--
		s.st.Stalled++
		return 0, stall, s.stallAfter, true
	}
	return 0, answer, 0, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	first, last, isRange := ParseRange(r.Header.Get("Range"))
	s.mu.Lock()
	ignore, chunk, every, delay := s.ignoreRange, s.chunk, s.every, s.delay
	s.mu.Unlock()
	size := int64(len(s.payload))
	if ignore || !isRange {
		first, last = 0, size-1
	}
	last = min(last, size-1)
	status, f, cut, ok := s.admit(r, last-first+1)
	// The request stops counting as in flight before its last byte goes
	// out: the client cannot start a request that waits for this one's
	// end before the server has counted this one out.
	var once sync.Once
	leave := func() {
		once.Do(func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
		})
	}
	defer leave()
	if !ok {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if first >= size {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		http.Error(w, "out of range", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(last-first+1, 10))
	if ignore || !isRange {
		w.WriteHeader(http.StatusOK)
	} else {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		w.WriteHeader(http.StatusPartialContent)
	}
	if delay != nil {
		time.Sleep(delay(first))
	}
	body := s.payload[first : last+1]
	switch f {
	case drop:
		s.write(w, r, body[:cut], 0, 0)
		panic(http.ErrAbortHandler) // the server cuts the connection
	case stall:
		s.write(w, r, body[:cut], 0, 0)
		<-r.Context().Done()
	default:
		s.write(w, r, body[:len(body)-1], chunk, every)
		leave()
		s.write(w, r, body[len(body)-1:], 0, 0)
	}
}

// write sends b in chunks, counting what went out, until the client
// leaves: chunk bytes per every, or 32 KiB chunks at once (chunk 0).
func (s *Server) write(w http.ResponseWriter, r *http.Request, b []byte, chunk int, every time.Duration) {
	slow := chunk > 0
	if !slow {
		chunk = 32 << 10
	}
	w.(http.Flusher).Flush() // the headers, even with no body bytes
	for len(b) > 0 {
		n, err := w.Write(b[:min(chunk, len(b))])
		s.mu.Lock()
		s.st.Served += int64(n)
		s.mu.Unlock()
		if err != nil {
			return
		}
		b = b[n:]
		w.(http.Flusher).Flush()
		if slow {
			select {
			case <-time.After(every):
			case <-r.Context().Done():
				return
			}
		}
	}
}

// ParseRange parses the one form of Range header the HTTP source sends,
// bytes=first-last; ok is false for anything else.
func ParseRange(h string) (first, last int64, ok bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first {
		return 0, 0, false
	}
	return first, last, true
}
