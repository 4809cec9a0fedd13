package bootimage

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// TestStageContract holds this package's copy of the stage file to
// keel-init's: the same path and bytes, and sysinit.ReadStage reads the
// stage of a built archive back; keel-init's board reader gets the board.
func TestStageContract(t *testing.T) {
	if StagePath != sysinit.StagePath {
		t.Errorf("StagePath %q, sysinit.StagePath %q", StagePath, sysinit.StagePath)
	}
	in := newInputs(t)
	for s, want := range map[Stage]sysinit.Stage{Stage1: sysinit.Stage1, Stage2: sysinit.Stage2} {
		if !bytes.Equal(s.FileData(), want.FileData()) || s.String() != want.String() {
			t.Errorf("stage %s: %q, sysinit's %q", s, s.FileData(), want.FileData())
		}
		if p, err := ParseStage(s.String()); err != nil || p != s {
			t.Errorf("ParseStage(%q) = %v, %v", s.String(), p, err)
		}
		recs := read(t, build(t, in.spec(s)))
		root := t.TempDir()
		for _, path := range []string{StagePath, layout.BoardPath} {
			p := filepath.Join(root, path)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, recs[path].Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := sysinit.ReadStage(root); err != nil || got != want {
			t.Errorf("stage %s: sysinit.ReadStage = %v, %v", s, got, err)
		}
		// What sysinit.ReadBoard does, from the archive's bytes.
		var b boards.Board
		if err := json.Unmarshal(recs[layout.BoardPath].Data, &b); err != nil || !reflect.DeepEqual(b, in.board) {
			t.Errorf("stage %s: board.json reads back as %+v, %v", s, b, err)
		} else if err := b.Validate(); err != nil {
			t.Errorf("stage %s: board.json: %v", s, err)
		}
	}
	for _, bad := range []string{"", "0", "3", "1\n", "stage1"} {
		if _, err := ParseStage(bad); err == nil {
			t.Errorf("ParseStage(%q) succeeded", bad)
		}
	}
}
