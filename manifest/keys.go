package manifest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Key file line types: the first word of a key line.
const (
	// PublicKeyType starts a public key line:
	//
	//	keel-ed25519 <base64 of the 32-byte public key> [comment]
	PublicKeyType = "keel-ed25519"
	// PrivateKeyType starts a private key line:
	//
	//	keel-ed25519-private <base64 of the 32-byte ed25519 seed> [comment]
	PrivateKeyType = "keel-ed25519-private"
)

// KeyIDLen is the length of a key ID in hex digits.
const KeyIDLen = 16

// maxKeyFile bounds a key file (a trusted-keys file holds a few lines).
const maxKeyFile = 1 << 20

// PublicKey is an ed25519 public key that may sign slot manifests.
type PublicKey struct {
	Key ed25519.PublicKey
	// Comment is free text after the key (who holds it, since when).
	Comment string
}

// PrivateKey is an ed25519 signing key.
type PrivateKey struct {
	Key     ed25519.PrivateKey
	Comment string
}

// KeyID returns the ID of an ed25519 public key: the first 8 bytes of its
// SHA-256, in hex (16 digits).
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:KeyIDLen/2])
}

// ID returns the key's ID (see KeyID).
func (k PublicKey) ID() string { return KeyID(k.Key) }

// String is the key's public key line without the newline.
func (k PublicKey) String() string {
	return keyLine(PublicKeyType, k.Key, k.Comment)
}

// MarshalText returns the key's public key line with a newline: the
// content of a .pub file, or one line of a trusted-keys file.
func (k PublicKey) MarshalText() ([]byte, error) {
	if len(k.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("manifest: public key of %d bytes, want %d", len(k.Key), ed25519.PublicKeySize)
	}
	return []byte(k.String() + "\n"), nil
}

// Public returns the public half of k, with k's comment.
func (k PrivateKey) Public() PublicKey {
	return PublicKey{Key: k.Key.Public().(ed25519.PublicKey), Comment: k.Comment}
}

// ID returns the ID of k's public key.
func (k PrivateKey) ID() string { return k.Public().ID() }

// MarshalText returns the private key line with a newline: the content of
// a .key file. It holds the 32-byte seed, from which ed25519 derives the
// whole key.
func (k PrivateKey) MarshalText() ([]byte, error) {
	if len(k.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("manifest: private key of %d bytes, want %d", len(k.Key), ed25519.PrivateKeySize)
	}
	return []byte(keyLine(PrivateKeyType, k.Key.Seed(), k.Comment) + "\n"), nil
}

func keyLine(typ string, b []byte, comment string) string {
	s := typ + " " + base64.StdEncoding.EncodeToString(b)
	if c := strings.Join(strings.Fields(comment), " "); c != "" {
		s += " " + c
	}
	return s
}

// GenerateKey makes a new key pair from rand (crypto/rand.Reader when nil)
// with the given comment.
func GenerateKey(rand io.Reader, comment string) (PrivateKey, PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return PrivateKey{}, PublicKey{}, fmt.Errorf("manifest: generating an ed25519 key: %w", err)
	}
	comment = strings.Join(strings.Fields(comment), " ")
	return PrivateKey{Key: priv, Comment: comment}, PublicKey{Key: pub, Comment: comment}, nil
}

// keyLines calls f for every key line of data (blank lines and lines
// starting with # skipped) with its 1-based line number and its fields.
func keyLines(data []byte, name string, f func(line int, typ string, key []byte, comment string) error) error {
	if len(data) > maxKeyFile {
		return fmt.Errorf("%s: %d bytes: too large for a key file", name, len(data))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxKeyFile+1)
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 2 {
			return fmt.Errorf("%s:%d: want %q or %q, a base64 key and an optional comment; got %q",
				name, n, PublicKeyType, PrivateKeyType, abbrev(text))
		}
		typ := fields[0]
		if typ != PublicKeyType && typ != PrivateKeyType {
			return fmt.Errorf("%s:%d: unknown key type %q: want %q (public) or %q (private)",
				name, n, abbrev(typ), PublicKeyType, PrivateKeyType)
		}
		key, err := base64.StdEncoding.Strict().DecodeString(fields[1])
		if err != nil {
			return fmt.Errorf("%s:%d: %s key is not valid base64: %w", name, n, typ, err)
		}
		if len(key) != ed25519.PublicKeySize { // = ed25519.SeedSize
			return fmt.Errorf("%s:%d: %s key is %d bytes, want %d", name, n, typ, len(key), ed25519.PublicKeySize)
		}
		if err := f(n, typ, key, strings.Join(fields[2:], " ")); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return nil
}

// ParsePublicKeys parses a public key file or a trusted-keys file: one
// public key line per key; blank lines and lines starting with # are
// ignored. name (the file name) prefixes every error, with the line. A
// private key, a key given twice or a file without a key is an error.
func ParsePublicKeys(data []byte, name string) ([]PublicKey, error) {
	var keys []PublicKey
	seen := map[string]int{}
	err := keyLines(data, name, func(line int, typ string, key []byte, comment string) error {
		if typ == PrivateKeyType {
			return fmt.Errorf("%s:%d: this is a private key; a trusted-keys file holds public keys (%s lines, the .pub file keel keygen writes)", name, line, PublicKeyType)
		}
		k := PublicKey{Key: ed25519.PublicKey(key), Comment: comment}
		if first, ok := seen[k.ID()]; ok {
			return fmt.Errorf("%s:%d: key %s is already on line %d", name, line, k.ID(), first)
		}
		seen[k.ID()] = line
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("manifest: %s: no %s key line", name, PublicKeyType)
	}
	return keys, nil
}

// ParsePrivateKey parses a private key file: exactly one private key line
// (blank lines and # comments allowed). name prefixes every error.
func ParsePrivateKey(data []byte, name string) (PrivateKey, error) {
	var k PrivateKey
	first := 0
	err := keyLines(data, name, func(line int, typ string, key []byte, comment string) error {
		if typ == PublicKeyType {
			return fmt.Errorf("%s:%d: this is a public key; signing needs the private key (the .key file keel keygen writes)", name, line)
		}
		if first != 0 {
			return fmt.Errorf("%s:%d: a second private key (the first is on line %d): one key per file", name, line, first)
		}
		first = line
		k = PrivateKey{Key: ed25519.NewKeyFromSeed(key), Comment: comment}
		return nil
	})
	if err != nil {
		return PrivateKey{}, fmt.Errorf("manifest: %w", err)
	}
	if first == 0 {
		return PrivateKey{}, fmt.Errorf("manifest: %s: no %s key line", name, PrivateKeyType)
	}
	return k, nil
}

// ReadPublicKeys reads a public key or trusted-keys file (ParsePublicKeys).
func ReadPublicKeys(path string) ([]PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: trusted keys: %w", err)
	}
	return ParsePublicKeys(b, path)
}

// ReadPrivateKey reads a private key file (ParsePrivateKey).
func ReadPrivateKey(path string) (PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("manifest: signing key: %w", err)
	}
	// A file that is no private key (a .pub given by mistake) says so
	// first; a real one must also be private to its owner.
	k, err := ParsePrivateKey(b, path)
	if err != nil {
		return k, err
	}
	if _, err := ReadSecretFile(path); err != nil {
		return PrivateKey{}, fmt.Errorf("manifest: signing key: %w", err)
	}
	return k, nil
}

// ErrKeyExposed is wrapped when a private key file can be read by others.
var ErrKeyExposed = errors.New("private key file is readable by group or others")

// ReadSecretFile reads a private key file, refusing one that group or
// others may read (or write), as ssh does: a leaked signing key signs
// slots every device trusts.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: %w (mode %#o): chmod 600 %s", path, ErrKeyExposed, perm, path)
	}
	return io.ReadAll(f)
}

func abbrev(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// WriteNewFile creates path, which must not exist (O_EXCL: a key is never
// overwritten, nor written through a link planted there), with data and
// mode perm whatever the umask, and syncs it; a failed write leaves no
// file. Keys (0600) and their public halves or certificates are written
// with it.
func WriteNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
