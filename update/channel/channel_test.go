package channel

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

// fixture: a channel with keys, bundles of versions 1.0 and 2.0 and the
// static delta from 1.0 to 2.0 as files.
type fixture struct {
	dir, keys, repo string
	b1, b2, d12     string
	trusted         []manifest.PublicKey
	v1, v2          *bundletest.Slot
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{dir: t.TempDir()}
	f.keys, f.repo = filepath.Join(f.dir, "keys"), filepath.Join(f.dir, "repo")
	rng := rand.New(rand.NewSource(3))
	key, trusted := bundletest.Keys(t, "release")
	f.trusted = trusted
	f.v1 = bundletest.NewSlot(t, rng, 64, "1.0", 1, key)
	f.v2 = bundletest.Next(t, rng, f.v1, 3, false, "2.0", key)
	f.b1, f.b2, f.d12 = filepath.Join(f.dir, "v1.bundle"), filepath.Join(f.dir, "v2.bundle"), filepath.Join(f.dir, "v1-v2.bundle")
	write(t, f.b1, bundletest.Bundle(t, f.v1, key))
	write(t, f.b2, bundletest.Bundle(t, f.v2, key))
	var d bytes.Buffer
	m := make(bundle.BlockMap, (len(f.v2.Data)/bundle.Align+7)/8)
	for i := range len(f.v2.Data) / bundle.Align {
		m.Set(uint64(i))
	}
	if _, err := bundle.Write(&d, bundle.Input{Manifest: f.v2.Manifest, Sig: f.v2.Sig, Kernel: f.v2.Kernel, Initrd: f.v2.Initrd,
		Root: bytes.NewReader(f.v2.Root), Delta: &bundle.Delta{From: "1.0", FromRootHash: f.v1.Verity.RootHash}, Map: m}, key); err != nil {
		t.Fatal(err)
	}
	write(t, f.d12, d.Bytes())
	return f
}

func write(t testing.TB, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) repoAt(now time.Time) *Repo {
	return &Repo{Dir: f.repo, Keys: Keys{Dir: f.keys}, Now: now}
}

func (f *fixture) client(t *testing.T, url, state string) *Client {
	root, err := os.ReadFile(filepath.Join(f.repo, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &Client{URL: url, Root: root, State: state, Tries: 1}
}

func TestPublishAndCheck(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.repoAt(time.Time{})
	if err := r.Init(Thresholds{"root": 2}); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(nil); err == nil || !strings.Contains(err.Error(), "already holds a channel") {
		t.Fatalf("init twice: %v", err)
	}
	p, err := r.Publish(ctx, Publish{Bundle: f.b2, Deltas: []string{f.d12}, Rollout: 100, Trusted: f.trusted})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Targets) != 2 || p.Targets[1].Kind != KindDelta || p.Targets[1].DeltaFrom != "1.0" || p.Version != 2 {
		t.Fatalf("published %+v", p)
	}
	// A delta is not a release; the same version with other bytes is refused.
	if _, err := r.Publish(ctx, Publish{Bundle: f.d12, Rollout: 100}); err == nil || !strings.Contains(err.Error(), "static delta") {
		t.Errorf("a delta as the bundle: %v", err)
	}
	b, _ := os.ReadFile(f.b2)
	other := filepath.Join(f.dir, "other.bundle")
	write(t, other, append(b, make([]byte, 4096)...))
	if _, err := r.Publish(ctx, Publish{Bundle: other, Rollout: 100}); err == nil || !strings.Contains(err.Error(), "already published with other contents") {
		t.Errorf("2.0 again with other bytes: %v", err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(f.repo)))
	defer srv.Close()
	for _, url := range []string{f.repo, "file://" + f.repo, srv.URL} {
		c := f.client(t, url, t.TempDir())
		ch, err := c.Refresh(ctx)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if len(ch.Targets) != 2 || len(ch.Skipped) != 0 {
			t.Fatalf("%s: targets %+v skipped %v", url, ch.Targets, ch.Skipped)
		}
		d := Decide(Device{Board: bundletest.Board, Version: "1.0", SecurityVersion: 1, Floor: -1, ID: "x"}, ch.Targets)
		if d.Reason != ReasonInstall || d.Fetch.Kind != KindDelta {
			t.Fatalf("%s: %+v", url, d)
		}
		// The target's file is where Location says, and pins.
		loc := ch.Location(*d.Fetch)
		var src source.Source
		if strings.HasPrefix(loc, "http") {
			src, err = source.Open(ctx, loc, nil, source.HTTPOptions{})
		} else {
			src, err = source.Open(ctx, loc, nil, source.HTTPOptions{})
		}
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		ps, check := Pin(src, *d.Fetch)
		bd, err := bundle.Open(ctx, ps, f.trusted, bundletest.Board)
		if err != nil {
			t.Fatal(err)
		}
		if err := check(bd); err != nil {
			t.Errorf("%s: %v", loc, err)
		}
		// Against the full bundle's metadata, the delta fails the pin.
		_, check = Pin(src, *d.Target)
		if err := check(bd); !errors.Is(err, ErrMismatch) {
			t.Errorf("the delta pinned as the full bundle: %v", err)
		}
		src.Close()
	}
	st, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Roles) != 4 || st.Roles[0].Threshold != 2 || st.Roles[0].KeysHere != 2 || len(st.Targets) != 2 {
		t.Errorf("status %+v", st)
	}
}

// TestFreezeAndReplay: an expired timestamp is refused naming its
// expiry; older metadata than the device trusts is refused; a served
// snapshot or targets older than the timestamp names is refused.
func TestFreezeAndReplay(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.repoAt(time.Time{}).Init(nil); err != nil {
		t.Fatal(err)
	}
	// Signed two days ago: the timestamp (a day) expired yesterday.
	old := time.Now().Add(-48 * time.Hour)
	if _, err := f.repoAt(old).Publish(ctx, Publish{Bundle: f.b2, Rollout: 100}); err != nil {
		t.Fatal(err)
	}
	_, err := f.client(t, f.repo, t.TempDir()).Refresh(ctx)
	var ee *ExpiredError
	if !errors.As(err, &ee) || ee.Role != "timestamp" || !strings.Contains(err.Error(), old.Add(24*time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)) {
		t.Fatalf("expired timestamp: %v", err)
	}
	if !errors.Is(err, ErrExpired) {
		t.Errorf("not ErrExpired: %v", err)
	}
	r := f.repoAt(time.Time{})
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	c := f.client(t, f.repo, state)
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatalf("after keel channel refresh: %v", err)
	}
	saved := map[string][]byte{}
	for _, n := range []string{"timestamp.json", "2.snapshot.json", "2.targets.json"} {
		saved[n], _ = os.ReadFile(filepath.Join(f.repo, n))
	}
	if _, err := r.Publish(ctx, Publish{Bundle: f.b2, Rollout: 50}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The mirror goes back to yesterday's timestamp: refused.
	ts, _ := os.ReadFile(filepath.Join(f.repo, "timestamp.json"))
	write(t, filepath.Join(f.repo, "timestamp.json"), saved["timestamp.json"])
	if _, err := c.Refresh(ctx); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "replay") {
		t.Errorf("replayed timestamp: %v", err)
	}
	write(t, filepath.Join(f.repo, "timestamp.json"), ts)
	// A snapshot or targets older than the signed timestamp names: a new
	// device refuses it too.
	for _, n := range []string{"snapshot", "targets"} {
		cur := filepath.Join(f.repo, "3."+n+".json")
		keep, _ := os.ReadFile(cur)
		write(t, cur, saved["2."+n+".json"])
		if _, err := f.client(t, f.repo, t.TempDir()).Refresh(ctx); !errors.Is(err, ErrRefused) {
			t.Errorf("replayed %s: %v", n, err)
		}
		write(t, cur, keep)
	}
	if _, err := f.client(t, f.repo, t.TempDir()).Refresh(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRotation: after the targets and root keys rotate, a device that
// trusts only the first root follows the chain; a channel whose new root
// is not signed by the old keys is refused.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := &Repo{Dir: f.repo, Keys: Keys{Dir: f.keys, RootDir: filepath.Join(f.dir, "offline")}}
	if err := r.Init(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "offline", "root.key")); err != nil {
		t.Fatalf("the root key is not on the offline medium: %v", err)
	}
	if _, err := r.Publish(ctx, Publish{Bundle: f.b2, Rollout: 100}); err != nil {
		t.Fatal(err)
	}
	early := f.client(t, f.repo, t.TempDir())
	if _, err := early.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Without the offline root keys nothing rotates.
	if err := (&Repo{Dir: f.repo, Keys: Keys{Dir: f.keys}}).Rotate("targets", 0); err == nil || !strings.Contains(err.Error(), "root role's keys") {
		t.Fatalf("rotate without the root keys: %v", err)
	}
	for _, role := range []string{"targets", "root", "timestamp"} {
		if err := r.Rotate(role, 0); err != nil {
			t.Fatalf("rotate %s: %v", role, err)
		}
	}
	st, _ := r.Status()
	if st.Roles[0].Version != 4 {
		t.Errorf("root version %d after three rotations", st.Roles[0].Version)
	}
	for name, c := range map[string]*Client{"checked before": early, "never checked": f.client(t, f.repo, t.TempDir())} {
		ch, err := c.Refresh(ctx)
		if err != nil || len(ch.Targets) != 1 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A root 5 signed by new keys only (the old ones lost): refused.
	if err := os.RemoveAll(filepath.Join(f.dir, "offline")); err != nil {
		t.Fatal(err)
	}
	stranger := &Repo{Dir: filepath.Join(f.dir, "stranger"), Keys: Keys{Dir: filepath.Join(f.dir, "stranger-keys")}}
	if err := stranger.Init(nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(stranger.Dir, "1.root.json"))
	fake := bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 5`), 1)
	write(t, filepath.Join(f.repo, "5.root.json"), fake)
	if _, err := f.client(t, f.repo, t.TempDir()).Refresh(ctx); !errors.Is(err, ErrRefused) {
		t.Errorf("a root not signed by the trusted keys: %v", err)
	}
}

func TestParseTargetRefuses(t *testing.T) {
	good := Custom{Kind: KindBundle, Board: "b", Version: "2.0", SecurityVersion: 1, HeaderSHA256: hex.EncodeToString(make([]byte, 32)), HeaderSize: 4096, Rollout: 10}
	raw, err := marshalCustom(good)
	if err != nil {
		t.Fatal(err)
	}
	sum := hex.EncodeToString(make([]byte, 32))
	if _, err := ParseTarget("b/2.0.bundle", 10000, sum, raw); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		path   string
		custom string
	}{
		"other path":      {"b/3.0.bundle", string(raw)},
		"not keel's":      {"b/2.0.bundle", `{"other":{}}`},
		"unknown field":   {"b/2.0.bundle", strings.Replace(string(raw), `"kind"`, `"extra":1,"kind"`, 1)},
		"rollout 101":     {"b/2.0.bundle", strings.Replace(string(raw), `"rollout_percent":10`, `"rollout_percent":101`, 1)},
		"path in version": {"b/2.0.bundle", strings.Replace(string(raw), `"version":"2.0"`, `"version":"../x"`, 1)},
		"too large":       {"b/2.0.bundle", `{"keel":{"board":"` + strings.Repeat("b", MaxCustom) + `"}}`},
	} {
		if _, err := ParseTarget(tc.path, 10000, sum, []byte(tc.custom)); !errors.Is(err, ErrBadTarget) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	raw, _ := marshalCustom(Custom{Kind: KindDelta, Board: "b", Version: "2.0", DeltaFrom: "1.0", SecurityVersion: 1,
		HeaderSHA256: hex.EncodeToString(make([]byte, 32)), HeaderSize: 4096, Rollout: 10})
	f.Add("b/2.0-from-1.0.bundle", int64(9000), []byte(raw))
	f.Add("b/2.0.bundle", int64(1), []byte(`{"keel":{}}`))
	f.Fuzz(func(t *testing.T, path string, length int64, custom []byte) {
		tg, err := ParseTarget(path, length, hex.EncodeToString(make([]byte, 32)), custom)
		if err != nil {
			return
		}
		if tg.Custom.Check() != nil || TargetPath(tg.Board, tg.Version, tg.DeltaFrom) != path || tg.Length <= tg.HeaderSize {
			t.Fatalf("accepted %+v", tg)
		}
	})
}
