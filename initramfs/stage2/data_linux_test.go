//go:build linux

package stage2

import (
	"testing"

	"github.com/keelboot/keel/format/cmdline"
)

func TestOtherSlot(t *testing.T) {
	for _, c := range []struct {
		slots  []string
		booted string
		want   string
	}{
		{[]string{"a", "b"}, "a", "b"},
		{[]string{"a", "b"}, "b", "a"},
		{[]string{"a", "b"}, "c", ""},
		{[]string{"a"}, "a", ""},
		{[]string{"a", "b", "c"}, "a", ""},
		{nil, "a", ""},
	} {
		if got := otherSlot(c.slots, c.booted); got != c.want {
			t.Errorf("otherSlot(%v, %q) = %q, want %q", c.slots, c.booted, got, c.want)
		}
	}
}

func TestDataFatal(t *testing.T) {
	for mode, want := range map[string]bool{"trial": true, "normal": false, "fallback": false, "": false} {
		if got := dataFatal(mode); got != want {
			t.Errorf("dataFatal(%q) = %v, want %v", mode, got, want)
		}
	}
}

func TestInstallOf(t *testing.T) {
	if got := installOf(cmdline.Handoff{}); got != "" {
		t.Errorf("no verity: %q", got)
	}
	h := cmdline.Handoff{Verity: &cmdline.Verity{RootHash: "ab12"}}
	if got := installOf(h); got != "ab12" {
		t.Errorf("verity: %q", got)
	}
}
