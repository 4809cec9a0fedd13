package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDecideRedirect(t *testing.T) {
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	chain := func(s ...string) []*url.URL {
		var c []*url.URL
		for _, x := range s {
			c = append(c, u(x))
		}
		return c
	}
	loop := make([]string, MaxRedirects+1) // the first request and 10 redirects
	for i := range loop {
		loop[i] = "http://h/loop"
	}
	const keep, drop, refuse = "keep", "drop", "refuse"
	for _, tc := range []struct {
		name  string
		chain []string
		next  string
		want  string
		why   string // a piece of the refusal
	}{
		{"same origin, another path", []string{"https://h/a"}, "https://h/b?x=1", keep, ""},
		{"default port made explicit", []string{"http://h/a"}, "http://h:80/b", keep, ""},
		{"https default port", []string{"https://h:443/a"}, "https://h/b", keep, ""},
		{"case of scheme and host", []string{"HTTPS://Updates.Example/a"}, "https://updates.example/b", keep, ""},
		{"relative redirect resolved", []string{"http://h:8080/a", "http://h:8080/b"}, "http://h:8080/c", keep, ""},
		{"another host", []string{"https://h/a"}, "https://cdn.example/b", drop, ""},
		{"a subdomain is another host", []string{"https://example.com/a"}, "https://cdn.example.com/b", drop, ""},
		{"another port", []string{"https://h/a"}, "https://h:8443/b", drop, ""},
		{"http to https, same host and port", []string{"http://h:8080/a"}, "https://h:8080/b", drop, ""},
		{"http to https, default ports", []string{"http://h/a"}, "https://h/b", drop, ""},
		{"back to the first origin", []string{"https://h/a", "https://cdn/b"}, "https://h/c", drop, ""},
		{"https to http, same host", []string{"https://h/a"}, "http://h/b", refuse, "from https to http"},
		{"https to http, another host", []string{"http://h/a", "https://h2/b"}, "http://h3/c", refuse, "from https to http"},
		{"file", []string{"http://h/a"}, "file:///etc/shadow", refuse, "only http:// and https://"},
		{"ftp", []string{"https://h/a"}, "ftp://h/b", refuse, "only http:// and https://"},
		{"a loop", loop, "http://h/loop", refuse, fmt.Sprintf("stopped after %d redirects", MaxRedirects)},
		{"one short of the limit", loop[1:], "http://h/loop", keep, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := decideRedirect(chain(tc.chain...), u(tc.next))
			got := keep
			switch {
			case st.err != nil:
				got = refuse
			case !st.keepHeaders:
				got = drop
			}
			if got != tc.want {
				t.Fatalf("%s, want %s (%v)", got, tc.want, st.err)
			}
			if st.err != nil && (!errors.Is(st.err, ErrRedirect) || !strings.Contains(st.err.Error(), tc.why)) {
				t.Errorf("refusal %v, want ErrRedirect saying %q", st.err, tc.why)
			}
		})
	}
}

// seenRequest is what a redirectServer saw of one request.
type seenRequest struct {
	host, path, auth, key, cookie string
}

// redirectServer serves payload (with Range support, or without:
// ignoreRange) on every path but /go?to=URL, which redirects to URL, and
// /loop, which redirects to itself; it records the headers that matter.
type redirectServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newRedirectServer(t *testing.T, payload []byte, tlsOn, ignoreRange bool) *redirectServer {
	s := &redirectServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, seenRequest{r.Host, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), r.Header.Get("Cookie")})
		s.mu.Unlock()
		switch {
		case r.URL.Path == "/go":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		case r.URL.Path == "/loop":
			http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
		case ignoreRange:
			w.Write(payload)
		default:
			http.ServeContent(w, r, "bundle", time.Time{}, bytes.NewReader(payload))
		}
	})
	if tlsOn {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

// requests returns what the server saw for path.
func (s *redirectServer) requests(path string) []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r []seenRequest
	for _, q := range s.seen {
		if q.path == path {
			r = append(r, q)
		}
	}
	return r
}

func (s *redirectServer) port() string { return s.URL[strings.LastIndex(s.URL, ":")+1:] }

// url is the server's URL under another host name (example.com is in the
// test certificate; redirectClient dials it at 127.0.0.1).
func (s *redirectServer) url(host string) string {
	u, _ := url.Parse(s.URL)
	u.Host = net.JoinHostPort(host, s.port())
	return u.String()
}

// goTo is a URL of from that redirects to to.
func goTo(from, to string) string { return from + "/go?to=" + url.QueryEscape(to) }

// redirectClient trusts the test servers' certificate and reaches
// example.com at 127.0.0.1: another host, on the same machine.
func redirectClient(t *testing.T, srv *httptest.Server) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: pool},
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err == nil && host == "example.com" {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestHTTPRedirectCredentials: the headers the caller gives (a custom one
// and Authorization) follow a redirect only within the first URL's origin
// (scheme, host, port); https to http, schemes other than http(s) and
// loops are refused at once, never retried; Range requests keep working
// through a redirect, and a target that ignores Range is refused.
func TestHTTPRedirectCredentials(t *testing.T) {
	payload := testPayload(300000)
	plain := newRedirectServer(t, payload, false, false)
	plain2 := newRedirectServer(t, payload, false, false)
	secure := newRedirectServer(t, payload, true, false)
	secure2 := newRedirectServer(t, payload, true, false)
	noRange := newRedirectServer(t, payload, false, true)
	const token = "Bearer s3cret"
	hdr := http.Header{"Authorization": {token}, "X-Api-Key": {"key-1"}, "Cookie": {"session=c"}}
	ranges := []Range{{Off: 0, Len: 10}, {Off: 5000, Len: 100000}, {Off: 200000, Len: 100000}}

	for _, tc := range []struct {
		name   string
		start  string
		target *redirectServer // where /bundle is fetched from
		keep   bool
		err    string // a piece of the error: refused
		asked  *redirectServer
		nAsked int // requests the asked server saw: 1, not retried
	}{
		{name: "same origin http", start: goTo(plain.URL, plain.URL+"/bundle"), target: plain, keep: true},
		{name: "same origin https", start: goTo(secure.URL, secure.URL+"/bundle"), target: secure, keep: true},
		{name: "same origin by a relative redirect", start: goTo(secure.URL, "/bundle"), target: secure, keep: true},
		{name: "another host, same port, http", start: goTo(plain.URL, plain.url("example.com")+"/bundle"), target: plain},
		{name: "another host, same port, https", start: goTo(secure.URL, secure.url("example.com")+"/bundle"), target: secure},
		{name: "another port, http", start: goTo(plain.URL, plain2.URL+"/bundle"), target: plain2},
		{name: "another port, https", start: goTo(secure.URL, secure2.URL+"/bundle"), target: secure2},
		{name: "http to https", start: goTo(plain.URL, secure.URL+"/bundle"), target: secure},
		{name: "away and back", start: goTo(plain.URL, goTo(plain2.URL, plain.URL+"/bundle")), target: plain},
		{name: "https to http, same host", start: goTo(secure.URL, plain.URL+"/bundle"), target: plain,
			err: "from https to http", asked: secure, nAsked: 1},
		{name: "file", start: goTo(plain.URL, "file:///etc/passwd"), err: "only http:// and https://", asked: plain, nAsked: 1},
		{name: "a loop", start: plain.URL + "/loop", err: "stopped after 10 redirects", asked: plain, nAsked: MaxRedirects + 1},
		{name: "a target without Range support", start: goTo(plain.URL, noRange.URL+"/bundle"),
			err: "answered 200 to a Range request", asked: noRange, nAsked: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range []*redirectServer{plain, plain2, secure, secure2, noRange} {
				s.mu.Lock()
				s.seen = nil
				s.mu.Unlock()
			}
			var logged []string
			var mu sync.Mutex
			o := HTTPOptions{Headers: hdr.Clone(), Client: redirectClient(t, secure.Server), Parallel: 2, MaxRequest: 64 << 10,
				Sleep: noSleep, Log: func(l string) { mu.Lock(); logged = append(logged, l); mu.Unlock() }}
			src, err := HTTP(context.Background(), tc.start, o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("HTTP = %v, want an error saying %q", err, tc.err)
				}
				if n := len(tc.asked.seen); n != tc.nAsked {
					t.Errorf("the server saw %d requests, want %d (the refusal is not retried)", n, tc.nAsked)
				}
				if tc.target != nil && len(tc.target.requests("/bundle")) != 0 {
					t.Errorf("the refused target was asked: %+v", tc.target.requests("/bundle"))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if err := fetchAndCheck(context.Background(), src, payload, ranges); err != nil {
				t.Fatal(err)
			}
			got := tc.target.requests("/bundle")
			if len(got) < 4 {
				t.Fatalf("the target saw %d requests, want the probe and 3 ranges", len(got))
			}
			for _, q := range got {
				kept := q.auth == token && q.key == "key-1" && q.cookie == "session=c"
				none := q.auth == "" && q.key == "" && q.cookie == ""
				switch {
				case tc.keep && !kept:
					t.Errorf("a request within the origin lost headers: %+v", q)
				case !tc.keep && !none:
					t.Errorf("headers reached another origin: %+v", q)
				}
			}
			if !tc.keep {
				mu.Lock()
				defer mu.Unlock()
				if len(logged) != 1 || !strings.Contains(logged[0], "Authorization, Cookie, X-Api-Key") || strings.Contains(logged[0], "s3cret") {
					t.Errorf("log %q, want one line naming the headers dropped, without their values", logged)
				}
			}
		})
	}
}

// TestHTTPRedirectDefaultClient: the client the source makes itself has
// the same policy (the test above gives its own), and a caller's client's
// own CheckRedirect still runs after it.
func TestHTTPRedirectDefaultClient(t *testing.T) {
	payload := testPayload(100000)
	plain := newRedirectServer(t, payload, false, false)
	plain2 := newRedirectServer(t, payload, false, false)
	hdr := http.Header{"Authorization": {"Bearer x"}, "X-Api-Key": {"k"}}
	src := openHTTP(t, goTo(plain.URL, plain2.URL+"/bundle"), HTTPOptions{Headers: hdr})
	if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 0, Len: 100000}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range plain2.requests("/bundle") {
		if q.auth != "" || q.key != "" {
			t.Errorf("headers reached another port: %+v", q)
		}
	}
	calls := 0
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { calls++; return nil }}
	src = openHTTP(t, goTo(plain.URL, plain.URL+"/bundle"), HTTPOptions{Headers: hdr, Client: c})
	if err := fetchAndCheck(context.Background(), src, payload, []Range{{Off: 0, Len: 100}}); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("the caller's CheckRedirect ran %d times, want 2 (probe and fetch)", calls)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("not wanted") }
	if _, err := HTTP(context.Background(), goTo(plain.URL, plain.URL+"/bundle"), HTTPOptions{Client: c, Retries: -1}); err == nil || !strings.Contains(err.Error(), "not wanted") {
		t.Errorf("the caller's CheckRedirect refusing: %v", err)
	}
}
