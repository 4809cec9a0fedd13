package bootimage

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/initramfs/sysinit"
)

// TestStageContract: keel-init reads the stage of a built archive back
// (sysinit.ReadStage), and its board reader gets the board.
func TestStageContract(t *testing.T) {
	in := newInputs(t)
	for _, s := range []layout.Stage{layout.Stage1, layout.Stage2} {
		recs := read(t, build(t, in.spec(s)))
		root := t.TempDir()
		for _, path := range []string{layout.StagePath, layout.BoardPath} {
			p := filepath.Join(root, path)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, recs[path].Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := sysinit.ReadStage(root); err != nil || got != s {
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
}
