// Package cli is the keel command line: it edits boot state on a live device
// or offline on an env file, a variable directory or a disk image. cmd/keel
// is a tiny main over Run.
//
// The rules live below the command: keel install's planning, policy and
// lock are package update's (update.PlanDevice, update.PlanImage,
// update.TakeLock: one install at a time per device or disk image), the
// slot choices of install and rollback package bootenv's
// (bootenv.InstallTarget, bootenv.RollbackTarget), and the boot state
// store is opened as keel-init opens it (package bootenv/bootstore).
//
// Exit codes: 0 ok, 1 usage or a request the state refuses (unknown slot,
// trying the active slot...), 2 storage or format error (missing device,
// CRC failure, corrupt record). Errors name the file, the problem and the fix.
//
// Text keel did not write itself (the boot record, which the OS can write;
// the event log in /run; an unverified bundle header) is printed through
// printable, and JSON through printJSON (escape.go), so that it cannot put
// terminal controls on an admin's screen. On a device keel booted with a
// TPM, rollback and set-active refuse a slot below the anti-rollback floor
// (rollback.go); install's bounds on time and rate and the drain of a pipe
// are in limits.go.
package cli
