// Package manifest describes what a slot (or the recovery seed) holds: the
// digests of its kernel and initrd, the kernel command line, how to mount
// its root filesystem, and its version and security version. keel-init
// boots nothing whose kernel or initrd does not match the manifest.
//
// The encoding is JSON. A manifest is signed with ed25519 (keys.go,
// sign.go): the slot container's entry "manifest.sig" (SigEntry) holds a
// JSON envelope of one or more signatures over SigDomain + the exact
// manifest bytes, and keel-init calls Verify with the public keys it
// trusts before it parses, let alone uses, anything from the slot.
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

// Manifest is one slot's manifest.
type Manifest struct {
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"security_version"`
	Cmdline         string `json:"cmdline"`
	Kernel          Digest `json:"kernel"`
	Initrd          Digest `json:"initrd"`
	Root            Root   `json:"root"`
	// Data, in a recovery seed's manifest only, is the digest of the seed's
	// data entry: the empty file system a factory reset writes to the data
	// partition (package recovery).
	Data *Digest `json:"data,omitempty"`
}

// Parse decodes and checks a manifest.
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
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the fields.
func (m *Manifest) Validate() error {
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
	if strings.ContainsAny(m.Cmdline, "\x00\n") || strings.ContainsAny(m.Version, "\x00\n") {
		return fmt.Errorf("manifest: cmdline and version must be one line")
	}
	return nil
}

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
