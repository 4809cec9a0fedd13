package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/keelboot/keel/update/source"
)

// Client is a device's view of a channel.
type Client struct {
	// URL is the channel: an http(s):// URL, or a folder (a path or a
	// file:// URL: a copy of the channel on a USB stick), checked the same.
	URL string
	// Root is the channel's initial root.json, as the image carries it
	// (in the verified slot root); a newer one the device learned is kept
	// in State.
	Root []byte
	// State is the folder where the trusted metadata is kept between
	// checks (TUF's rollback protection: versions never go back).
	State string
	// HTTP is the client for an http(s) channel (nil: one with a 30 s
	// timeout per file, trusting the system's CAs and CAFile's).
	HTTP   *http.Client
	CAFile string
	// Tries is how often a transient download error is tried (default 3).
	Tries int
}

// Channel is the verified, fresh metadata of a channel.
type Channel struct {
	// Targets are the targets with keel's metadata, sorted by path;
	// Skipped names the ones whose metadata keel cannot read.
	Targets []Target
	Skipped []string
	// Roles are the trusted metadata's versions and expiries.
	Roles []RoleStatus
	base  *url.URL
}

// ExpiredError: the channel's newest metadata expired. A mirror that
// keeps serving yesterday's timestamp (a freeze attack), or a release
// host whose refresh timer stopped.
type ExpiredError struct {
	Role    string
	Expires time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("channel: its %s metadata expired at %s: the server keeps serving old metadata (a frozen mirror) or the release host stopped refreshing it (keel channel refresh); nothing is installed until it serves fresh metadata",
		e.Role, e.Expires.UTC().Format(time.RFC3339))
}

func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// ErrExpired: see ExpiredError. ErrRefused: the channel's metadata did
// not verify (bad signatures, fewer than a threshold, older than what
// the device already trusts, not matching the snapshot).
var (
	ErrExpired = errors.New("channel: metadata expired")
	ErrRefused = errors.New("channel: metadata refused")
)

// base is the channel's location as a URL (file:// for a folder).
func (c *Client) base() (*url.URL, error) {
	if strings.HasPrefix(c.URL, "http://") || strings.HasPrefix(c.URL, "https://") || strings.HasPrefix(c.URL, "file://") {
		u, err := url.Parse(c.URL)
		if err != nil {
			return nil, fmt.Errorf("channel: %w", err)
		}
		if u.Scheme == "file" && (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("channel: %s: a file:// URL names a local folder", c.URL)
		}
		return u, nil
	}
	if strings.Contains(c.URL, "://") || c.URL == "" {
		return nil, fmt.Errorf("channel: %q: give an http(s):// URL or a folder", c.URL)
	}
	abs, err := filepath.Abs(c.URL)
	if err != nil {
		return nil, err
	}
	return &url.URL{Scheme: "file", Path: abs}, nil
}

// CheckRoot checks that b is a channel's root.json (TUF root metadata
// signed by its own root keys' threshold), as an image carries it.
func CheckRoot(b []byte) error {
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		return fmt.Errorf("not TUF root metadata: %w", err)
	}
	if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
		return fmt.Errorf("root version %d is not signed by its root keys: %w", r.Signed.Version, err)
	}
	return nil
}

// trustedRoot is the newer of the image's root and the one kept in
// State (both are trusted: the image's is covered by dm-verity, the
// state's was reached from it through signed roots).
func (c *Client) trustedRoot() ([]byte, error) {
	img, err := metadata.Root().FromBytes(c.Root)
	if err != nil {
		return nil, fmt.Errorf("channel: the initial root.json: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(c.State, "root.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return c.Root, nil
		}
		return nil, err
	}
	kept, err := metadata.Root().FromBytes(b)
	if err != nil || kept.Signed.Version < img.Signed.Version {
		return c.Root, nil
	}
	return b, nil
}

// Refresh brings the trusted metadata up to date as TUF's client
// workflow prescribes (go-tuf's updater: the root chain, timestamp,
// snapshot and targets, each checked against its signatures and
// threshold, its version against the trusted one, its hashes, its
// expiry), keeping it in c.State, and returns the targets. An expired
// channel fails with an *ExpiredError naming the role and the expiry;
// metadata that does not verify with ErrRefused.
func (c *Client) Refresh(ctx context.Context) (*Channel, error) {
	base, err := c.base()
	if err != nil {
		return nil, err
	}
	if c.State == "" {
		return nil, errors.New("channel: no state folder for the trusted metadata")
	}
	if err := os.MkdirAll(c.State, 0o700); err != nil {
		return nil, fmt.Errorf("channel: the state folder: %w", err)
	}
	root, err := c.trustedRoot()
	if err != nil {
		return nil, err
	}
	cfg, err := config.New(strings.TrimSuffix(base.String(), "/"), root)
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir = c.State
	cfg.LocalTargetsDir = filepath.Join(c.State, "targets")
	tries := c.Tries
	if tries < 1 {
		tries = 3
	}
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	if c.HTTP == nil {
		// Its own connections: closed when the check is done (the next
		// one is hours away).
		defer hc.CloseIdleConnections()
	}
	cfg.Fetcher = &fetch{ctx: ctx, client: hc, tries: tries}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return nil, explain(up.GetTrustedMetadataSet(), err)
	}
	tm := up.GetTrustedMetadataSet()
	ch := &Channel{base: base, Roles: trustedRoles(tm)}
	for p, tf := range tm.Targets[metadata.TARGETS].Signed.Targets {
		var custom []byte
		if tf.Custom != nil {
			custom = *tf.Custom
		}
		t, err := ParseTarget(p, tf.Length, fmt.Sprintf("%x", []byte(tf.Hashes["sha256"])), custom)
		if err != nil {
			ch.Skipped = append(ch.Skipped, err.Error())
			continue
		}
		ch.Targets = append(ch.Targets, t)
	}
	slices.SortFunc(ch.Targets, func(a, b Target) int { return strings.Compare(a.Path, b.Path) })
	return ch, nil
}

// trustedRoles are the versions and expiries of the trusted metadata
// (the timestamp first: the one a freeze lets expire).
func trustedRoles(tm trustedmetadata.TrustedMetadata) []RoleStatus {
	var out []RoleStatus
	if t := tm.Timestamp; t != nil {
		out = append(out, RoleStatus{Role: metadata.TIMESTAMP, Version: t.Signed.Version, Expires: t.Signed.Expires})
	}
	if s := tm.Snapshot; s != nil {
		out = append(out, RoleStatus{Role: metadata.SNAPSHOT, Version: s.Signed.Version, Expires: s.Signed.Expires})
	}
	if t := tm.Targets[metadata.TARGETS]; t != nil {
		out = append(out, RoleStatus{Role: metadata.TARGETS, Version: t.Signed.Version, Expires: t.Signed.Expires})
	}
	if r := tm.Root; r != nil {
		out = append(out, RoleStatus{Role: metadata.ROOT, Version: r.Signed.Version, Expires: r.Signed.Expires})
	}
	return out
}

// explain turns go-tuf's refusal into keel's: an expired role named with
// its expiry, a rollback or a bad signature as ErrRefused.
func explain(tm trustedmetadata.TrustedMetadata, err error) error {
	if errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		now := time.Now()
		for _, r := range trustedRoles(tm) {
			if !r.Expires.IsZero() && now.After(r.Expires) {
				return &ExpiredError{Role: r.Role, Expires: r.Expires}
			}
		}
		return fmt.Errorf("%w: %v", ErrExpired, err)
	}
	switch {
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return fmt.Errorf("%w: the channel serves older metadata than this device already trusts (a replay, or a mirror that went back): %v", ErrRefused, err)
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return fmt.Errorf("%w: its signatures do not reach the threshold of keys this device trusts: %v", ErrRefused, err)
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return fmt.Errorf("%w: it does not match what the signed metadata above it says: %v", ErrRefused, err)
	case errors.Is(err, &metadata.ErrRepository{}):
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return fmt.Errorf("channel: %w", err)
}

// Location is where the target's file is: a URL, or a path in the
// channel's folder (targets/DIR/SHA256.NAME: consistent snapshots).
func (ch *Channel) Location(t Target) string {
	rel := path.Join("targets", path.Dir(t.Path), t.SHA256+"."+path.Base(t.Path))
	if ch.base.Scheme == "file" {
		return filepath.Join(filepath.FromSlash(ch.base.Path), filepath.FromSlash(rel))
	}
	return ch.base.JoinPath(rel).String()
}

func (c *Client) httpClient() (*http.Client, error) {
	if c.HTTP != nil {
		return c.HTTP, nil
	}
	roots, err := source.CAPool(c.CAFile)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots}
	return &http.Client{Timeout: 30 * time.Second, Transport: t}, nil
}

// fetch is the updater's fetcher: bounded reads over http(s) (transient
// errors tried again) or from a folder.
type fetch struct {
	ctx    context.Context
	client *http.Client
	tries  int
}

var _ fetcher.Fetcher = (*fetch)(nil)

func (f *fetch) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if pu.Scheme == "file" {
		return readBounded(pu.Path, u, maxLength)
	}
	var last error
	for try := range f.tries {
		if try > 0 {
			select {
			case <-f.ctx.Done():
				return nil, f.ctx.Err()
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
		b, transient, err := f.get(u, maxLength)
		if err == nil || !transient {
			return b, err
		}
		last = err
	}
	return nil, last
}

// get fetches u once; transient: worth trying again.
func (f *fetch) get(u string, maxLength int64) ([]byte, bool, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	res, err := f.client.Do(req)
	if err != nil {
		return nil, f.ctx.Err() == nil, fmt.Errorf("%s: %w", u, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusOK:
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		return nil, true, &metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: u}
	default:
		return nil, false, &metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: u}
	}
	if res.ContentLength > maxLength {
		return nil, false, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: %d bytes, at most %d expected", u, res.ContentLength, maxLength)}
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxLength+1))
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", u, err)
	}
	if int64(len(b)) > maxLength {
		return nil, false, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than the %d bytes expected", u, maxLength)}
	}
	return b, false, nil
}

// readBounded reads a regular file of at most maxLength bytes; a missing
// one is a 404 (the end of the root chain).
func readBounded(name, u string, maxLength int64) ([]byte, error) {
	fh, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("channel: %s is not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(fh, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than the %d bytes expected", name, maxLength)}
	}
	return b, nil
}
