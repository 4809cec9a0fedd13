package cmdline

import (
	"errors"
	"strings"
	"testing"
)

func TestStore(t *testing.T) {
	for v, want := range map[string]Store{
		"":                              {},
		"efivars":                       {Kind: StoreEFIVars},
		"uboot:/run/keel-fw_env.config": {Kind: StoreUBoot, Path: "/run/keel-fw_env.config"},
		"uboot:fw_env.config":           {Kind: StoreUBoot, Path: "fw_env.config"},
		"uboot:/a:b":                    {Kind: StoreUBoot, Path: "/a:b"},
	} {
		got, err := ParseStore(v)
		if err != nil || got != want {
			t.Errorf("ParseStore(%q) = %+v, %v; want %+v", v, got, err, want)
		}
		if got.String() != v {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), v)
		}
	}
	for _, v := range []string{"uboot:", "uboot", "efivars:", "EFIVARS", "file:/x", "uboot:/a b", "uboot:/a\tb", "uboot:/a\"b", "uboot:/a\x00", "uboot:/a\u00a0b", ":"} {
		if st, err := ParseStore(v); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), KeyStore) {
			t.Errorf("ParseStore(%q) = %+v, %v; want an ErrSyntax naming %s", v, st, err, KeyStore)
		}
	}
}

// TestHandoffStore: keel.store= rides on the line keel-init builds and
// parses back; a value this keel cannot parse does not stop stage 2 (a
// newer keel-init may name another store), it is left out.
func TestHandoffStore(t *testing.T) {
	h := Handoff{Slot: "a", Mode: "normal", RootFSType: "erofs", Store: Store{Kind: StoreUBoot, Path: "/run/keel-fw_env.config"}}
	line := Slot("", h)
	if !strings.HasSuffix(line, " keel.store=uboot:/run/keel-fw_env.config") {
		t.Errorf("Slot = %q", line)
	}
	for v, want := range map[string]Store{"efivars": {Kind: StoreEFIVars}, "nvram:x": {}, "uboot:": {}, "": {}} {
		got, err := ParseHandoff("keel.stage=2 keel.slot=a keel.mode=normal keel.store=" + v)
		if err != nil || got.Store != want {
			t.Errorf("keel.store=%s: %+v, %v; want store %+v", v, got.Store, err, want)
		}
	}
}

func FuzzParseStore(f *testing.F) {
	for _, s := range []string{"efivars", "uboot:/run/keel-fw_env.config", "uboot:", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		st, err := ParseStore(v)
		if err != nil {
			return
		}
		// What parses prints as itself, and survives a command line.
		if st.String() != v {
			t.Fatalf("ParseStore(%q).String() = %q", v, st.String())
		}
		if v != "" {
			h, err := ParseHandoff(Slot("", Handoff{Slot: "a", Mode: "normal", Store: st}))
			if err != nil || h.Store != st {
				t.Fatalf("store %+v through a command line: %+v, %v", st, h.Store, err)
			}
		}
	})
}
