// Package cmdline owns keel's kernel command-line protocol: the keel.*
// parameters keel-init puts on the slot kernel's command line for stage 2
// and the slot's OS (Handoff). Both sides build and parse them here and
// nowhere else. keel's own kernel command line carries no keel.*
// parameter: on U-Boot boards it comes from an unauthenticated env, so the
// stage and the debug shell are fixed when the initramfs is built, and
// recovery or a factory reset is asked for in the boot record (keel
// recover [--factory-reset]).
//
// The slot kernel's command line is the signed manifest's command line
// followed by, in this order:
//
//	keel.stage=2                 the initrd runs keel's stage 2
//	keel.slot=NAME               the slot keel-init chose
//	keel.mode=MODE               normal, trial, fallback or recovery
//	keel.rootfstype=TYPE         the root file system type (manifest)
//	keel.secver=N                the security version of the manifest
//	                             keel-init verified (keel status shows it;
//	                             keel mark-good names it as the value
//	                             keel-init raises the anti-rollback
//	                             counter to at the slot's normal boots)
//	keel.verity=H,S,N,O          dm-verity root hash, salt ("-" for none),
//	                             data blocks, hash offset (manifest)
//	keel.store=STORE             where the boot state lives (efivars, or
//	                             uboot:/path/to/fw_env.config; Store)
//	keel.tpm=unmeasured          only when keel-init did not measure the boot
//
// keel-init measures this exact string into PCR 8 (package tpm), so its
// bytes are part of the PCR prediction: String must not change for a given
// Handoff.
package cmdline

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keelboot/keel/manifest"
)

// Parameter names.
const (
	KeyStage      = "keel.stage"
	KeySlot       = "keel.slot"
	KeyMode       = "keel.mode"
	KeyRootFSType = "keel.rootfstype"
	KeyVerity     = "keel.verity"
	KeyStore      = "keel.store"
	KeyTPM        = "keel.tpm"
)

// Unmeasured is added to the slot's command line when keel-init did not
// measure the boot (no TPM, or a TPM that failed on a board that does not
// require one): the boot mode the OS sees is "unmeasured".
const Unmeasured = KeyTPM + "=unmeasured"

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("keel command line")

// Verity is the dm-verity mapping of a slot's root, as the signed
// manifest gives it (hex strings exactly as in the manifest).
type Verity struct {
	RootHash   string // 64 hex digits
	Salt       string // hex, "" for none
	DataBlocks uint64
	HashOffset uint64
}

// String is the keel.verity= value.
func (v Verity) String() string {
	return fmt.Sprintf("%s,%s,%d,%d", v.RootHash, cmp.Or(v.Salt, "-"), v.DataBlocks, v.HashOffset)
}

// ParseVerity parses a keel.verity= value.
func ParseVerity(s string) (Verity, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		return Verity{}, fmt.Errorf("%w: %s=%q: want ROOTHASH,SALT,DATABLOCKS,HASHOFFSET", ErrSyntax, KeyVerity, s)
	}
	v := Verity{RootHash: f[0]}
	if b, err := hex.DecodeString(f[0]); err != nil || len(b) != 32 {
		return Verity{}, fmt.Errorf("%w: %s root hash %q is not 64 hex digits", ErrSyntax, KeyVerity, f[0])
	}
	if f[1] != "-" {
		if _, err := hex.DecodeString(f[1]); err != nil || f[1] == "" {
			return Verity{}, fmt.Errorf("%w: %s salt %q is not hex (or - for none)", ErrSyntax, KeyVerity, f[1])
		}
		v.Salt = f[1]
	}
	var err1, err2 error
	v.DataBlocks, err1 = strconv.ParseUint(f[2], 10, 64)
	v.HashOffset, err2 = strconv.ParseUint(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return Verity{}, fmt.Errorf("%w: %s=%q: data blocks and hash offset must be decimal numbers", ErrSyntax, KeyVerity, s)
	}
	return v, nil
}

// RootHashBytes and SaltBytes decode the hex fields (ParseVerity checked
// them; a Verity built from a verified manifest is checked by the
// manifest's parser).
func (v Verity) RootHashBytes() ([]byte, error) { return hex.DecodeString(v.RootHash) }

// SaltBytes decodes the salt; nil for none.
func (v Verity) SaltBytes() ([]byte, error) {
	if v.Salt == "" {
		return nil, nil
	}
	return hex.DecodeString(v.Salt)
}

// KeySecurityVersion is keel.secver=: the security version of the signed
// manifest keel-init verified and booted.
const KeySecurityVersion = "keel.secver"

// Handoff is what keel-init tells stage 2 and the slot's OS.
type Handoff struct {
	Slot       string
	Mode       string
	RootFSType string
	// SecurityVersion is the verified manifest's security version: on the
	// measured line, unlike the boot record's copy, which anyone with
	// access to the store can write. Always given (0 included); a line
	// without keel.secver= parses as 0.
	SecurityVersion uint64
	Verity          *Verity // nil: the root has no dm-verity tree
	// Store is keel.store=, zero when not known. ParseHandoff leaves out
	// a value it cannot parse: only the OS's tools need it, and a newer
	// keel-init may name a store this keel does not know.
	Store      Store
	Unmeasured bool
}

// Params returns the keel.* parameters in their fixed order.
func (h Handoff) Params() []string {
	p := []string{KeyStage + "=2", KeySlot + "=" + h.Slot, KeyMode + "=" + h.Mode, KeyRootFSType + "=" + h.RootFSType,
		KeySecurityVersion + "=" + strconv.FormatUint(h.SecurityVersion, 10)}
	if h.Verity != nil {
		p = append(p, KeyVerity+"="+h.Verity.String())
	}
	if !h.Store.IsZero() {
		p = append(p, KeyStore+"="+h.Store.String())
	}
	if h.Unmeasured {
		p = append(p, Unmeasured)
	}
	return p
}

// Slot returns the slot kernel's command line: base (the manifest's), then
// h's parameters.
func Slot(base string, h Handoff) string {
	parts := append([]string{strings.TrimSpace(base)}, h.Params()...)
	return strings.TrimSpace(strings.Join(parts, " "))
}

// Fields splits a command line into parameters. Values in keel's protocol
// never hold spaces or quotes, so fields are separated by white space.
func Fields(line string) []string { return strings.Fields(line) }

// Lookup returns the value of key (key=value, or "" for a bare key) and
// whether it is there exactly once. Given twice is an error: the second
// could have been appended by whoever controls part of the line.
func Lookup(line, key string) (string, bool, error) {
	var val string
	n := 0
	for _, f := range Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		if k == key {
			val = v
			n++
		}
	}
	if n > 1 {
		return "", false, fmt.Errorf("%w: %s is given %d times", ErrSyntax, key, n)
	}
	return val, n == 1, nil
}

// Value returns key's value, or "" when it is missing or given more than
// once.
func Value(line, key string) string {
	v, _, err := Lookup(line, key)
	if err != nil {
		return ""
	}
	return v
}

// ParseSecurityVersion parses a keel.secver= value: a decimal number.
func ParseSecurityVersion(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a decimal number", ErrSyntax, KeySecurityVersion, s)
	}
	return v, nil
}

// ParseHandoff reads the parameters keel-init passed to stage 2 and the
// OS. Every keel.* parameter must appear at most once, keel.stage must be 2
// and the slot and mode must be present.
func ParseHandoff(line string) (Handoff, error) {
	var h Handoff
	get := func(key string) (string, bool, error) { return Lookup(line, key) }
	stage, ok, err := get(KeyStage)
	if err != nil {
		return h, err
	}
	if !ok || stage != "2" {
		return h, fmt.Errorf("%w: no %s=2: not a slot kernel started by keel-init", ErrSyntax, KeyStage)
	}
	for _, f := range []struct {
		key  string
		dst  *string
		need bool
	}{
		{KeySlot, &h.Slot, true}, {KeyMode, &h.Mode, true}, {KeyRootFSType, &h.RootFSType, false},
	} {
		v, ok, err := get(f.key)
		if err != nil {
			return h, err
		}
		if f.need && (!ok || v == "") {
			return h, fmt.Errorf("%w: no %s=", ErrSyntax, f.key)
		}
		*f.dst = v
	}
	if v, _, err := get(KeyStore); err != nil {
		return h, err
	} else if st, err := ParseStore(v); err == nil {
		h.Store = st
	}
	if v, ok, err := get(KeySecurityVersion); err != nil {
		return h, err
	} else if ok {
		if h.SecurityVersion, err = ParseSecurityVersion(v); err != nil {
			return h, err
		}
	}
	if v, ok, err := get(KeyVerity); err != nil {
		return h, err
	} else if ok {
		vv, err := ParseVerity(v)
		if err != nil {
			return h, err
		}
		h.Verity = &vv
	}
	tpm, _, err := get(KeyTPM)
	if err != nil {
		return h, err
	}
	h.Unmeasured = tpm == "unmeasured"
	return h, nil
}

// ForManifest returns the slot kernel's command line keel-init builds for
// a verified manifest booted as slot in mode, with the store named (zero
// for none): the manifest's command line, then the Handoff parameters.
func ForManifest(m *manifest.Manifest, slot, mode string, store Store) string {
	h := Handoff{Slot: slot, Mode: mode, RootFSType: m.Root.FSType, SecurityVersion: m.SecurityVersion, Store: store}
	if v := m.Root.Verity; v != nil {
		// The root hash rides on the measured command line (PCR 8) into
		// stage 2, which maps the root through dm-verity with it.
		h.Verity = &Verity{RootHash: v.RootHash, Salt: v.Salt, DataBlocks: v.DataBlocks, HashOffset: v.HashOffset}
	}
	return Slot(m.Cmdline, h)
}
