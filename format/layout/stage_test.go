package layout

import (
	"strings"
	"testing"
)

// TestStage: what the builder writes for a stage parses back to it (the
// reader trims the newline), and nothing else parses.
func TestStage(t *testing.T) {
	for _, s := range []Stage{Stage1, Stage2} {
		if got, err := ParseStage(strings.TrimSpace(string(s.FileData()))); err != nil || got != s {
			t.Errorf("stage %s: FileData %q parses as %v, %v", s, s.FileData(), got, err)
		}
	}
	if string(Stage1.FileData()) != "1\n" || string(Stage2.FileData()) != "2\n" {
		t.Errorf("FileData: %q, %q; keel-init of every version reads \"1\\n\" and \"2\\n\"", Stage1.FileData(), Stage2.FileData())
	}
	for _, bad := range []string{"", "0", "3", "1\n", " 2", "stage1", "01"} {
		if _, err := ParseStage(bad); err == nil {
			t.Errorf("ParseStage(%q) succeeded", bad)
		}
	}
}
