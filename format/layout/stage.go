package layout

import "fmt"

// Files the builder of an initramfs writes (package builder/bootimage) to
// fix, when the archive is built, what keel-init does in it (package
// initramfs/pid1 reads them through initramfs/sysinit). The kernel command
// line decides neither: on U-Boot boards it comes from an unauthenticated
// environment, while the initramfs is part of what the firmware loads
// (and, in a UKI, verifies).
const (
	// StagePath holds the stage the archive runs (Stage.FileData): "1" in
	// keel's own initramfs, "2" in the slots' stage-2 initrd. keel-init
	// stops (powers off) when it is missing or holds anything else.
	StagePath = "/etc/keel/stage"
	// DebugPath marks a development build: when it is there, keel-init
	// says so loudly at start and opens the debug shell (/bin/sh, from
	// the debug cpio) when it cannot boot anything. Only a development
	// build made on purpose carries it: `make debug-cpio` puts it in the
	// debug cpio, next to the shell.
	DebugPath = "/etc/keel/debug"
)

// Stage is the stage an initramfs runs.
type Stage int

// The stages.
const (
	// Stage1 is keel's own initramfs: decide, verify, measure, kexec.
	Stage1 Stage = 1
	// Stage2 is the slots' initrd: dm-verity root, switch_root.
	Stage2 Stage = 2
)

// String is the stage as StagePath holds it ("1" or "2").
func (s Stage) String() string { return fmt.Sprint(int(s)) }

// FileData is what the builder writes to StagePath for s.
func (s Stage) FileData() []byte { return []byte(s.String() + "\n") }

// ParseStage parses "1" or "2": a command line's --stage, or what
// StagePath holds without its white space.
func ParseStage(s string) (Stage, error) {
	switch s {
	case Stage1.String():
		return Stage1, nil
	case Stage2.String():
		return Stage2, nil
	}
	return 0, fmt.Errorf("stage %.32q: want 1 (keel's initramfs) or 2 (the slots' initrd)", s)
}
