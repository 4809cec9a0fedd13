package bootenv

import (
	"crypto/rand"
	"encoding/hex"
)

// IDBytes is how many random bytes NewID draws: 128 bits, so that two
// events of one device (or of every device) never share an id.
const IDBytes = 16

// Bounds of an id in a record (ValidID): keel writes 2*IDBytes hexadecimal
// digits; a record may hold 16 to 64 (room for a later keel), never more.
const (
	minIDLen = 16
	maxIDLen = 64
)

// NewID returns a new random id (2*IDBytes lowercase hexadecimal digits)
// for a trial (Record.TrialID) or an install run (Record.InstallToken).
// Transitions take ids as arguments; the caller draws them here, or from
// another source of random bytes (keel-init, which must not block or
// crash on an entropy pool that is not ready: HexID).
func NewID() string {
	b := make([]byte, IDBytes)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return HexID(b)
}

// HexID makes an id of random bytes: their lowercase hexadecimal digits.
func HexID(random []byte) string { return hex.EncodeToString(random) }

// ValidID reports whether s can be a trial id or an install token: 16 to
// 64 lowercase hexadecimal digits. Both are unauthenticated (anyone who can
// write the store can write them), so they are only ever compared, never
// parsed further or used as a path.
func ValidID(s string) bool {
	if len(s) < minIDLen || len(s) > maxIDLen {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
