package cmdline

import (
	"fmt"
	"strings"
	"unicode"
)

// StoreKind is the kind of boot-record store keel.store= names.
type StoreKind string

// The stores.
const (
	// StoreEFIVars is keel.store=efivars: the record is one UEFI variable
	// (package bootenv/efivars) in the efivarfs mount.
	StoreEFIVars StoreKind = "efivars"
	// StoreUBoot is keel.store=uboot:PATH: the record is in the U-Boot
	// environment that the fw_env.config at PATH describes (package
	// bootenv/ubootenv); keel-init writes that file in the OS's /run.
	StoreUBoot StoreKind = "uboot"
)

// Store is the value of keel.store=: where the boot record lives, for
// stage 2 and the slot's OS (keel status and the rest of the CLI find it
// there). The zero Store is none: keel.store= is left out.
type Store struct {
	Kind StoreKind
	// Path is the fw_env.config of a StoreUBoot store; "" otherwise.
	Path string
}

// IsZero reports whether s names no store.
func (s Store) IsZero() bool { return s == Store{} }

// String is the keel.store= value: "efivars" or "uboot:PATH" ("" for
// none). It is part of the measured command line (PCR 8), so its bytes
// must not change for a given Store.
func (s Store) String() string {
	if s.Kind == StoreUBoot {
		return string(StoreUBoot) + ":" + s.Path
	}
	return string(s.Kind)
}

// ParseStore parses a keel.store= value (String's inverse; "" is none).
// Errors wrap ErrSyntax and name the value.
func ParseStore(v string) (Store, error) {
	switch kind, path, hasPath := strings.Cut(v, ":"); {
	case v == "":
		return Store{}, nil
	case v == string(StoreEFIVars):
		return Store{Kind: StoreEFIVars}, nil
	case kind == string(StoreUBoot) && hasPath:
		if path == "" {
			return Store{}, fmt.Errorf("%w: %s=%q names no fw_env.config: want %s:PATH", ErrSyntax, KeyStore, v, StoreUBoot)
		}
		if strings.ContainsFunc(path, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' }) {
			return Store{}, fmt.Errorf("%w: %s=%q: the path holds a space, a quote or a control character, which a kernel command line cannot carry", ErrSyntax, KeyStore, v)
		}
		return Store{Kind: StoreUBoot, Path: path}, nil
	}
	return Store{}, fmt.Errorf("%w: %s=%.64q: want %s or %s:PATH", ErrSyntax, KeyStore, v, StoreEFIVars, StoreUBoot)
}
