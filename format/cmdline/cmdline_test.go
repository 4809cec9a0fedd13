package cmdline

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keelboot/keel/manifest"
)

const rootHash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestSlotExactBytes(t *testing.T) {
	// The exact string is measured into PCR 8: pin it.
	h := Handoff{Slot: "b", Mode: "trial", RootFSType: "erofs", SecurityVersion: 7,
		Verity: &Verity{RootHash: rootHash, DataBlocks: 10, HashOffset: 40960}, Store: Store{Kind: StoreEFIVars}}
	got := Slot("  console=ttyS0 quiet ", h)
	want := "console=ttyS0 quiet keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=7 keel.verity=" + rootHash + ",-,10,40960 keel.store=efivars"
	if got != want {
		t.Errorf("Slot =\n %q\nwant\n %q", got, want)
	}
	h.Verity.Salt, h.Store, h.Unmeasured, h.SecurityVersion = "aa55", Store{}, true, 0
	got = Slot("", h)
	want = "keel.stage=2 keel.slot=b keel.mode=trial keel.rootfstype=erofs keel.secver=0 keel.verity=" + rootHash + ",aa55,10,40960 keel.tpm=unmeasured"
	if got != want {
		t.Errorf("Slot =\n %q\nwant\n %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, h := range []Handoff{
		{Slot: "a", Mode: "normal", RootFSType: "erofs"},
		{Slot: "a", Mode: "trial", RootFSType: "erofs", SecurityVersion: 1<<64 - 1},
		{Slot: "b", Mode: "recovery", RootFSType: "ext4", SecurityVersion: 42, Store: Store{Kind: StoreUBoot, Path: "/run/keel-fw_env.config"}, Unmeasured: true,
			Verity: &Verity{RootHash: rootHash, Salt: "00ff", DataBlocks: 1, HashOffset: 4096}},
	} {
		got, err := ParseHandoff(Slot("console=ttyS0", h))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
	}
}

func TestParseHandoffRefuses(t *testing.T) {
	good := Slot("", Handoff{Slot: "a", Mode: "normal", RootFSType: "erofs", Verity: &Verity{RootHash: rootHash, DataBlocks: 1, HashOffset: 4096}})
	for name, line := range map[string]string{
		"no stage":     strings.Replace(good, "keel.stage=2", "", 1),
		"stage 1":      strings.Replace(good, "keel.stage=2", "keel.stage=1", 1),
		"two slots":    good + " keel.slot=b",
		"two verity":   good + " keel.verity=" + rootHash + ",-,2,8192",
		"no slot":      strings.Replace(good, "keel.slot=a", "", 1),
		"short hash":   strings.Replace(good, rootHash, "abcd", 1),
		"bad salt":     strings.Replace(good, ",-,", ",zz,", 1),
		"empty salt":   strings.Replace(good, ",-,", ",,", 1),
		"bad blocks":   strings.Replace(good, ",1,4096", ",x,4096", 1),
		"three fields": strings.Replace(good, ",1,4096", ",1", 1),
		"two stages":   good + " keel.stage=2",
		"two tpm":      good + " keel.tpm=unmeasured keel.tpm=x",
		"two secver":   good + " keel.secver=9",
		"empty secver": strings.Replace(good, "keel.secver=0", "keel.secver=", 1),
		"hex secver":   strings.Replace(good, "keel.secver=0", "keel.secver=0x9", 1),
		"minus secver": strings.Replace(good, "keel.secver=0", "keel.secver=-1", 1),
		"huge secver":  strings.Replace(good, "keel.secver=0", "keel.secver=18446744073709551616", 1),
		"two stores":   good + " keel.store=efivars keel.store=uboot:/x",
	} {
		if _, err := ParseHandoff(line); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %q: err = %v, want ErrSyntax", name, line, err)
		}
	}
}

func FuzzParseHandoff(f *testing.F) {
	f.Add(Slot("console=ttyS0", Handoff{Slot: "a", Mode: "normal", RootFSType: "erofs", Verity: &Verity{RootHash: rootHash, DataBlocks: 1, HashOffset: 4096}}))
	f.Add("keel.stage=2 keel.slot=a keel.mode=trial keel.verity=,,,")
	f.Add("keel.stage=2 keel.slot=a keel.mode=normal keel.secver=007")
	f.Fuzz(func(t *testing.T, line string) {
		h, err := ParseHandoff(line)
		if err != nil {
			return
		}
		// What parses builds a line that parses to the same.
		h2, err := ParseHandoff(Slot("", h))
		if err != nil {
			t.Fatalf("rebuilt line does not parse: %v", err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("%+v != %+v", h, h2)
		}
	})
}

// TestSecurityVersion: keel.secver= carries the verified manifest's
// security version (ForManifest), and a line without it (a keel-init
// before it was added) parses as 0.
func TestSecurityVersion(t *testing.T) {
	m := &manifest.Manifest{Cmdline: "console=ttyS0", SecurityVersion: 9, Root: manifest.Root{FSType: "erofs"}}
	line := ForManifest(m, "a", "normal", Store{Kind: StoreEFIVars})
	if !strings.Contains(line, " keel.secver=9 ") {
		t.Errorf("ForManifest = %q: no keel.secver=9", line)
	}
	h, err := ParseHandoff(line)
	if err != nil || h.SecurityVersion != 9 {
		t.Errorf("ParseHandoff(%q) = %+v, %v; want security version 9", line, h, err)
	}
	if h, err := ParseHandoff("keel.stage=2 keel.slot=a keel.mode=normal"); err != nil || h.SecurityVersion != 0 {
		t.Errorf("no keel.secver=: %+v, %v", h, err)
	}
}
