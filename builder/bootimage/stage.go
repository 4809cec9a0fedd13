package bootimage

import "fmt"

// Stage is the stage an archive runs, written to StagePath. keel-init reads
// it with package initramfs/sysinit (sysinit.Stage, sysinit.ReadStage);
// the keel command links no boot code (cmd/keel's TestNoBootCode), so the
// values are repeated here and a test holds the two together.
type Stage int

// The stages.
const (
	// Stage1 is keel's own initramfs: decide, verify, measure, kexec.
	Stage1 Stage = 1
	// Stage2 is the slots' initrd: dm-verity root, switch_root.
	Stage2 Stage = 2
)

// StagePath is where the stage is written (sysinit.StagePath).
const StagePath = "/etc/keel/stage"

// String is the stage as StagePath holds it ("1" or "2").
func (s Stage) String() string { return fmt.Sprint(int(s)) }

// FileData is what StagePath holds for s (sysinit.Stage.FileData).
func (s Stage) FileData() []byte { return []byte(s.String() + "\n") }

// ParseStage parses "1" or "2" (a command line's --stage).
func ParseStage(s string) (Stage, error) {
	switch s {
	case Stage1.String():
		return Stage1, nil
	case Stage2.String():
		return Stage2, nil
	}
	return 0, fmt.Errorf("stage %q: want 1 (keel's initramfs) or 2 (the slots' initrd)", s)
}
