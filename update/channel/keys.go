package channel

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/keelboot/keel/manifest"
)

// Roles are TUF's top-level roles, in the order they sign.
var Roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// Keys are where a channel's private keys are (never in the repository,
// which is served): ROLE.key, ROLE-2.key... in keel's key format (keel
// keygen), in Dir, and the root's in RootDir (default Dir), which may be
// an offline medium that is present only to init and to rotate.
type Keys struct {
	Dir, RootDir string
}

func (k Keys) dir(role string) string {
	if role == metadata.ROOT && k.RootDir != "" {
		return k.RootDir
	}
	return k.Dir
}

// signer is a role's private key.
type signer struct {
	key  manifest.PrivateKey
	id   string // the TUF key id
	file string
	tuf  *metadata.Key
}

func newSigner(k manifest.PrivateKey, file string) (*signer, error) {
	tk, err := metadata.KeyFromPublicKey(k.Key.Public())
	if err != nil {
		return nil, err
	}
	id, err := tk.ID()
	if err != nil {
		return nil, err
	}
	return &signer{key: k, id: id, file: file, tuf: tk}, nil
}

func (s *signer) sigstore() (signature.Signer, error) {
	return signature.LoadED25519Signer(s.key.Key)
}

// load reads the role's key files (ROLE.key, ROLE-N.key) in its folder;
// none: an empty list.
func (k Keys) load(role string) ([]*signer, error) {
	dir := k.dir(role)
	if dir == "" {
		return nil, nil // no keys given (keel channel status)
	}
	names, err := filepath.Glob(filepath.Join(dir, role+"*.key"))
	if err != nil {
		return nil, err
	}
	var out []*signer
	for _, name := range names {
		base := strings.TrimSuffix(filepath.Base(name), ".key")
		if base != role && !strings.HasPrefix(base, role+"-") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		pk, err := manifest.ParsePrivateKey(b, name)
		if err != nil {
			return nil, err
		}
		s, err := newSigner(pk, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// generate writes n new keys for role into its folder, named after the
// files already there, and returns them.
func (k Keys) generate(role string, n int) ([]*signer, error) {
	dir := k.dir(role)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var out []*signer
	for i := 1; len(out) < n; i++ {
		name := filepath.Join(dir, role+".key")
		if i > 1 {
			name = filepath.Join(dir, fmt.Sprintf("%s-%d.key", role, i))
		}
		if _, err := os.Lstat(name); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		priv, _, err := manifest.GenerateKey(rand.Reader, "keel channel "+role)
		if err != nil {
			return nil, err
		}
		b, err := priv.MarshalText()
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
			return nil, err
		}
		s, err := newSigner(priv, name)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// retire moves the key files of signers into the folder's retired/.
func retire(signers []*signer) error {
	for _, s := range signers {
		dir := filepath.Join(filepath.Dir(s.file), "retired")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := os.Rename(s.file, filepath.Join(dir, s.id[:16]+"-"+filepath.Base(s.file))); err != nil {
			return err
		}
	}
	return nil
}

// signable is TUF metadata of any role.
type signable interface {
	Sign(signature.Signer) (*metadata.Signature, error)
	ClearSignatures()
}

// enough fails unless signers hold the threshold of role r's keys.
func enough(role string, r *metadata.Role, signers []*signer, keys Keys) error {
	n := 0
	for _, s := range signers {
		if slices.Contains(r.KeyIDs, s.id) {
			n++
		}
	}
	if n < r.Threshold {
		return fmt.Errorf("channel: %d of the %s role's keys found in %s, its threshold is %d: give the folder that holds them", n, role, keys.dir(role), r.Threshold)
	}
	return nil
}

// signWith signs m with the signers whose key ids role r lists, and fails
// unless they reach its threshold (naming the folder to look in).
func signWith(m signable, role string, r *metadata.Role, signers []*signer, keys Keys) error {
	if err := enough(role, r, signers, keys); err != nil {
		return err
	}
	for _, s := range signers {
		if !slices.Contains(r.KeyIDs, s.id) {
			continue
		}
		sg, err := s.sigstore()
		if err != nil {
			return err
		}
		if _, err := m.Sign(sg); err != nil {
			return fmt.Errorf("signing %s: %w", role, err)
		}
	}
	return nil
}
