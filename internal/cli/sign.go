package cli

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelboot/keel/manifest"
)

// The signing commands: keel keygen, keel sign, keel verify. They work on
// files on the host (the image builder signs slots itself, from the
// spec's signing_keys); the global -c/--efivars/--image options do not
// apply to them.

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// keygen runs `keel keygen --out NAME [--comment TEXT]`: NAME.key (mode
// 0600) and NAME.pub, never over existing files.
func (c *command) keygen(args []string) error {
	var out, comment string
	fs, err := c.flags("keygen", args, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "write NAME.key (private) and NAME.pub (public)")
		fs.StringVar(&comment, "comment", "", "text after the key (default: NAME's base name)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("keygen takes no arguments, got %q (keel keygen --out NAME)", fs.Args())
	}
	if out == "" {
		return usagef("keygen: --out NAME required: writes NAME.key and NAME.pub")
	}
	if comment == "" {
		comment = filepath.Base(out)
	}
	keyPath, pubPath := out+".key", out+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("keygen: %s exists: refusing to overwrite a key (remove it, or pick another --out): %w", p, os.ErrExist)
		}
	}
	priv, pub, err := manifest.GenerateKey(rand.Reader, comment)
	if err != nil {
		return err
	}
	kb, err := priv.MarshalText()
	if err != nil {
		return err
	}
	pb, err := pub.MarshalText()
	if err != nil {
		return err
	}
	if err := manifest.WriteNewFile(keyPath, kb, 0o600); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := manifest.WriteNewFile(pubPath, pb, 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("keygen: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s (private: keep it secret) and %s: key ID %s\n", keyPath, pubPath, pub.ID())
	return err
}

// writeAtomic replaces path with data through a temporary file next to it.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomicFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomicFunc replaces path with what write writes, through a
// temporary file next to it, renamed only when write succeeded and the
// data is durable: no half-written file is ever left at path.
func writeAtomicFunc(path string, perm os.FileMode, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// sign runs `keel sign --key NAME.key [--key ...] MANIFEST [--out
// MANIFEST.sig]`: the signatures are added to an existing signature file.
func (c *command) sign(args []string) error {
	var keys listFlag
	var out string
	fs, err := c.flags("sign", args, func(fs *flag.FlagSet) {
		fs.Var(&keys, "key", "private key file (keel keygen's NAME.key); may be repeated")
		fs.StringVar(&out, "out", "", "signature file (default MANIFEST.sig); signatures are added to an existing one")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("sign takes one MANIFEST, got %d arguments (keel sign --key NAME.key MANIFEST [--out MANIFEST.sig])", fs.NArg())
	}
	if len(keys) == 0 {
		return usagef("sign: --key NAME.key required")
	}
	path := fs.Arg(0)
	if out == "" {
		out = path + ".sig"
	}
	var priv []manifest.PrivateKey
	for _, p := range keys {
		k, err := manifest.ReadPrivateKey(p)
		if err != nil {
			return err
		}
		priv = append(priv, k)
	}
	mb, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	old, err := os.ReadFile(out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sign: %w", err)
	}
	sig, err := manifest.Sign(mb, old, priv...)
	if err != nil {
		return fmt.Errorf("sign %s: %w", path, err)
	}
	if err := writeAtomic(out, sig, 0o644); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	env, err := manifest.ParseEnvelope(sig)
	if err != nil {
		return err
	}
	for _, k := range priv {
		if _, err := fmt.Fprintf(c.stdout, "signed %s with key %s (%s)\n", path, k.ID(), k.Comment); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s: %d signature(s), by %s\n", out, len(env.Signatures), strings.Join(env.KeyIDs(), ", "))
	return err
}

// verify runs `keel verify --keys TRUSTED [--keys ...] [--board NAME]
// [--role slot|seed] MANIFEST [MANIFEST.sig]`: exit 0 when a trusted key's
// signature verifies, as keel-init checks a slot, and the manifest is for
// the board and role given (each checked only when given; the output
// names both).
func (c *command) verify(args []string) error {
	var keyFiles listFlag
	var want manifest.Expect
	fs, err := c.flags("verify", args, func(fs *flag.FlagSet) {
		fs.Var(&keyFiles, "keys", "trusted public keys file (NAME.pub or several key lines); may be repeated")
		fs.StringVar(&want.Compatible, "board", "", "board the manifest must be for (default: any)")
		fs.Func("role", "role the manifest must have: slot or seed (default: any)", func(v string) error {
			if r := manifest.Role(v); r != manifest.RoleSlot && r != manifest.RoleSeed {
				return fmt.Errorf("want %s or %s", manifest.RoleSlot, manifest.RoleSeed)
			}
			want.Role = manifest.Role(v)
			return nil
		})
	})
	if err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usagef("verify takes MANIFEST [MANIFEST.sig], got %d arguments", fs.NArg())
	}
	if len(keyFiles) == 0 {
		return usagef("verify: --keys TRUSTED required (a file of keel-ed25519 public key lines)")
	}
	path := fs.Arg(0)
	sigPath := path + ".sig"
	if fs.NArg() == 2 {
		sigPath = fs.Arg(1)
	}
	var trusted []manifest.PublicKey
	for _, p := range keyFiles {
		k, err := manifest.ReadPublicKeys(p)
		if err != nil {
			return err
		}
		trusted = append(trusted, k...)
	}
	mb, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	sig, err := os.ReadFile(sigPath)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("verify %s: %w: %s does not exist (keel sign --key NAME.key %s)", path, manifest.ErrUnsigned, sigPath, path)
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	m, err := manifest.Verify(mb, sig, trusted)
	if err == nil {
		err = want.Check(m)
	}
	if err != nil {
		return fmt.Errorf("verify %s with %s: %w", path, sigPath, err)
	}
	// Which trusted keys signed (each checked on its own).
	var good []string
	for _, k := range trusted {
		if _, err := manifest.Verify(mb, sig, []manifest.PublicKey{k}); err == nil {
			s := k.ID()
			if k.Comment != "" {
				s += " (" + k.Comment + ")"
			}
			good = append(good, s)
		}
	}
	_, err = fmt.Fprintf(c.stdout, "%s: good signature by %s: a %s's manifest for board %s, version %q, security version %d\n",
		path, strings.Join(good, ", "), m.Role, m.Compatible, m.Version, m.SecurityVersion)
	return err
}
