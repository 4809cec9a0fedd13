// Package dataarea keeps the data partition's per-slot areas: data that
// rolls back with the slot. Stage 2 (package initramfs/stage2) mounts the
// data partition at /data in the slot's root and calls Prepare, then Bind,
// before it switches root; the OS then finds
//
//	/data/slot    the booted slot's area: a bind mount of slots/<slot>/data
//	/data/shared  the shared area, which never rolls back (logs, credentials)
//
// On the data partition:
//
//	shared/               the shared area
//	slots/<slot>/data/    the slot's area
//	slots/<slot>/install  the trial the area was made for (InstallID: the
//	                      trial's id, which keel-init hands over, or the
//	                      root hash), written with the area
//	slots/<slot>.new/     a snapshot being made, or, after the exchange,
//	                      the area it replaced (removed; after a power cut,
//	                      at the next boot)
//	slots/<slot>.old/     the area a snapshot replaced (older keels; removed)
//	slot/                 the empty mount point of /data/slot
//	quarantine/           what stage 2 could not remove, or found where keel
//	                      keeps a folder: set aside, reported, never read
//
// Every trial starts from the running slot's data as it is now: the first
// boot of a trial (keel.mode=trial, and the slot's area was made for
// another trial, or there is none) snapshots the other slot's area to the
// trial's. A trial is an install or a `keel try`, named by a random id in
// the boot record (bootenv.Record.TrialID), so the same bundle installed
// again, a kernel-only update (the same root), a bundle retried after a
// failed trial and a `keel try` of a slot installed earlier all start
// from a fresh copy (InstallID says what names a trial's area). The
// snapshot is a copy into slots/<trial>.new, syncfs, then one rename that
// exchanges it with the slot's folder (RENAME_EXCHANGE), so that a power
// cut leaves the trial's area either as it was or complete, and never
// writes to the source. The copy keeps owners, modes, times, extended
// attributes (file capabilities, ACLs, overlayfs's), hard links, holes and
// device nodes; it leaves sockets and inode flags out (the copier type
// says why). The console gets a summary VM tests parse:
//
//	data: snapshot of slot a's area to slot b: 12 files, 200.0 MiB in 3.21 s (16.44 s/GiB)
//
// Later boots of the same trial find their own id and keep what the trial
// wrote. A fallback, a normal boot and `keel rollback` boot a slot with
// its area as it was; the old slot's area stays until the next trial
// replaces it. What to do is decided by Decide, a pure function; Prepare
// does the I/O.
//
// The OS owns the data partition: anything can be there (issue 19). Stage
// 2 reaches it only through folder descriptors (openat2 beneath the
// partition, no link followed, nothing opened that blocks, no file read
// beyond what keel expects), bounds every walk (Limits), and escapes every
// name it prints (format/datareport.Quote). Nothing there fails a boot
// but a trial's whose area cannot be made: any other boot goes on, without
// its area if it cannot have one, and what stage 2 ignored or set aside is
// on the console and in the report it leaves the OS (format/datareport),
// which `keel status` and `keel events` show.
package dataarea

import "fmt"

// Names on the data partition.
const (
	SharedDir   = "shared"  // the shared area
	SlotsDir    = "slots"   // the per-slot areas
	MountDir    = "slot"    // the mount point of the booted slot's area
	AreaData    = "data"    // slots/<slot>/data: what the OS sees
	InstallFile = "install" // slots/<slot>/install: whose area it is
	// QuarantineDir holds what stage 2 could not remove (or found where
	// keel keeps something else), set aside: keel never reads it again.
	QuarantineDir = "quarantine"
	newSuffix     = ".new"
	oldSuffix     = ".old"
)

// ModeTrial is keel.mode= of a slot's trial boots (bootenv.ModeTrial; this
// package imports nothing of keel's).
const ModeTrial = "trial"

// Action is what Prepare does with the booted slot's area.
type Action int

// Actions.
const (
	// Use mounts the slot's area as it is.
	Use Action = iota
	// Create makes an empty area for the slot.
	Create
	// Snapshot copies the source slot's area to the slot's, replacing
	// what the slot had.
	Snapshot
)

func (a Action) String() string {
	switch a {
	case Use:
		return "use"
	case Create:
		return "create"
	case Snapshot:
		return "snapshot"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// State is what the data partition holds for a decision.
type State struct {
	// Slot is the booted slot, Mode its keel.mode=, Install the id of
	// this boot's trial (InstallID; "" when there is none or it is
	// unknown): a new area is written with it, and a trial keeps an area
	// only when it was written with it.
	Slot, Mode, Install string
	// Source is the slot whose area a trial starts from: the other slot
	// ("" when there is none to say).
	Source string
	// HasArea and AreaInstall describe slots/<Slot>: whether it exists
	// and the id it was written with.
	HasArea     bool
	AreaInstall string
	// HasSource: slots/<Source> exists.
	HasSource bool
}

// Plan is a decision: the action, the slot copied from (Snapshot) and
// why, for the console.
type Plan struct {
	Action Action
	Source string
	Why    string
}

// InstallID is the id a boot names the booted slot's area by
// (State.Install) from its mode, the trial id keel-init handed over
// (bootenv.Record.TrialID; "" when none) and the slot's dm-verity root
// hash ("" without one):
//
//   - a trial with an id: the id. The record is unauthenticated, and so
//     is the id: it only ever decides whether the trial's area is copied
//     again, compared and written, never parsed (the caller checks it is
//     one, bootenv.ValidID).
//   - a trial without one: the root hash, the id keels before trial ids
//     used. Only a keel-init older than trial ids hands none over (this
//     keel-init names every trial it boots, bootenv.WithTrialID): the
//     trial behaves as it did with that keel-init — its later boots keep
//     what it wrote, and its first boot copies the running slot's area
//     unless the slot's area was made by a trial of the same root (the
//     old rule's blind spot). Copying again at every boot would lose the
//     trial's writes, never copying would run it on an area of any age:
//     the root hash is the better of the two, and the case goes away
//     with keel-init's update.
//   - any other boot: "". It never makes an area (Create) that a later
//     trial could take for its own: every id a trial has is non-empty.
func InstallID(mode, trialID, rootHash string) string {
	switch {
	case mode != ModeTrial:
		return ""
	case trialID != "":
		return trialID
	}
	return rootHash
}

// Decide says what to do with the booted slot's area. Only a trial's
// first boot snapshots: its area is not the one made for it (s.Install,
// InstallID). Nothing else ever replaces an area, so a fallback or a
// rollback finds its area as it was.
func Decide(s State) Plan {
	src := s.Source
	if src == s.Slot {
		src = ""
	}
	if s.Mode != ModeTrial {
		if s.HasArea {
			return Plan{Action: Use, Why: "mode " + s.Mode + ": the slot's area as it is"}
		}
		return Plan{Action: Create, Why: "mode " + s.Mode + ": the slot has no area yet"}
	}
	switch {
	case s.HasArea && s.Install != "" && s.AreaInstall == s.Install:
		return Plan{Action: Use, Why: "a later boot of this trial: the area it started"}
	case s.HasArea && s.Install == "":
		return Plan{Action: Use, Why: "the trial is unknown (no trial id, no dm-verity root): the slot's area as it is"}
	case src != "" && s.HasSource:
		return Plan{Action: Snapshot, Source: src, Why: "the first boot of this trial: a copy of slot " + src + "'s area as it is now"}
	case s.HasArea:
		return Plan{Action: Use, Why: "no area to copy from: the slot's area as it is"}
	}
	return Plan{Action: Create, Why: "no area to copy from: an empty area"}
}
