// Package channel is keel's update channel: a repository of The Update
// Framework (TUF, through github.com/theupdateframework/go-tuf/v2) whose
// targets are update bundles and static deltas, served as static files by
// any web server or CDN, or copied to a USB stick.
//
// The release side (Repo) makes and signs the repository: Init (root,
// targets, snapshot and timestamp keys with their thresholds; the root
// keys may be kept offline), Publish (a bundle and its static deltas as
// targets whose custom metadata, Target, says what keel needs before any
// download: board, version, security version, the digest and size of the
// bundle's signed header region, the version a delta applies to, the
// rollout share), Refresh (a new timestamp), Rotate (a role's keys) and
// Status (versions and expiries).
//
// The device side (Check) refreshes the trusted metadata as TUF
// prescribes (root chain, timestamp, snapshot, targets: signatures,
// thresholds, versions never going back, expiry) from an http(s) URL or a
// local folder, keeping it in a state folder, and Decide, a pure
// function, says what to install and why, or why not: up to date, not in
// this rollout, wrong board, below the anti-rollback floor (an expired or
// replayed channel is refused by Check itself). The install itself is
// package update's (cli's keel update apply).
package channel
