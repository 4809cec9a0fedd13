package bootimage

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/keelboot/keel/manifest"
)

// TrustedKeys reads public key files (keel keygen's NAME.pub, or
// trusted-keys files) and returns the trusted-keys file keel-init reads
// (layout.TrustedKeysPath): the files' bytes, in the order given, each
// ending in a newline. Every file must parse as public keys
// (manifest.ParsePublicKeys: no private key, no key twice) and no key may
// be in two files. At least one file.
func TrustedKeys(paths []string) ([]byte, error) {
	if len(paths) == 0 {
		return nil, errors.New("bootimage: no trusted public keys given: keel-init would refuse every slot; give the .pub files of the keys that sign the slots (keel keygen makes NAME.key and NAME.pub)")
	}
	var out bytes.Buffer
	where := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("bootimage: trusted keys: %w", err)
		}
		keys, err := manifest.ParsePublicKeys(data, p)
		if err != nil {
			return nil, fmt.Errorf("bootimage: trusted keys: %w", err)
		}
		for _, k := range keys {
			if first, ok := where[k.ID()]; ok {
				return nil, fmt.Errorf("bootimage: trusted keys: key %s is in both %s and %s: give it once", k.ID(), first, p)
			}
			where[k.ID()] = p
		}
		out.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	// What keel-init will parse, checked as it will.
	if _, err := manifest.ParsePublicKeys(out.Bytes(), "trusted-keys"); err != nil {
		return nil, fmt.Errorf("bootimage: trusted keys: %w", err)
	}
	return out.Bytes(), nil
}
