package cli

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/manifest"
)

// trustedKeys returns the public keys a command trusts: those in the file
// path (--keys) when given, else the keys keel-init verified the running
// slot with and handed over (layout.TrustedKeysRunPath under
// Deps.RunDir), so that a device keeps the one set of keys its keel was
// built with. Neither is a usage error that says to give --keys.
func (c *command) trustedKeys(path string) ([]manifest.PublicKey, error) {
	if path != "" {
		return manifest.ReadPublicKeys(path)
	}
	run := filepath.Join(c.deps.RunDir, filepath.Base(layout.TrustedKeysRunPath))
	keys, err := manifest.ReadPublicKeys(run)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("no trusted keys: this system was not booted by a keel-init that hands over its keys (%s is missing); give --keys FILE", run)
	}
	return keys, err
}
