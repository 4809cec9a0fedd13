package sysinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Files the builder of an initramfs writes to fix, when the archive is
// built, what keel-init does in it. The kernel command line decides
// neither: on U-Boot boards it comes from an unauthenticated environment,
// while the initramfs is part of what the firmware loads (and, in a UKI,
// verifies).
const (
	// StagePath holds the stage the archive runs: "1" in keel's own
	// initramfs, "2" in the slots' stage-2 initrd. keel-init stops (powers
	// off) when it is missing or holds anything else.
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
	// Stage2 is the slot kernel's initrd: dm-verity root, switch_root.
	Stage2 Stage = 2
)

// String is the stage as StagePath holds it ("1" or "2").
func (s Stage) String() string { return fmt.Sprint(int(s)) }

// FileData is what the builder writes to StagePath for s.
func (s Stage) FileData() []byte { return []byte(s.String() + "\n") }

// ReadStage reads the stage from StagePath under root (the initramfs's
// root, "/" at boot). A missing or unreadable file, or one that holds
// anything but 1 or 2, is an error: keel-init never guesses its stage.
func ReadStage(root string) (Stage, error) {
	p := filepath.Join(root, StagePath)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("no %s in this initramfs: it was not built as a keel stage-1 or stage-2 archive (the builder writes 1 or 2 there)", StagePath)
	}
	if err != nil {
		return 0, fmt.Errorf("reading the stage: %w", err)
	}
	switch s := strings.TrimSpace(string(data)); s {
	case Stage1.String():
		return Stage1, nil
	case Stage2.String():
		return Stage2, nil
	default:
		return 0, fmt.Errorf("%s holds %.32q: want 1 or 2", StagePath, s)
	}
}

// DevelopmentBuild reports whether the initramfs under root is a
// development build: DebugPath is a regular file there.
func DevelopmentBuild(root string) bool {
	fi, err := os.Lstat(filepath.Join(root, DebugPath))
	return err == nil && fi.Mode().IsRegular()
}
