package channel

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Kinds of target.
const (
	KindBundle = "bundle" // a full update bundle
	KindDelta  = "delta"  // a static delta (keel bundle delta) from DeltaFrom
)

// customKey is the key of keel's object in a target's TUF "custom" field.
const customKey = "keel"

// MaxCustom bounds a target's custom metadata (it is read from the
// channel before anything vouches for what it says beyond the targets
// role's signature).
const MaxCustom = 4 << 10

// maxHeaderRegion bounds the signed header region a target may announce
// (a bundle's header lists seven parts: a few KiB).
const maxHeaderRegion = 1 << 20

// Target is one target of the channel as keel reads it: the TUF path,
// length and SHA-256 of the file, and keel's custom metadata, which says
// before any download what the file is.
type Target struct {
	// Path is the target's TUF path (BOARD/VERSION.bundle,
	// BOARD/VERSION-from-FROM.bundle); Length and SHA256 its file's
	// (TUF's length and hashes).
	Path   string `json:"path"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
	Custom
}

// Custom is keel's custom metadata of a target ("custom": {"keel": ...}).
type Custom struct {
	Kind            string `json:"kind"`
	Board           string `json:"board"`
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"security_version"`
	// HeaderSHA256 is the SHA-256 of the bundle's signed header region
	// (preamble, header, signature and padding: its first HeaderSize
	// bytes), which lists every part's size and SHA-256: pinning it pins
	// the whole file, checked before anything is written.
	HeaderSHA256 string `json:"header_sha256"`
	HeaderSize   int64  `json:"header_size"`
	// DeltaFrom is the version a static delta applies to.
	DeltaFrom string `json:"delta_from,omitempty"`
	// Rollout is the share of devices that take it, in percent (0..100).
	Rollout int `json:"rollout_percent"`
}

// ErrBadTarget: a target's metadata is not what keel publishes.
var ErrBadTarget = errors.New("channel: bad target metadata")

// ValidName reports whether s may be a board or version in a target's
// path: 1 to 64 letters, digits and . _ + ~ -, not starting with a dot.
func ValidName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+~-", r)
		if !ok {
			return false
		}
	}
	return true
}

// TargetPath is the TUF path of a bundle (from == "") or of a static
// delta from version from.
func TargetPath(board, version, from string) string {
	if from == "" {
		return path.Join(board, version+".bundle")
	}
	return path.Join(board, version+"-from-"+from+".bundle")
}

// Check says what is wrong with c, or nil.
func (c Custom) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadTarget, fmt.Sprintf(format, args...))
	}
	switch c.Kind {
	case KindBundle:
		if c.DeltaFrom != "" {
			return bad("a full bundle with delta_from %q", c.DeltaFrom)
		}
	case KindDelta:
		if !ValidName(c.DeltaFrom) {
			return bad("a delta from %q, not a version", c.DeltaFrom)
		}
	default:
		return bad("kind %q (want %s or %s)", c.Kind, KindBundle, KindDelta)
	}
	if !ValidName(c.Board) {
		return bad("board %q", c.Board)
	}
	if !ValidName(c.Version) {
		return bad("version %q", c.Version)
	}
	if b, err := hex.DecodeString(c.HeaderSHA256); err != nil || len(b) != 32 || strings.ToLower(c.HeaderSHA256) != c.HeaderSHA256 {
		return bad("header_sha256 %q is not 64 lower-case hex digits", c.HeaderSHA256)
	}
	if c.HeaderSize <= 0 || c.HeaderSize > maxHeaderRegion {
		return bad("header_size %d (want 1..%d)", c.HeaderSize, maxHeaderRegion)
	}
	if c.Rollout < 0 || c.Rollout > 100 {
		return bad("rollout_percent %d (want 0..100)", c.Rollout)
	}
	return nil
}

// ParseTarget reads keel's metadata of the TUF target at path from its
// custom field, bounded and checked; length and sha256 are TUF's.
func ParseTarget(path string, length int64, sha256 string, custom []byte) (Target, error) {
	t := Target{Path: path, Length: length, SHA256: sha256}
	if len(custom) > MaxCustom {
		return t, fmt.Errorf("%w: %s: custom metadata of %d bytes (at most %d)", ErrBadTarget, path, len(custom), MaxCustom)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(custom, &outer); err != nil {
		return t, fmt.Errorf("%w: %s: %v", ErrBadTarget, path, err)
	}
	raw, ok := outer[customKey]
	if !ok {
		return t, fmt.Errorf("%w: %s: no %q object in its custom metadata: not published by keel", ErrBadTarget, path, customKey)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&t.Custom); err != nil {
		return t, fmt.Errorf("%w: %s: %v", ErrBadTarget, path, err)
	}
	if err := t.Custom.Check(); err != nil {
		return t, fmt.Errorf("%s: %w", path, err)
	}
	if want := TargetPath(t.Board, t.Version, t.DeltaFrom); path != want {
		return t, fmt.Errorf("%w: %s: its metadata says %s", ErrBadTarget, path, want)
	}
	if length <= t.HeaderSize {
		return t, fmt.Errorf("%w: %s: %d bytes, not more than its header region (%d)", ErrBadTarget, path, length, t.HeaderSize)
	}
	if b, err := hex.DecodeString(sha256); err != nil || len(b) != 32 {
		return t, fmt.Errorf("%w: %s: no SHA-256 of the file", ErrBadTarget, path)
	}
	return t, nil
}

// marshalCustom is the custom field of a target.
func marshalCustom(c Custom) (json.RawMessage, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(map[string]Custom{customKey: c})
	return json.RawMessage(b), err
}
