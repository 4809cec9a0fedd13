package vmkit

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/format/layout"
)

// WithBoard returns a copy of a for a variant of its board (a scenario's
// settings: the watchdog's timeout, the bound of uncounted ends): keel's
// initramfs and the slots' initrd, which carry the board, are built again
// for b into dir; everything else is shared. b must be a's board with
// settings changed, and valid.
func (a *Artefacts) WithBoard(b boards.Board, dir string) (*Artefacts, error) {
	if b.Name != a.Board.Name || b.Arch != a.Board.Arch {
		return nil, fmt.Errorf("vmkit: a variant of board %s, not %s", a.Board.Name, b.Name)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("vmkit: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	v := *a
	v.Board = b
	v.Stage1, v.Stage2 = filepath.Join(dir, "stage1.cpio.zst"), filepath.Join(dir, "stage2.cpio.zst")
	for out, stage := range map[string]layout.Stage{v.Stage1: layout.Stage1, v.Stage2: layout.Stage2} {
		if _, err := bootimage.WriteFile(out, bootimage.Spec{
			Board: b, Stage: stage, KeelInit: a.KeelInit,
			ModulesDir: a.ModulesDir, TrustedKeys: []string{a.TrustedKeys},
		}); err != nil {
			return nil, fmt.Errorf("vmkit: initramfs %s for the board variant: %w", out, err)
		}
	}
	return &v, nil
}
