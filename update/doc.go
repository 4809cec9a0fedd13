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
// keel-init links package slotwrite but nothing of update/: the HTTP
// client, the pipe reader and the install's policy are the running
// system's.
package update
