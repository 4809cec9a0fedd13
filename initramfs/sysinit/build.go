package sysinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelboot/keel/format/layout"
)

// ReadStage reads the stage from layout.StagePath under root (the
// initramfs's root, "/" at boot). A missing or unreadable file, or one
// that holds anything but 1 or 2, is an error: keel-init never guesses its
// stage.
func ReadStage(root string) (layout.Stage, error) {
	p := filepath.Join(root, layout.StagePath)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("no %s in this initramfs: it was not built as a keel stage-1 or stage-2 archive (the builder writes 1 or 2 there)", layout.StagePath)
	}
	if err != nil {
		return 0, fmt.Errorf("reading the stage: %w", err)
	}
	s, err := layout.ParseStage(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", layout.StagePath, err)
	}
	return s, nil
}

// DevelopmentBuild reports whether the initramfs under root is a
// development build: layout.DebugPath is a regular file there.
func DevelopmentBuild(root string) bool {
	fi, err := os.Lstat(filepath.Join(root, layout.DebugPath))
	return err == nil && fi.Mode().IsRegular()
}
