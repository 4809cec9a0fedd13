package channel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

// Expiries are how long each role's metadata stays valid after it is
// signed.
type Expiries map[string]time.Duration

// DefaultExpiries: the root a year (it is signed offline), targets three
// months, snapshot a week, timestamp a day (a timer on the release host
// runs keel channel refresh; a device refuses a channel whose timestamp
// is older: a frozen mirror).
var DefaultExpiries = Expiries{metadata.ROOT: 365 * 24 * time.Hour, metadata.TARGETS: 90 * 24 * time.Hour,
	metadata.SNAPSHOT: 7 * 24 * time.Hour, metadata.TIMESTAMP: 24 * time.Hour}

func (e Expiries) of(role string, now time.Time) time.Time {
	d, ok := e[role]
	if !ok || d <= 0 {
		d = DefaultExpiries[role]
	}
	return now.Add(d).UTC().Truncate(time.Second)
}

// Repo is a channel repository: a folder of static files (TUF metadata
// with consistent snapshots, targets under targets/).
type Repo struct {
	Dir  string
	Keys Keys
	// Expires are the expiries of what is signed (nil: DefaultExpiries);
	// Now the signing time (zero: time.Now).
	Expires Expiries
	Now     time.Time
}

// ErrNotChannel: the folder holds no channel (no root.json).
var ErrNotChannel = fmt.Errorf("channel: not a channel repository (no root.json): %w", fs.ErrNotExist)

func (r *Repo) now() time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

// Thresholds are how many keys each role has and must sign (default 1).
type Thresholds map[string]int

// Init makes a new channel in r.Dir (which must not hold one): keys for
// each role (the ones in r.Keys are used, new ones generated into it up
// to the role's threshold), root version 1, empty targets, snapshot and
// timestamp.
func (r *Repo) Init(th Thresholds) error {
	if _, err := os.Stat(filepath.Join(r.Dir, "root.json")); err == nil {
		return fmt.Errorf("channel: %s already holds a channel (root.json): rotate its keys with keel channel rotate", r.Dir)
	}
	if err := os.MkdirAll(filepath.Join(r.Dir, "targets"), 0o755); err != nil {
		return err
	}
	now := r.now()
	root := metadata.Root(r.Expires.of(metadata.ROOT, now))
	signers := map[string][]*signer{}
	for _, role := range Roles {
		n := max(th[role], 1)
		have, err := r.Keys.load(role)
		if err != nil {
			return err
		}
		if len(have) < n {
			more, err := r.Keys.generate(role, n-len(have))
			if err != nil {
				return err
			}
			have = append(have, more...)
		}
		for _, s := range have {
			if err := root.Signed.AddKey(s.tuf, role); err != nil {
				return err
			}
		}
		root.Signed.Roles[role].Threshold = n
		signers[role] = have
	}
	if err := signWith(root, metadata.ROOT, root.Signed.Roles[metadata.ROOT], signers[metadata.ROOT], r.Keys); err != nil {
		return err
	}
	st := &state{root: root, targets: metadata.Targets(r.Expires.of(metadata.TARGETS, now))}
	st.targets.Signed.Version = 0
	if err := r.writeRoot(root); err != nil {
		return err
	}
	return r.commit(st, signers, true)
}

// state is the repository's current metadata.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   *metadata.Metadata[metadata.TargetsType]
}

// load reads the repository's current metadata.
func (r *Repo) load() (*state, error) {
	var st state
	var err error
	if st.root, err = metadata.Root().FromFile(filepath.Join(r.Dir, "root.json")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", r.Dir, ErrNotChannel)
		}
		return nil, fmt.Errorf("%s: %w", r.Dir, err)
	}
	if st.timestamp, err = metadata.Timestamp().FromFile(filepath.Join(r.Dir, "timestamp.json")); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Dir, err)
	}
	sv := st.timestamp.Signed.Meta["snapshot.json"].Version
	if st.snapshot, err = metadata.Snapshot().FromFile(filepath.Join(r.Dir, fmt.Sprintf("%d.snapshot.json", sv))); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Dir, err)
	}
	tv := st.snapshot.Signed.Meta["targets.json"].Version
	if st.targets, err = metadata.Targets().FromFile(filepath.Join(r.Dir, fmt.Sprintf("%d.targets.json", tv))); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Dir, err)
	}
	return &st, nil
}

// open reads the repository's metadata and the keys r.Keys holds.
func (r *Repo) open() (*state, map[string][]*signer, error) {
	st, err := r.load()
	if err != nil {
		return nil, nil, err
	}
	signers, err := r.signers()
	if err != nil {
		return nil, nil, err
	}
	return st, signers, nil
}

func (r *Repo) signers() (map[string][]*signer, error) {
	out := map[string][]*signer{}
	for _, role := range Roles {
		s, err := r.Keys.load(role)
		if err != nil {
			return nil, err
		}
		out[role] = s
	}
	return out, nil
}

// commit signs and writes new targets (when targets is set), snapshot
// and timestamp versions, the timestamp last: a reader sees the old
// channel or the new one.
func (r *Repo) commit(st *state, signers map[string][]*signer, newTargets bool) error {
	now := r.now()
	roles := st.root.Signed.Roles
	if newTargets {
		st.targets.Signed.Version++
		st.targets.Signed.Expires = r.Expires.of(metadata.TARGETS, now)
		st.targets.ClearSignatures()
		if err := signWith(st.targets, metadata.TARGETS, roles[metadata.TARGETS], signers[metadata.TARGETS], r.Keys); err != nil {
			return err
		}
		if err := r.writeMeta(fmt.Sprintf("%d.targets.json", st.targets.Signed.Version), st.targets); err != nil {
			return err
		}
	}
	if st.snapshot == nil {
		st.snapshot = metadata.Snapshot()
		st.snapshot.Signed.Version = 0
	}
	st.snapshot.Signed.Version++
	st.snapshot.Signed.Expires = r.Expires.of(metadata.SNAPSHOT, now)
	st.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(st.targets.Signed.Version)
	st.snapshot.ClearSignatures()
	if err := signWith(st.snapshot, metadata.SNAPSHOT, roles[metadata.SNAPSHOT], signers[metadata.SNAPSHOT], r.Keys); err != nil {
		return err
	}
	if err := r.writeMeta(fmt.Sprintf("%d.snapshot.json", st.snapshot.Signed.Version), st.snapshot); err != nil {
		return err
	}
	return r.newTimestamp(st, signers)
}

// newTimestamp signs and writes the next timestamp for st's snapshot.
func (r *Repo) newTimestamp(st *state, signers map[string][]*signer) error {
	ts := metadata.Timestamp(r.Expires.of(metadata.TIMESTAMP, r.now()))
	if st.timestamp != nil {
		ts.Signed.Version = st.timestamp.Signed.Version + 1
	}
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(st.snapshot.Signed.Version)
	if err := signWith(ts, metadata.TIMESTAMP, st.root.Signed.Roles[metadata.TIMESTAMP], signers[metadata.TIMESTAMP], r.Keys); err != nil {
		return err
	}
	st.timestamp = ts
	return r.writeMeta("timestamp.json", ts)
}

type toBytes interface{ ToBytes(bool) ([]byte, error) }

func (r *Repo) writeMeta(name string, m toBytes) error {
	b, err := m.ToBytes(true)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(r.Dir, name), b)
}

func (r *Repo) writeRoot(root *metadata.Metadata[metadata.RootType]) error {
	if err := r.writeMeta(fmt.Sprintf("%d.root.json", root.Signed.Version), root); err != nil {
		return err
	}
	return r.writeMeta("root.json", root)
}

// writeAtomic writes a file whole or not at all.
func writeAtomic(name string, b []byte) error {
	return writeFrom(name, bytes.NewReader(b))
}

// writeFrom writes what r holds to the file name, whole or not at all
// (a temporary file synced and renamed over it).
func writeFrom(name string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Refresh signs a new timestamp (for the same snapshot), valid for the
// timestamp's expiry from now.
func (r *Repo) Refresh() error {
	st, signers, err := r.open()
	if err != nil {
		return err
	}
	return r.newTimestamp(st, signers)
}

// Publish is a bundle to publish, with its static deltas.
type Publish struct {
	Bundle string   // the bundle file
	Deltas []string // static delta files (keel bundle delta) to the same version
	// Rollout is the share of devices that take it, in percent.
	Rollout int
	// Trusted, if set, are the release keys the bundles must verify with.
	Trusted []manifest.PublicKey
}

// Published is what Publish added or changed.
type Published struct {
	Targets []Target
	Version int64 // the new targets version
}

// Publish adds the bundle and its deltas as targets (copied to
// targets/BOARD/SHA256.NAME), or changes the rollout of a bundle
// published before (the same file), and signs new targets, snapshot and
// timestamp.
func (r *Repo) Publish(ctx context.Context, p Publish) (*Published, error) {
	if p.Rollout < 0 || p.Rollout > 100 {
		return nil, fmt.Errorf("channel: rollout %d%% (want 0..100)", p.Rollout)
	}
	st, signers, err := r.open()
	if err != nil {
		return nil, err
	}
	var out Published
	full, err := r.add(ctx, st, p.Bundle, "", p)
	if err != nil {
		return nil, err
	}
	out.Targets = append(out.Targets, full)
	for _, d := range p.Deltas {
		t, err := r.add(ctx, st, d, full.Version, p)
		if err != nil {
			return nil, err
		}
		if t.Board != full.Board || t.SecurityVersion != full.SecurityVersion {
			return nil, fmt.Errorf("channel: %s is a delta to %s %s (security version %d), not to the bundle's %s %s (%d)",
				d, t.Board, t.Version, t.SecurityVersion, full.Board, full.Version, full.SecurityVersion)
		}
		out.Targets = append(out.Targets, t)
	}
	if err := r.commit(st, signers, true); err != nil {
		return nil, err
	}
	out.Version = st.targets.Signed.Version
	return &out, nil
}

// add adds one file to st's targets (wantVersion: a delta's version must
// be the bundle's).
func (r *Repo) add(ctx context.Context, st *state, file, wantVersion string, p Publish) (Target, error) {
	f, err := os.Open(file)
	if err != nil {
		return Target{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Target{}, err
	}
	src := source.NewReaderAt(f, fi.Size(), file)
	region, h, err := ReadHeader(ctx, src)
	if err != nil {
		return Target{}, fmt.Errorf("%s: %w", file, err)
	}
	if len(p.Trusted) > 0 {
		if _, err := bundle.Verify(ctx, src, p.Trusted, manifest.AnyBoard); err != nil {
			return Target{}, fmt.Errorf("%s: %w", file, err)
		}
	}
	c := Custom{Kind: KindBundle, Board: h.Compatible, Version: h.Version, SecurityVersion: h.SecurityVersion,
		HeaderSHA256: digest(region), HeaderSize: int64(len(region)), Rollout: p.Rollout}
	switch {
	case wantVersion == "" && h.Delta != nil:
		return Target{}, fmt.Errorf("channel: %s is a static delta (from %s): publish the full bundle, and the delta with --delta", file, h.Delta.From)
	case wantVersion != "" && h.Delta == nil:
		return Target{}, fmt.Errorf("channel: %s is a full bundle, not a static delta", file)
	case wantVersion != "" && h.Version != wantVersion:
		return Target{}, fmt.Errorf("channel: %s is a delta to version %s, the bundle is %s", file, h.Version, wantVersion)
	case h.Delta != nil:
		c.Kind, c.DeltaFrom = KindDelta, h.Delta.From
	}
	if err := c.Check(); err != nil {
		return Target{}, fmt.Errorf("%s: %w", file, err)
	}
	tpath := TargetPath(c.Board, c.Version, c.DeltaFrom)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Target{}, err
	}
	hash := sha256.New()
	if _, err := io.Copy(hash, f); err != nil {
		return Target{}, err
	}
	sum := hex.EncodeToString(hash.Sum(nil))
	if old, ok := st.targets.Signed.Targets[tpath]; ok && hex.EncodeToString(old.Hashes["sha256"]) != sum {
		return Target{}, fmt.Errorf("channel: %s is already published with other contents (sha256 %s): a release is never replaced; publish a new version", tpath, hex.EncodeToString(old.Hashes["sha256"]))
	}
	// The file, under its hash (consistent snapshots): a new file never
	// replaces one a device may be reading.
	dst := filepath.Join(r.Dir, "targets", filepath.FromSlash(path.Dir(tpath)), sum+"."+path.Base(tpath))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Target{}, err
	}
	if _, err := os.Stat(dst); errors.Is(err, fs.ErrNotExist) {
		if err := copyFile(file, dst); err != nil {
			return Target{}, err
		}
	}
	custom, err := marshalCustom(c)
	if err != nil {
		return Target{}, err
	}
	st.targets.Signed.Targets[tpath] = &metadata.TargetFiles{Length: fi.Size(), Hashes: metadata.Hashes{"sha256": mustHex(sum)}, Custom: &custom, Path: tpath}
	return Target{Path: tpath, Length: fi.Size(), SHA256: sum, Custom: c}, nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// copyFile copies src to dst whole or not at all.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFrom(dst, in)
}

// Rotate replaces the keys of role with n new ones (n < 1: as many as its
// threshold), its threshold with n: a new root version signed by the
// root keys (the old and the new ones when the root rotates, so that a
// device that trusts only the old root follows), the old key files
// moved to retired/, and new targets, snapshot and timestamp signed.
func (r *Repo) Rotate(role string, n int) error {
	if !slices.Contains(Roles, role) {
		return fmt.Errorf("channel: no role %q (want root, targets, snapshot or timestamp)", role)
	}
	st, signers, err := r.open()
	if err != nil {
		return err
	}
	root := st.root
	cur := root.Signed.Roles[role]
	old := &metadata.Role{KeyIDs: slices.Clone(cur.KeyIDs), Threshold: cur.Threshold}
	if n < 1 {
		n = old.Threshold
	}
	oldSigners := signers[role]
	// The old root keys sign the new root: check they are here before
	// anything changes.
	if err := enough(metadata.ROOT, root.Signed.Roles[metadata.ROOT], signers[metadata.ROOT], r.Keys); err != nil {
		return err
	}
	if err := retire(oldSigners); err != nil {
		return err
	}
	fresh, err := r.Keys.generate(role, n)
	if err != nil {
		return err
	}
	for _, id := range old.KeyIDs {
		if err := root.Signed.RevokeKey(id, role); err != nil {
			return err
		}
	}
	for _, s := range fresh {
		if err := root.Signed.AddKey(s.tuf, role); err != nil {
			return err
		}
	}
	root.Signed.Roles[role].Threshold = n
	root.Signed.Version++
	root.Signed.Expires = r.Expires.of(metadata.ROOT, r.now())
	root.ClearSignatures()
	signers[role] = fresh
	if role == metadata.ROOT {
		// The new root: by the new keys (its own threshold) and by the
		// old ones (the trusted root's threshold, TUF 5.3.4).
		if err := signWith(root, role, root.Signed.Roles[role], fresh, r.Keys); err != nil {
			return err
		}
		if err := signWith(root, role, old, oldSigners, r.Keys); err != nil {
			return err
		}
	} else if err := signWith(root, metadata.ROOT, root.Signed.Roles[metadata.ROOT], signers[metadata.ROOT], r.Keys); err != nil {
		return err
	}
	if err := r.writeRoot(root); err != nil {
		return err
	}
	return r.commit(st, signers, true)
}

// RoleStatus is one role's metadata in the repository.
type RoleStatus struct {
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Threshold int       `json:"threshold,omitempty"`
	KeyIDs    []string  `json:"key_ids,omitempty"`
	// KeysHere is how many of its private keys r.Keys holds (keel channel
	// status).
	KeysHere int `json:"keys_here,omitempty"`
}

// Status is the repository's state.
type Status struct {
	Roles   []RoleStatus `json:"roles"`
	Targets []Target     `json:"targets"`
}

// Status reads the repository's metadata: each role's version, expiry,
// threshold and keys, and the targets.
func (r *Repo) Status() (*Status, error) {
	st, signers, err := r.open()
	if err != nil {
		return nil, err
	}
	var out Status
	for _, role := range Roles {
		rs := RoleStatus{Role: role, Threshold: st.root.Signed.Roles[role].Threshold, KeyIDs: st.root.Signed.Roles[role].KeyIDs}
		switch role {
		case metadata.ROOT:
			rs.Version, rs.Expires = st.root.Signed.Version, st.root.Signed.Expires
		case metadata.TARGETS:
			rs.Version, rs.Expires = st.targets.Signed.Version, st.targets.Signed.Expires
		case metadata.SNAPSHOT:
			rs.Version, rs.Expires = st.snapshot.Signed.Version, st.snapshot.Signed.Expires
		case metadata.TIMESTAMP:
			rs.Version, rs.Expires = st.timestamp.Signed.Version, st.timestamp.Signed.Expires
		}
		for _, s := range signers[role] {
			if slices.Contains(rs.KeyIDs, s.id) {
				rs.KeysHere++
			}
		}
		out.Roles = append(out.Roles, rs)
	}
	out.Targets, err = targetsOf(st.targets.Signed.Targets)
	return &out, err
}

// targetsOf reads keel's metadata of every target, sorted by path.
func targetsOf(m map[string]*metadata.TargetFiles) ([]Target, error) {
	var out []Target
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		tf := m[p]
		var custom []byte
		if tf.Custom != nil {
			custom = *tf.Custom
		}
		t, err := ParseTarget(p, tf.Length, hex.EncodeToString(tf.Hashes["sha256"]), custom)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
