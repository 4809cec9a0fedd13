package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// This file holds one HTTP attempt and its retries: the request, the
// checks on the answer, and which failures are worth another try.

// what names a request in errors and log lines.
func (s *HTTPSource) what(first, last int64) string {
	return fmt.Sprintf("GET %s bytes %d-%d", s.display, first, last)
}

// get asks for bytes first-last and returns the answer if it is a 206;
// any other status is an error, retryable or not.
func (s *HTTPSource) get(ctx context.Context, first, last int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, permanent(err)
	}
	if s.o.Headers != nil {
		req.Header = s.o.Headers.Clone()
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	// Asking for identity also stops a caller's client from adding gzip
	// and decompressing behind our back.
	req.Header.Set("Accept-Encoding", "identity")
	s.requests.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		if isCertError(err) || errors.Is(err, ErrRedirect) {
			// The next try will not trust it more, nor be sent
			// elsewhere.
			return nil, permanent(err)
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusPartialContent {
		return resp, nil
	}
	resp.Body.Close()
	return nil, s.statusError(resp)
}

// statusError explains an answer other than 206; 5xx, 408 and 429 are
// worth retrying, the others are not.
func (s *HTTPSource) statusError(resp *http.Response) error {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		return &permanentError{named: true, err: fmt.Errorf("the server at %s answered 200 to a Range request: it does not support range requests, which streaming needs (RAUC needs the same); serve the bundle from a server with range support, or download it and install the file", s.display)}
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return fmt.Errorf("the server answered %s", resp.Status)
	}
	return permanent(fmt.Errorf("the server answered %s%s%s", resp.Status, statusHint(code), s.redirectNote(resp)))
}

// redirectNote says that an answer came from another origin than the
// URL's, which got none of the caller's headers: the likely cause of a 401
// or 403 there.
func (s *HTTPSource) redirectNote(resp *http.Response) string {
	if resp.Request == nil || len(s.o.Headers) == 0 {
		return ""
	}
	u, err := url.Parse(s.url)
	if err != nil || origin(u) == origin(resp.Request.URL) {
		return ""
	}
	return fmt.Sprintf("; it was redirected to %s, another origin, which gets none of the headers given (give that URL instead)", resp.Request.URL.Redacted())
}

func statusHint(code int) string {
	switch code {
	case http.StatusNotFound, http.StatusGone:
		return " (no bundle at that URL)"
	case http.StatusUnauthorized, http.StatusForbidden:
		return " (check the credentials, such as an Authorization header)"
	case http.StatusRequestedRangeNotSatisfiable:
		return " (is the bundle empty?)"
	}
	return ""
}

// isCertError reports a certificate the client does not trust.
func isCertError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}

// checkPart checks that a 206 answer holds exactly bytes first-last,
// unencoded, and returns the bundle size it states (-1: "*").
func checkPart(resp *http.Response, first, last int64) (size int64, err error) {
	cr := resp.Header.Get("Content-Range")
	f, l, size, err := parseContentRange(cr)
	if err != nil {
		return 0, permanent(err)
	}
	if f != first || l != last {
		return 0, permanent(fmt.Errorf("the answer holds bytes %d-%d (Content-Range %q), not the %d-%d asked", f, l, cr, first, last))
	}
	if n := resp.ContentLength; n >= 0 && n != last-first+1 {
		return 0, permanent(fmt.Errorf("the answer's Content-Length is %d for %d bytes asked", n, last-first+1))
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return 0, permanent(fmt.Errorf("the answer is %s-encoded: its ranges are not the bundle's bytes", ce))
	}
	return size, nil
}

// parseContentRange parses "bytes FIRST-LAST/SIZE" (RFC 9110 14.4); size
// is -1 for "*".
func parseContentRange(s string) (first, last, size int64, err error) {
	bad := func() (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q in a 206 answer", s)
	}
	spec, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return bad()
	}
	rng, total, ok := strings.Cut(spec, "/")
	if !ok {
		return bad()
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad()
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
		return bad()
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
		return bad()
	}
	if total == "*" {
		return first, last, -1, nil
	}
	if size, err = strconv.ParseInt(total, 10, 64); err != nil || size <= last {
		return bad()
	}
	return first, last, size, nil
}

// permanentError marks a failure that a retry would only repeat.
type permanentError struct {
	err error
	// named: the message names the URL already, so retry adds nothing.
	named bool
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err: err} }

// retry runs attempt until it succeeds, fails for good, or has failed
// o.Retries+1 times in a row. An attempt that made progress (received
// bytes) resets the count: the next one asks only for the rest, so a
// transfer that keeps moving is never given up on, and one that is stuck
// is given up on after the same number of tries wherever it is stuck.
func (s *HTTPSource) retry(ctx context.Context, what string, attempt func(context.Context) (progress bool, err error)) error {
	failures := 0
	for {
		progress, err := attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if p := (*permanentError)(nil); errors.As(err, &p) {
			if p.named {
				return p.err
			}
			return fmt.Errorf("%s: %w", what, p.err)
		}
		if progress {
			failures = 0
		}
		failures++
		if failures > s.o.Retries {
			return fmt.Errorf("%s: gave up after %d failed attempts in a row: %w", what, failures, err)
		}
		d := s.backoff(failures)
		s.retries.Add(1)
		s.logf("%s: %v; retry %d of %d in %v", what, err, failures, s.o.Retries, d)
		if err := s.o.Sleep(ctx, d); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

// backoff is the wait before the n-th retry in a row: Backoff doubled
// n-1 times, at most MaxBackoff.
func (s *HTTPSource) backoff(n int) time.Duration {
	d := s.o.Backoff
	for i := 1; i < n && d < s.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.o.MaxBackoff)
}

// errStalled is the cause of an attempt the stall guard ended.
var errStalled = errors.New("the transfer stalled")

// stallGuard gives an attempt a context that ends when no data arrived
// for StallTimeout; kick restarts the clock, stop releases the guard. A
// dead peer (a cable pulled mid-transfer) would otherwise block a read for
// as long as TCP keeps the connection open.
func (s *HTTPSource) stallGuard(ctx context.Context) (_ context.Context, stop, kick func()) {
	d := s.o.StallTimeout
	if d < 0 {
		return ctx, func() {}, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(d, func() { cancel(fmt.Errorf("%w: no data for %v", errStalled, d)) })
	return ctx, func() { t.Stop(); cancel(nil) }, func() { t.Reset(d) }
}

// stalled replaces the error of an attempt that the stall guard ended by
// the reason, which reads better than "context canceled".
func stalled(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return cause
	}
	return err
}
