// Package update is the over-the-air side of an install: Install opens an
// update bundle (package format/bundle) from a file, a block device, a pipe
// or an HTTP(S) URL (package update/source), checks it (signatures, board,
// the caller's policy: downgrades, the anti-rollback counter) before
// anything is written, and hands it to the verified slot writer (package
// slotwrite), which writes the inactive slot fetching only the blocks the
// device does not already have, safe against a power or network cut at
// any moment (docs/DESIGN.md section 8). The order of the writes, the
// delta and the power-cut argument are package slotwrite's; the recovery
// seed's reinstall (package recovery) is the writer's other source.
//
// Planning comes first, before a byte of the bundle is read, so that a
// refusal costs no download: PlanDevice (on the running device: the target
// slot from the boot record, bootenv.InstallTarget, never the running one;
// the running slot verified with keel-init's keys names the board; the
// anti-rollback counter) and PlanImage (a disk image offline: its GPT, its
// boot record when it has one, else the record keel-init would start)
// return a Plan: the target, the policy (Policy: no downgrade unless
// allowed, nothing below the counter), the boot record's part of the run
// (Plan.Install marks the slot being written just before the first write,
// Plan.Finish puts it on trial; only the run that began last finishes).
// One install runs at a time per device or disk image: TakeLock holds an
// flock from the planning to the last commit, with the running install's
// status in the lock file for the run it refuses (or that waits). keel
// install is a thin caller of all this; an update agent calls the same.
//
// keel-init links package slotwrite but nothing of update/: the HTTP
// client, the pipe reader and the install's policy are the running
// system's.
package update
