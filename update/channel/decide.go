package channel

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/keelboot/keel/manifest"
)

// Device is what Decide knows of the device.
type Device struct {
	// Board is the running slot's board (its manifest's compatible),
	// Version and SecurityVersion the running slot's.
	Board           string `json:"board"`
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"security_version"`
	// Floor is the TPM's anti-rollback counter (-1: not known; keel-init
	// refuses to boot a security version below it).
	Floor int64 `json:"anti_rollback_floor"`
	// ID is the device's stable id: the rollout share is decided from it.
	ID string `json:"id"`
}

// Reason says why Decide chose what it did.
type Reason string

// Reasons.
const (
	ReasonInstall    Reason = "install"         // a newer version for this device
	ReasonUpToDate   Reason = "up-to-date"      // nothing newer for this board
	ReasonNotRollout Reason = "not-in-rollout"  // newer versions, but this device is not in their share yet
	ReasonFloor      Reason = "below-floor"     // newer versions, below the anti-rollback counter
	ReasonBoard      Reason = "wrong-board"     // the channel has no release for this board
	ReasonExpired    Reason = "expired"         // the channel's metadata expired (a frozen mirror): Check refuses it
	ReasonRefused    Reason = "channel-refused" // the channel's metadata did not verify (replay, signatures)
	ReasonBusy       Reason = "busy"            // a trial, an install or recovery runs: not now
	ReasonWindow     Reason = "outside-window"  // apply outside its maintenance window: not now
)

// Decision is what Decide chose.
type Decision struct {
	Reason Reason `json:"reason"`
	// Text says it for a person.
	Text string `json:"text"`
	// Target is the version to install (its full bundle), and Fetch the
	// file to install it from: the static delta from the running version
	// when the channel has one, else Target itself (the install fetches
	// only the blocks the device lacks). Nil unless Reason is install.
	Target *Target `json:"target,omitempty"`
	Fetch  *Target `json:"fetch,omitempty"`
	// Newest is the newest release for the board, whatever the reason.
	Newest *Target `json:"newest,omitempty"`
}

// rolloutBuckets is how finely the rollout share is cut.
const rolloutBuckets = 10000

// RolloutBucket is the device's place in the rollout of a release, in
// [0, 10000): from the device id and the release (board and version), so
// that one device is early in one release and late in another, and the
// same device stays in a release's share as the share grows.
func RolloutBucket(id, board, version string) int {
	h := sha256.Sum256([]byte("keel rollout\x00" + id + "\x00" + board + "\x00" + version))
	return int(binary.BigEndian.Uint64(h[:8]) % rolloutBuckets)
}

// InRollout reports whether the device with id takes the release t at its
// rollout share: 0 none, 100 all, and whoever is in at p is in at every
// share above p.
func InRollout(id string, t Custom) bool {
	return RolloutBucket(id, t.Board, t.Version) < t.Rollout*rolloutBuckets/100
}

// Decide chooses what the device installs from the channel's targets: the
// newest release for its board that is newer than the running version (and
// not a lower security version), at or above the anti-rollback floor, and
// whose rollout share includes the device; from the static delta for the
// running version if the channel has one. It says why it installs nothing
// otherwise, naming the newest release's obstacle.
func Decide(d Device, targets []Target) Decision {
	var rel []Target
	boards := map[string]bool{}
	for _, t := range targets {
		boards[t.Board] = true
		if t.Kind == KindBundle && t.Board == d.Board {
			rel = append(rel, t)
		}
	}
	if len(rel) == 0 {
		others := slices.Sorted(func(yield func(string) bool) {
			for b := range boards {
				if !yield(b) {
					return
				}
			}
		})
		text := fmt.Sprintf("the channel has no release for board %s", d.Board)
		if len(others) > 0 {
			text += " (it has releases for " + strings.Join(others, ", ") + ")"
		}
		return Decision{Reason: ReasonBoard, Text: text}
	}
	slices.SortFunc(rel, func(a, b Target) int {
		if c := manifest.CompareVersions(b.Version, a.Version); c != 0 {
			return c
		}
		return cmp.Compare(b.SecurityVersion, a.SecurityVersion)
	})
	newest := rel[0]
	var first *Decision
	note := func(dd Decision) {
		if first == nil {
			first = &dd
		}
	}
	for i := range rel {
		t := rel[i]
		if manifest.CompareVersions(t.Version, d.Version) <= 0 || t.SecurityVersion < d.SecurityVersion {
			break
		}
		if d.Floor >= 0 && t.SecurityVersion < uint64(d.Floor) {
			note(Decision{Reason: ReasonFloor, Text: fmt.Sprintf("version %s has security version %d, below this device's anti-rollback counter %d: keel-init would refuse to boot it",
				t.Version, t.SecurityVersion, d.Floor)})
			continue
		}
		if !InRollout(d.ID, t.Custom) {
			note(Decision{Reason: ReasonNotRollout, Text: fmt.Sprintf("version %s is rolled out to %d%% of devices; this one is not among them yet (its place: %d of %d)",
				t.Version, t.Rollout, RolloutBucket(d.ID, t.Board, t.Version), rolloutBuckets)})
			continue
		}
		fetch := &rel[i]
		how := "its full bundle (only the blocks this device lacks are fetched)"
		for j := range targets {
			x := targets[j]
			if x.Kind == KindDelta && x.Board == t.Board && x.Version == t.Version && x.SecurityVersion == t.SecurityVersion && x.DeltaFrom == d.Version {
				fetch = &targets[j]
				how = "the static delta from the running version " + d.Version
				break
			}
		}
		return Decision{Reason: ReasonInstall, Target: &rel[i], Fetch: fetch, Newest: &rel[0],
			Text: fmt.Sprintf("install version %s (security version %d) over the running %s, from %s", t.Version, t.SecurityVersion, d.Version, how)}
	}
	if first != nil {
		first.Newest = &newest
		return *first
	}
	return Decision{Reason: ReasonUpToDate, Newest: &newest,
		Text: fmt.Sprintf("up to date: running version %s, the newest release for %s is %s", d.Version, d.Board, newest.Version)}
}
