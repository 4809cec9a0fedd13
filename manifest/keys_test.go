package manifest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFilesRoundTrip(t *testing.T) {
	priv, pub, err := GenerateKey(rand.Reader, "  release   key 2026 ")
	if err != nil {
		t.Fatal(err)
	}
	if pub.Comment != "release key 2026" {
		t.Errorf("comment %q", pub.Comment)
	}
	h := sha256.Sum256(pub.Key)
	if pub.ID() != hex.EncodeToString(h[:8]) || priv.ID() != pub.ID() {
		t.Errorf("ID %s, private ID %s, want %x", pub.ID(), priv.ID(), h[:8])
	}
	kb, err := priv.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	pb, err := pub.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(kb), "keel-ed25519-private ") || !strings.HasSuffix(string(kb), " release key 2026\n") {
		t.Errorf("private key file %q", kb)
	}
	if !strings.HasPrefix(string(pb), "keel-ed25519 ") || strings.Count(string(pb), "\n") != 1 {
		t.Errorf("public key file %q", pb)
	}
	priv2, err := ParsePrivateKey(kb, "k.key")
	if err != nil {
		t.Fatal(err)
	}
	if !priv2.Key.Equal(priv.Key) || priv2.Comment != priv.Comment {
		t.Error("private key changed in the round trip")
	}
	keys, err := ParsePublicKeys(pb, "k.pub")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[0].Key.Equal(pub.Key) || keys[0].Comment != pub.Comment {
		t.Errorf("public keys %v", keys)
	}
	if !keys[0].Key.Equal(priv2.Public().Key) {
		t.Error("the private key's public half differs from the .pub")
	}

	// A trusted-keys file: comments, blank lines, several keys, no comment.
	_, pub2, _ := GenerateKey(rand.Reader, "")
	file := "# keel trusted keys\n\n" + string(pb) + "   \n  # next release\n" + pub2.String() + "\n"
	dir := t.TempDir()
	path := filepath.Join(dir, "trusted")
	os.WriteFile(path, []byte(file), 0o644)
	keys, err = ReadPublicKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID() != pub.ID() || keys[1].ID() != pub2.ID() || keys[1].Comment != "" {
		t.Errorf("trusted keys %v", keys)
	}
	if _, _, err := GenerateKey(strings.NewReader("short"), ""); err == nil {
		t.Error("GenerateKey from a short reader succeeded")
	}
}

func TestKeyFileErrors(t *testing.T) {
	priv, pub, _ := GenerateKey(rand.Reader, "c")
	kb, _ := priv.MarshalText()
	pb, _ := pub.MarshalText()
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, tc := range []struct {
		name, in, want string
		private        bool
	}{
		{"empty.pub", "", "empty.pub: no keel-ed25519 key line", false},
		{"comments.pub", "# nothing\n\n", "comments.pub: no keel-ed25519 key line", false},
		{"t", "# a\nssh-ed25519 AAAA x\n", `t:2: unknown key type "ssh-ed25519"`, false},
		{"t", "keel-ed25519\n", "t:1: want", false},
		{"t", "\n\nkeel-ed25519 not*base64 c\n", "t:3: keel-ed25519 key is not valid base64", false},
		{"t", "keel-ed25519 " + b64(31) + "\n", "t:1: keel-ed25519 key is 31 bytes, want 32", false},
		{"t", string(pb) + string(pb), "t:2: key " + pub.ID() + " is already on line 1", false},
		{"t", string(pb) + string(kb), "t:2: this is a private key", false},
		{"k.key", "", "k.key: no keel-ed25519-private key line", true},
		{"k.key", string(pb), "k.key:1: this is a public key", true},
		{"k.key", string(kb) + "\n" + string(kb), "k.key:3: a second private key (the first is on line 1)", true},
		{"k.key", "keel-ed25519-private " + b64(64) + "\n", "k.key:1: keel-ed25519-private key is 64 bytes, want 32", true},
		{"big", strings.Repeat("#", 2<<20), "too large", false},
	} {
		var err error
		if tc.private {
			_, err = ParsePrivateKey([]byte(tc.in), tc.name)
		} else {
			_, err = ParsePublicKeys([]byte(tc.in), tc.name)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %.40q: %v; want %q", tc.name, tc.in, err, tc.want)
		}
	}
	if _, err := ReadPrivateKey(filepath.Join(t.TempDir(), "none.key")); err == nil || !strings.Contains(err.Error(), "none.key: no such file") {
		t.Errorf("missing key file: %v", err)
	}
	if _, err := ReadPublicKeys(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing trusted keys: %v", err)
	}
}

// FuzzParsePublicKeys: the trusted-keys parser never panics, and what it
// accepts writes back to a file that parses to the same keys.
func FuzzParsePublicKeys(f *testing.F) {
	pb, _ := fixedKey(1).Public().MarshalText()
	f.Add(pb)
	f.Add([]byte("# c\n\nkeel-ed25519 AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParsePublicKeys(b, "f")
		if err != nil {
			return
		}
		var out []byte
		for _, k := range keys {
			l, err := k.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, l...)
		}
		again, err := ParsePublicKeys(out, "f")
		if err != nil || len(again) != len(keys) {
			t.Fatalf("re-parse: %v", err)
		}
		for i := range keys {
			if !again[i].Key.Equal(keys[i].Key) || again[i].Comment != keys[i].Comment {
				t.Fatalf("key %d changed", i)
			}
		}
	})
}

// TestReadPrivateKeyRefusesExposedFile: a key group or others can read is
// refused, naming the fix (issue 9 item 16).
func TestReadPrivateKeyRefusesExposedFile(t *testing.T) {
	k, _ := genKey(t, "t")
	b, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "k.key")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKey(path); err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		os.Chmod(path, mode)
		if _, err := ReadPrivateKey(path); !errors.Is(err, ErrKeyExposed) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %#o: err = %v, want ErrKeyExposed", mode, err)
		}
	}
}
