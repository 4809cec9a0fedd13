package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"
)

// HTTPOptions configures HTTP. The zero value is ready to use: a zero
// field takes its default.
type HTTPOptions struct {
	// CAFile is a PEM file of CA certificates trusted for https besides
	// the system's roots: a private update server's CA.
	CAFile string
	// Headers go with every request: an Authorization header, for
	// instance; but not past a redirect to another origin (scheme, host or
	// port): see the package documentation.
	Headers http.Header
	// Parallel is how many requests are in flight at once (default 4).
	// It also bounds memory: at most Parallel requests are buffered.
	Parallel int
	// MaxRequest is the most bytes one request asks for (default 8 MiB):
	// a longer run of adjacent ranges takes several requests. It is
	// rounded down to a multiple of 4096, and is at least 4096.
	MaxRequest int64
	// Retries is how many times in a row a request is retried after
	// failing (default 8; negative: never). An attempt that received
	// bytes before it failed starts the count and the back-off afresh: it
	// made progress, and the next one asks only for the rest.
	Retries int
	// Backoff is the wait before the first retry (default 200 ms),
	// doubled for each further one up to MaxBackoff (default 5 s).
	Backoff, MaxBackoff time.Duration
	// StallTimeout fails an attempt, to be retried, when no data arrives
	// for that long (default 30 s; negative: never), so that a dead
	// connection does not hang the install.
	StallTimeout time.Duration
	// MinRate ends a Fetch (ErrTooSlow, not retried) whose requests
	// received fewer than MinRate bytes per second over the last
	// MinRateWindow during which a request was running (default
	// DefaultMinRate and DefaultMinRateWindow; a negative MinRate: no
	// minimum). Time the callback spends with the bytes it was handed
	// does not count, so a slow target does not fail a fast link.
	MinRate       int64
	MinRateWindow time.Duration
	// Sleep waits before a retry (default: a timer that the context
	// interrupts). Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Client makes the requests (default: a client with the system's
	// roots plus CAFile and without transparent decompression). It cannot
	// be combined with CAFile: configure the client's TLS instead. The
	// source uses a copy of it whose CheckRedirect applies the redirect
	// policy first, then the client's own.
	Client *http.Client
	// Log, when set, gets a line for every retry. Requests run in
	// parallel, so it may be called from several goroutines at once.
	Log func(string)
}

// Defaults of HTTPOptions.
const (
	DefaultParallel     = 4
	DefaultMaxRequest   = 8 << 20
	DefaultRetries      = 8
	DefaultBackoff      = 200 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
	DefaultStallTimeout = 30 * time.Second
)

// withDefaults fills in the zero fields.
func (o HTTPOptions) withDefaults() HTTPOptions {
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = DefaultMaxRequest
	}
	// Pieces are cut at multiples of 4096 within a request, so requests
	// hold whole 4096-byte blocks.
	o.MaxRequest = max(4096, o.MaxRequest&^4095)
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.MinRate == 0 {
		o.MinRate = DefaultMinRate
	}
	if o.MinRateWindow <= 0 {
		o.MinRateWindow = DefaultMinRateWindow
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return o
}

// Stats counts what an HTTPSource's downloads took.
type Stats struct {
	// BytesFetched is the body bytes received, the size probe's byte
	// included. Resumed requests ask only for the missing bytes, so it
	// exceeds the bytes asked for only by what a server sent twice.
	BytesFetched int64
	// Requests is the requests sent, the size probe and retries included.
	Requests int64
	// Retries is the attempts that were retried after a failure.
	Retries int64
}

// HTTPSource is the Source that HTTP returns: a bundle on an HTTP(S)
// server that supports Range requests. It is safe for concurrent use.
type HTTPSource struct {
	url     string      // as given: where requests go
	display string      // the URL without its password, for messages
	o       HTTPOptions // defaults filled in
	client  *http.Client
	// transport is ours to close; nil when the caller gave the Client.
	transport *http.Transport
	size      int64

	fetched, requests, retries atomic.Int64
	closed                     atomic.Bool
	// droppedLogged: the log said once that a redirect dropped the
	// caller's headers.
	droppedLogged atomic.Bool
}

var _ Source = (*HTTPSource)(nil)

// HTTP opens the bundle at rawURL (http or https). It asks for the first
// byte to learn the size and to check that the server honours Range
// requests; see the package documentation. The Source is an *HTTPSource.
func HTTP(ctx context.Context, rawURL string, o HTTPOptions) (Source, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bundle URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bundle URL %s: want http:// or https:// and a host", u.Redacted())
	}
	s := &HTTPSource{url: rawURL, display: u.Redacted(), o: o.withDefaults()}
	if err := s.makeClient(); err != nil {
		return nil, err
	}
	if err := s.probe(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// makeClient sets up the client: the caller's, or one trusting CAFile.
func (s *HTTPSource) makeClient() error {
	if s.o.Client != nil {
		if s.o.CAFile != "" {
			return errors.New("HTTPOptions: CAFile and Client are both set: give the client the CA instead")
		}
		// A copy, sharing the caller's transport, with the redirect
		// policy in front of the client's own.
		c := *s.o.Client
		c.CheckRedirect = s.checkRedirect(s.o.Client.CheckRedirect)
		s.client = &c
		return nil
	}
	roots, err := rootsWith(s.o.CAFile)
	if err != nil {
		return err
	}
	t := http.DefaultTransport.(*http.Transport).Clone() // proxies from the environment, HTTP/2
	t.TLSClientConfig = &tls.Config{RootCAs: roots}
	// Byte ranges are of the file as stored: a transparently decompressed
	// body would not be the bundle's bytes.
	t.DisableCompression = true
	t.MaxIdleConnsPerHost = s.o.Parallel
	s.transport = t
	s.client = &http.Client{Transport: t, CheckRedirect: s.checkRedirect(nil)}
	return nil
}

// CAPool is the system's root certificates plus those in caFile; nil (the
// system's roots) when caFile is "": what an https source trusts.
func CAPool(caFile string) (*x509.CertPool, error) { return rootsWith(caFile) }

// rootsWith is the system's root certificates plus those in caFile; nil
// (the system's roots) when caFile is "".
func rootsWith(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system roots here: trust the CA file alone
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// probe asks for byte 0 to learn the bundle's size and to prove that the
// server answers Range requests with 206.
func (s *HTTPSource) probe(ctx context.Context) error {
	return s.retry(ctx, s.what(0, 0), func(ctx context.Context) (bool, error) {
		ctx, stop, _ := s.stallGuard(ctx)
		defer stop()
		resp, err := s.get(ctx, 0, 0)
		if err != nil {
			return false, stalled(ctx, err)
		}
		defer resp.Body.Close()
		size, err := checkPart(resp, 0, 0)
		if err != nil {
			return false, err
		}
		if size < 0 {
			return false, permanent(fmt.Errorf("the server does not tell the bundle's size (Content-Range %q)", resp.Header.Get("Content-Range")))
		}
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 2))
		s.fetched.Add(n)
		switch {
		case err != nil:
			return n > 0, stalled(ctx, err)
		case n != 1:
			return false, permanent(fmt.Errorf("the server sent %d bytes for the 1 asked", n))
		}
		s.size = size
		return true, nil
	})
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Size is the bundle's size, from the server's Content-Range.
func (s *HTTPSource) Size() int64 { return s.size }

// Stats is what the downloads took so far.
func (s *HTTPSource) Stats() Stats {
	return Stats{BytesFetched: s.fetched.Load(), Requests: s.requests.Load(), Retries: s.retries.Load()}
}

// Close closes idle connections (when the client is ours); Fetch then
// fails.
func (s *HTTPSource) Close() error {
	s.closed.Store(true)
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

func (s *HTTPSource) logf(format string, args ...any) {
	if s.o.Log != nil {
		s.o.Log(fmt.Sprintf(format, args...))
	}
}
