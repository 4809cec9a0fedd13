// Package manifest describes what a slot (or the recovery seed) holds: the
// board and role it is for, the digests of its kernel and initrd, the
// kernel command line, how to mount its root filesystem, and its version
// and security version. keel-init boots nothing whose kernel or initrd
// does not match the manifest.
//
// The encoding is JSON. A manifest is signed with ed25519 (keys.go,
// sign.go): the slot container's entry "manifest.sig" (SigEntry) holds a
// JSON envelope of one or more signatures over SigDomain + the exact
// manifest bytes, and keel-init calls VerifyFor with the public keys it
// trusts before it parses, let alone uses, anything from the slot.
//
// # Board and role
//
// One set of keys signs every product and both kinds of manifest, so a
// signature alone says only "a release key signed this". Every manifest
// therefore names, in the signed JSON, the board it is for ("compatible",
// the board's name, boards.Board.Name) and its role: "slot" (it boots from
// an A/B slot) or "seed" (the recovery seed's own manifest, with the
// digest of the factory-reset data; a seed carries a second, slot-role
// manifest for the slot it reinstalls, package recovery). Validate
// requires both. VerifyFor checks the signature, then that the manifest is
// for the expected board and role: a slot manifest of another board, a
// seed's manifest copied into a slot, or a slot's manifest passed off as
// the seed's is refused with ErrWrongBoard or ErrWrongRole, naming both.
//
// The binding is a pair of signed fields, not a per-role signature domain
// (SigDomain is one constant). Why: what is signed is then exactly what
// `keel verify` prints and what VerifyFor compares, in one place; a
// manifest of the wrong role fails with "a seed's, not a slot's" rather
// than with "signature does not verify", the error of tampering; and a
// manifest can be verified (and its role shown) without knowing its role
// in advance. A field is only as good as its one reading, so Parse leaves
// no room for two: every object key must be exactly a known field name
// (lower case, so encoding/json's case-insensitive matching never applies),
// no key may appear twice, and nothing may follow the JSON object. A
// manifest from before the binding has neither field and is refused.
//
// Key files are text, one key line each, with an optional comment:
//
//	keel-ed25519-private <base64 32-byte seed> <comment>    (NAME.key, mode 0600)
//	keel-ed25519 <base64 32-byte public key> <comment>      (NAME.pub)
//
// A trusted-keys file holds several public key lines; blank lines and
// lines starting with # are ignored. A key's ID (KeyID) is the first 8
// bytes of the SHA-256 of its public key, in hex.
//
// Key rotation: sign with the old and the new key while devices trust
// the old one, ship keel with both keys trusted, then sign with the new
// key only and drop the old key from the trusted keys.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Digest is the SHA-256 and size of a blob.
type Digest struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// DigestOf hashes r.
func DigestOf(r io.Reader) (Digest, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Digest{}, err
	}
	return Digest{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// Verity are the dm-verity parameters of a root filesystem whose hash tree
// follows it in the same partition (package verity builds it; the format
// is veritysetup's, version 1, SHA-256, 4 KiB blocks, no superblock).
type Verity struct {
	// RootHash and Salt are hex.
	RootHash string `json:"root_hash"`
	Salt     string `json:"salt"`
	// DataBlocks is the size of the filesystem in 4 KiB blocks;
	// HashOffset is where the tree starts in the partition, in bytes.
	DataBlocks uint64 `json:"data_blocks"`
	HashOffset uint64 `json:"hash_offset"`
}

// Root says how stage 2 mounts the slot's root filesystem.
type Root struct {
	// FSType is the filesystem type: erofs, squashfs or ext4.
	FSType string `json:"fstype"`
	// Verity, when set, protects the filesystem with dm-verity: stage 2
	// maps it through a verity target and never mounts it directly.
	Verity *Verity `json:"verity,omitempty"`
}

// Role is what a manifest is for: a slot, or the recovery seed.
type Role string

// The roles.
const (
	// RoleSlot: the manifest of an A/B slot, which keel-init boots.
	RoleSlot Role = "slot"
	// RoleSeed: the recovery seed's own manifest, which only recovery
	// reads; it never boots a slot.
	RoleSeed Role = "seed"
)

// MaxCompatible is the longest board name a manifest may carry.
const MaxCompatible = 64

// AnyBoard, as Expect.Compatible, accepts a manifest for any board. Host
// tools that inspect an image without knowing its board may pass it;
// keel-init and recovery always pass their board's name.
const AnyBoard = "*"

// Manifest is one slot's (or the seed's) manifest.
type Manifest struct {
	// Compatible is the name of the board the manifest is for
	// (boards.Board.Name, "qemu-x86_64-uefi"): 1 to MaxCompatible of
	// a-z A-Z 0-9 . _ , + -.
	Compatible string `json:"compatible"`
	// Role is RoleSlot or RoleSeed.
	Role Role `json:"role"`

	Version         string `json:"version"`
	SecurityVersion uint64 `json:"security_version"`
	Cmdline         string `json:"cmdline"`
	Kernel          Digest `json:"kernel"`
	Initrd          Digest `json:"initrd"`
	Root            Root   `json:"root"`
	// Data, in a recovery seed's manifest only (RoleSeed), is the digest
	// of the seed's data entry: the empty file system a factory reset
	// writes to the data partition (package recovery).
	Data *Digest `json:"data,omitempty"`
}

// Parse decodes and checks a manifest: one JSON object whose keys are
// exactly the field names, each once (see the package documentation),
// nothing after it but white space, and fields that Validate accepts.
func Parse(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	// One JSON object and nothing after it but white space, as the
	// signature envelope's parser: signed bytes carry nothing unparsed.
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return nil, fmt.Errorf("manifest: trailing data after the JSON object")
	}
	if err := checkKeys(b); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the fields.
func (m *Manifest) Validate() error {
	if m.Compatible == "" {
		return fmt.Errorf("manifest: no compatible: the manifest must name the board it is for")
	}
	if !validCompatible(m.Compatible) {
		return fmt.Errorf("manifest: compatible %q: want a board name of 1 to %d characters a-z A-Z 0-9 . _ , + -", abbrev(m.Compatible), MaxCompatible)
	}
	switch m.Role {
	case RoleSlot, RoleSeed:
	case "":
		return fmt.Errorf("manifest: no role: the manifest must say whether it is a %s's or a %s's", RoleSlot, RoleSeed)
	default:
		return fmt.Errorf("manifest: role %q: want %q or %q", abbrev(string(m.Role)), RoleSlot, RoleSeed)
	}
	if m.Data != nil && m.Role != RoleSeed {
		return fmt.Errorf("manifest: data: only a %s's manifest carries a data file system, this is a %s's", RoleSeed, m.Role)
	}
	for name, d := range map[string]Digest{"kernel": m.Kernel, "initrd": m.Initrd} {
		if b, err := hex.DecodeString(d.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("manifest: %s sha256 %q is not 64 hex digits", name, d.SHA256)
		}
		if d.Size <= 0 {
			return fmt.Errorf("manifest: %s size %d", name, d.Size)
		}
	}
	if d := m.Data; d != nil {
		if b, err := hex.DecodeString(d.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("manifest: data sha256 %q is not 64 hex digits", d.SHA256)
		}
		if d.Size <= 0 {
			return fmt.Errorf("manifest: data size %d", d.Size)
		}
	}
	if v := m.Root.Verity; v != nil {
		if b, err := hex.DecodeString(v.RootHash); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("manifest: verity root hash %q is not 64 hex digits", v.RootHash)
		}
		if b, err := hex.DecodeString(v.Salt); err != nil || len(b) > 256 {
			return fmt.Errorf("manifest: verity salt %q is not hex of at most 256 bytes", v.Salt)
		}
		if v.DataBlocks == 0 || v.HashOffset%4096 != 0 || v.HashOffset < v.DataBlocks*4096 {
			return fmt.Errorf("manifest: verity tree at %d overlaps or misaligns with %d data blocks", v.HashOffset, v.DataBlocks)
		}
	}
	switch m.Root.FSType {
	case "erofs", "squashfs", "ext4":
	default:
		return fmt.Errorf("manifest: root fstype %q: want erofs, squashfs or ext4", m.Root.FSType)
	}
	if strings.ContainsAny(m.Cmdline, "\x00\n") || strings.ContainsAny(m.Version, "\x00\n\\") {
		return fmt.Errorf("manifest: cmdline and version must be one line (and the version without backslashes)")
	}
	// The version is recorded in the boot record, whose texts are bounded.
	if m.Version == "" || len(m.Version) > MaxVersion {
		return fmt.Errorf("manifest: version %.40q: want 1 to %d bytes", m.Version, MaxVersion)
	}
	return nil
}

// MaxVersion bounds a manifest's version (the boot record keeps it).
const MaxVersion = 128

func validCompatible(s string) bool {
	if len(s) == 0 || len(s) > MaxCompatible {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._,+-", c)) {
			return false
		}
	}
	return true
}

// checkKeys walks the JSON value b (which decoded) and refuses an object
// key that is not lower-case ASCII (a-z 0-9 _, as every field name is) or
// that appears twice in its object. encoding/json matches keys without
// regard to case (Unicode folding included) and keeps the last of
// duplicates; other JSON readers (the release engineer's jq, a review
// tool) may read such a manifest differently. With exact, unique keys the
// signed bytes have one reading.
func checkKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*object // nil for an array
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1] != nil {
			stack[n-1].wantKey = true
		}
	}
	for {
		t, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if n := len(stack); n > 0 && stack[n-1] != nil && stack[n-1].wantKey {
			top := stack[n-1]
			if t == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k, _ := t.(string)
			if !validKey(k) {
				return fmt.Errorf("manifest: key %q: field names are lower case (a-z 0-9 _)", abbrev(k))
			}
			if top.keys[k] {
				return fmt.Errorf("manifest: key %q appears twice in one object", k)
			}
			top.keys[k], top.wantKey = true, false
			continue
		}
		switch t {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, nil)
		case json.Delim(']'), json.Delim('}'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Expect is what a manifest must be for: the board keel runs on and the
// role of the place the manifest was read from.
type Expect struct {
	// Compatible is the board's name; AnyBoard accepts any board.
	Compatible string
	// Role is RoleSlot for a slot container, RoleSeed for the seed.
	Role Role
}

// Check returns nil when m is for e's board and role, else an error
// wrapping ErrWrongBoard or ErrWrongRole that names what m is for and
// what was expected. A field of e left empty is not checked (VerifyFor
// requires both).
func (e Expect) Check(m *Manifest) error {
	if e.Role != "" && m.Role != e.Role {
		return &bindingError{ErrWrongRole, fmt.Sprintf("manifest is a %s's, not a %s's", m.Role, e.Role)}
	}
	if e.Compatible != "" && e.Compatible != AnyBoard && m.Compatible != e.Compatible {
		return &bindingError{ErrWrongBoard, fmt.Sprintf("manifest is for board %s, this is %s", m.Compatible, e.Compatible)}
	}
	return nil
}

// bindingError says what a manifest is for and what was expected; it
// matches its sentinel (ErrWrongBoard, ErrWrongRole) with errors.Is.
type bindingError struct {
	sentinel Error
	msg      string
}

func (e *bindingError) Error() string { return e.msg }
func (e *bindingError) Unwrap() error { return e.sentinel }

// Marshal encodes m.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", "  ")
}

// Check hashes r and compares it with want; the error names what differs.
func Check(what string, r io.Reader, want Digest) error {
	// Read at most one byte more than the signed size: an input longer
	// than the manifest says fails without being read (or copied) whole.
	got, err := DigestOf(io.LimitReader(r, want.Size+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	if got != want {
		return fmt.Errorf("%s digest mismatch: manifest says sha256 %s (%d bytes), image has %s (%d bytes)",
			what, short(want.SHA256), want.Size, short(got.SHA256), got.Size)
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// CheckJSONKeys applies Parse's key rule to another signed JSON document
// (an update bundle's header): every object key lower-case ASCII (a-z 0-9
// _) and none twice in its object, so that the signed bytes have one
// reading whatever JSON reader looks at them.
func CheckJSONKeys(b []byte) error { return checkKeys(b) }
