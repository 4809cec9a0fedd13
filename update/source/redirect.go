package source

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// This file holds the redirect policy: which redirects an HTTP source
// follows, and when the headers the caller gave (HTTPOptions.Headers, an
// Authorization header for instance) go along.

// MaxRedirects is how many redirects one request follows; one more is a
// loop, or as good as one, and is refused.
const MaxRedirects = 10

// ErrRedirect marks a redirect the source refuses to follow: to another
// scheme than http or https, from https to http, or one too many. It is
// never retried: the server would only send the same redirect again.
var ErrRedirect = errors.New("redirect refused")

// redirectStep is what to do with one redirect.
type redirectStep struct {
	// keepHeaders: the caller's headers go along (every URL of the chain
	// has the first one's origin).
	keepHeaders bool
	// err refuses the redirect (wraps ErrRedirect).
	err error
}

// decideRedirect is the policy for the next hop of a chain of redirects:
// chain holds the URLs asked so far, oldest first, and next is where the
// last answer points. It refuses a scheme other than http and https
// (file://, for one: a server must not make the installer read a local
// file), a step down from https to http (the bytes and whatever the
// request carries would cross the network in clear), and more than
// MaxRedirects steps. The caller's headers are kept only while every URL
// of the chain, next included, has the origin (RFC 6454: scheme, host and
// port) of the first: a redirect to another host, port or scheme drops
// them for the rest of the chain, even back on the first origin, since
// the hop in between could have chosen where they go. (net/http's own
// rule keeps Authorization for a subdomain, another port and https to
// http on the same host, and every other header everywhere.)
func decideRedirect(chain []*url.URL, next *url.URL) redirectStep {
	if len(chain) > MaxRedirects {
		return redirectStep{err: fmt.Errorf("%w: stopped after %d redirects (a redirect loop?), the last to %s", ErrRedirect, len(chain)-1, next.Redacted())}
	}
	scheme := strings.ToLower(next.Scheme)
	if scheme != "http" && scheme != "https" {
		return redirectStep{err: fmt.Errorf("%w: a redirect to %s: only http:// and https:// redirects are followed", ErrRedirect, next.Redacted())}
	}
	prev := chain[len(chain)-1]
	if strings.EqualFold(prev.Scheme, "https") && scheme == "http" {
		return redirectStep{err: fmt.Errorf("%w: a redirect from https to http (%s to %s) would send the request, and any credentials in it, in clear: serve the bundle over https, or give the http URL yourself", ErrRedirect, prev.Redacted(), next.Redacted())}
	}
	first := origin(chain[0])
	if origin(next) != first {
		return redirectStep{}
	}
	for _, u := range chain[1:] {
		if origin(u) != first {
			return redirectStep{}
		}
	}
	return redirectStep{keepHeaders: true}
}

// origin is u's scheme, host and port, in one canonical form: the
// default port made explicit, scheme and host in lower case.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// checkRedirect is the client's CheckRedirect: decideRedirect, then the
// caller's client's own policy (next), if it has one. req's headers are
// net/http's copy of the first request's; the caller's headers, and
// Authorization and Cookie whoever set them, are removed when the chain
// leaves the first origin.
func (s *HTTPSource) checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		chain := make([]*url.URL, len(via))
		for i, r := range via {
			chain[i] = r.URL
		}
		step := decideRedirect(chain, req.URL)
		if step.err != nil {
			return step.err
		}
		if !step.keepHeaders {
			for k := range s.o.Headers {
				req.Header.Del(k)
			}
			req.Header.Del("Authorization")
			req.Header.Del("Cookie")
			if len(s.o.Headers) > 0 && !s.droppedLogged.Swap(true) {
				s.logf("%s redirects to %s, another origin: the headers given (%s) are not sent there", s.display, req.URL.Redacted(), headerNames(s.o.Headers))
			}
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
}

// headerNames lists h's names (never the values: they may be secrets).
func headerNames(h http.Header) string {
	var names []string
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
