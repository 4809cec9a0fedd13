package ubootenv

import (
	"bytes"
	"testing"
)

// TestBootstateFWEnvConfig: the fw_env.config keel-init and stage 2 write
// for the OS describes the copies BootstateConfig opens.
func TestBootstateFWEnvConfig(t *testing.T) {
	got, err := ParseConfig(bytes.NewReader(BootstateFWEnvConfig("/dev/vda2")))
	if err != nil {
		t.Fatal(err)
	}
	want, err := BootstateConfig("/dev/vda2", 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Copies) != 2 {
		t.Fatalf("%d copies, want 2", len(got.Copies))
	}
	for i := range want.Copies {
		g, w := got.Copies[i], want.Copies[i]
		if g.Path != w.Path || g.Offset != w.Offset || g.Size != w.Size {
			t.Errorf("copy %d: %+v, want %+v", i, g, w)
		}
	}
}
