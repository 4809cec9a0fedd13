package source

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

// rangeServer serves a payload over HTTP on 127.0.0.1 with Range support,
// the faults the HTTP source must survive, and a record of what it saw.
type rangeServer struct {
	payload []byte
	srv     *httptest.Server
	url     string

	mu sync.Mutex
	// Faults; change them with set.
	ignoreRange bool   // answer 200 with the whole payload
	auth        string // the Authorization header required
	statuses    []int  // answered first, one per request
	dropAfter   int64  // a dropped answer ends after this many body bytes
	drops       int    // answers still to drop (only those longer than dropAfter)
	stalls      int    // answers still to stall after dropAfter bytes
	slow        bool   // trickle every body, 4 KiB per 5 ms
	delay       func(first int64) time.Duration
	// What it saw.
	ranges       []string // the Range header of every request
	served       int64    // body bytes written
	inflight     int
	maxInflight  int
	unauthorized int
}

func newRangeServer(t *testing.T, payload []byte) *rangeServer {
	s := &rangeServer{payload: payload}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	s.url = s.srv.URL + "/bundle.raucb"
	return s
}

// set changes faults under the lock.
func (s *rangeServer) set(f func(s *rangeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// reset forgets what the server saw (the size probe, typically).
func (s *rangeServer) reset() {
	s.set(func(s *rangeServer) { s.ranges, s.served, s.maxInflight, s.unauthorized = nil, 0, 0, 0 })
}

// seen returns the Range headers seen and the body bytes served.
func (s *rangeServer) seen() ([]string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...), s.served
}

// fault is what to do with one answer.
type fault int

const (
	answer fault = iota
	drop         // send dropAfter bytes, then cut the connection
	stall        // send dropAfter bytes, then nothing until the client leaves
)

// admit records a request and decides its fate: an error status, or
// answering with fault f after cut bytes.
func (s *rangeServer) admit(r *http.Request, bodyLen int64) (status int, f fault, cut int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	if s.auth != "" && r.Header.Get("Authorization") != s.auth {
		s.unauthorized++
		return http.StatusUnauthorized, answer, 0, false
	}
	if len(s.statuses) > 0 {
		status, s.statuses = s.statuses[0], s.statuses[1:]
		return status, answer, 0, false
	}
	switch {
	case bodyLen <= s.dropAfter:
	case s.drops > 0:
		s.drops--
		f = drop
	case s.stalls > 0:
		s.stalls--
		f = stall
	}
	return 0, f, s.dropAfter, true
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	first, last, isRange := parseRangeHeader(r.Header.Get("Range"))
	s.mu.Lock()
	ignore, slow, delay := s.ignoreRange, s.slow, s.delay
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
	leave := func() { once.Do(func() { s.set(func(s *rangeServer) { s.inflight-- }) }) }
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
		s.write(w, r, body[:cut], false)
		panic(http.ErrAbortHandler) // the server cuts the connection
	case stall:
		s.write(w, r, body[:cut], false)
		<-r.Context().Done()
	default:
		s.write(w, r, body[:len(body)-1], slow)
		leave()
		s.write(w, r, body[len(body)-1:], false)
	}
}

// write sends b in chunks, counting what went out, until the client
// leaves.
func (s *rangeServer) write(w http.ResponseWriter, r *http.Request, b []byte, slow bool) {
	chunk := 32 << 10
	if slow {
		chunk = 4 << 10
	}
	w.(http.Flusher).Flush() // the headers, even with no body bytes
	for len(b) > 0 {
		n, err := w.Write(b[:min(chunk, len(b))])
		s.set(func(s *rangeServer) { s.served += int64(n) })
		if err != nil {
			return
		}
		b = b[n:]
		w.(http.Flusher).Flush()
		if slow {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}
}

// parseRangeHeader parses the one form the source sends: bytes=a-b.
func parseRangeHeader(h string) (first, last int64, ok bool) {
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
	if err1 != nil || err2 != nil || last < first {
		return 0, 0, false
	}
	return first, last, true
}
