package legacy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
)

func TestFromMender(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vars  map[string]string
		parts map[int]string
		want  recordWant
	}{
		{"factory state", map[string]string{"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0", "bootcount": "0", "bootlimit": "1"}, nil,
			recordWant{map[string]string{"a": "good", "b": "empty"}, "a", "", "a normal"}},
		{"update committed on 3", map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "0", "bootcount": "1", "bootlimit": "1"}, nil,
			recordWant{map[string]string{"a": "empty", "b": "good"}, "b", "", "b normal"}},
		{"no upgrade_available (U-Boot reads 0)", map[string]string{"mender_boot_part": "2"}, nil,
			recordWant{map[string]string{"a": "good", "b": "empty"}, "a", "", "a normal"}},
		{"update installed, not booted", map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0", "bootlimit": "1"}, nil,
			recordWant{map[string]string{"a": "good", "b": "trial/1"}, "a", "b", "b trial"}},
		{"update booted once, not committed", map[string]string{"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "1", "bootlimit": "1"}, nil,
			recordWant{map[string]string{"a": "good", "b": "trial/0"}, "a", "b", "a fallback"}},
		{"bootcount past the limit", map[string]string{"mender_boot_part": "2", "upgrade_available": "1", "bootcount": "7", "bootlimit": "1"}, nil,
			recordWant{map[string]string{"a": "trial/0", "b": "good"}, "b", "a", "b fallback"}},
		{"no bootcount (U-Boot reads 0)", map[string]string{"mender_boot_part": "2", "upgrade_available": "1", "bootlimit": "3"}, nil,
			recordWant{map[string]string{"a": "trial/3", "b": "good"}, "b", "a", "a trial"}},
		{"bootlimit 3, one boot used", map[string]string{"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "1", "bootlimit": "3"}, nil,
			recordWant{map[string]string{"a": "good", "b": "trial/2"}, "a", "b", "b trial"}},
		{"partition 10, hex A", map[string]string{"mender_boot_part": "10", "mender_boot_part_hex": "A", "upgrade_available": "0"}, map[int]string{9: "a", 10: "b"},
			recordWant{map[string]string{"a": "empty", "b": "good"}, "b", "", "b normal"}},
		{"UBI volumes 0 and 1", map[string]string{"mender_boot_part": "0", "mender_boot_part_hex": "0"}, map[int]string{0: "x", 1: "y"},
			recordWant{map[string]string{"x": "good", "y": "empty"}, "x", "", "x normal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.parts
			if parts == nil {
				parts = DefaultMenderParts()
			}
			r, err := FromMender(tc.vars, parts)
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, r, tc.want)
			for _, s := range r.Slots {
				if s.State == bootenv.StateEmpty && !strings.Contains(s.Reason, "Mender keeps no state") {
					t.Errorf("empty slot %s: reason %q", s.Name, s.Reason)
				}
			}
		})
	}
}

func TestFromMenderSlotOrder(t *testing.T) {
	r, err := FromMender(map[string]string{"mender_boot_part": "3"}, map[int]string{3: "a", 2: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.SlotNames(); !reflect.DeepEqual(got, []string{"b", "a"}) {
		t.Errorf("slots %v, want partition order b (2), a (3)", got)
	}
}

func TestFromMenderRefuses(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0", "bootlimit": "1"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<unset>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{base("mender_boot_part", "<unset>"), "mender_boot_part is not set"},
		{base("mender_boot_part", "x"), `mender_boot_part="x"`},
		{base("mender_boot_part", "0x3"), `mender_boot_part="0x3"`},
		{base("mender_boot_part", ""), `mender_boot_part=""`},
		{base("mender_boot_part", "4", "mender_boot_part_hex", "4"), "mender_boot_part=4 is not one of the partitions"},
		{base("mender_boot_part_hex", "2"), `mender_boot_part_hex="2"`},
		{base("mender_boot_part_hex", "zz"), `mender_boot_part_hex="zz"`},
		{base("upgrade_available", "2"), `upgrade_available="2"`},
		{base("upgrade_available", "yes"), `upgrade_available="yes"`},
		{base("bootlimit", "<unset>"), "bootlimit is not set"},
		{base("bootlimit", "0"), "bootlimit=0"},
		{base("bootlimit", "x"), `bootlimit="x"`},
		{base("bootcount", "-1"), `bootcount="-1"`},
		{base("bootlimit", "500"), "at most 100"},
	} {
		_, err := FromMender(tc.vars, DefaultMenderParts())
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want ErrMalformed mentioning %q", tc.vars, err, tc.want)
		}
	}
	// Outside an update the counter is not read (U-Boot ignores it too).
	if _, err := FromMender(base("upgrade_available", "0", "bootlimit", "x", "bootcount", "y"), DefaultMenderParts()); err != nil {
		t.Errorf("committed state with odd counters: %v", err)
	}
	for _, parts := range []map[int]string{{2: "a"}, {2: "a", 3: "b", 4: "c"}, {2: "a", 3: "a"}, {-1: "a", 3: "b"}, {2: "a", 3: "B"}} {
		if _, err := FromMender(base(), parts); !errors.Is(err, ErrMapping) {
			t.Errorf("parts %v: %v, want ErrMapping", parts, err)
		}
	}
}

func TestToMender(t *testing.T) {
	for _, tc := range []struct {
		name      string
		r         bootenv.Record
		parts     map[int]string
		bootlimit int
		want      map[string]string
	}{
		{"new device", mustRecord(t), nil, 1,
			map[string]string{"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0", "bootcount": "0", "bootlimit": "1"}},
		{"trial of b, one try", mustRecord(t, try("b", 1)), nil, 1,
			map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0", "bootlimit": "1"}},
		{"trial of b, three tries: bootlimit raised", mustRecord(t, try("b", 3)), nil, 1,
			map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0", "bootlimit": "3"}},
		{"trial of b, three tries under bootlimit 5", mustRecord(t, try("b", 3)), nil, 5,
			map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "2", "bootlimit": "5"}},
		{"trial used up: fall back to a", mustRecord(t, try("b", 1), boot), nil, 1,
			map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "1", "bootlimit": "1"}},
		{"a never confirmed: fall back to good b", mustRecord(t, try("b", 1), markGood("b"), markGood("a"), boot, boot, boot), nil, 0,
			map[string]string{"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "1", "bootcount": "1", "bootlimit": "1"}},
		{"b committed, partition 10", mustRecord(t, try("b", 1), markGood("b")), map[int]string{9: "a", 10: "b"}, 1,
			map[string]string{"mender_boot_part": "10", "mender_boot_part_hex": "A", "upgrade_available": "0", "bootcount": "0", "bootlimit": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.parts
			if parts == nil {
				parts = DefaultMenderParts()
			}
			if err := CheckMender(tc.r, parts, tc.bootlimit); err != nil {
				t.Fatalf("CheckMender: %v", err)
			}
			if got := ToMender(tc.r, parts, tc.bootlimit); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ToMender = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckMender(t *testing.T) {
	parts := DefaultMenderParts()
	for _, tc := range []struct {
		r    bootenv.Record
		want error
		text string
	}{
		{mustRecord(t, requestRecovery), ErrInexpressible, "recovery"},
		{mustRecord(t, markBad("a")), ErrInexpressible, "recovery"},
		// b on trial with a bad: Mender would fall back to a.
		{mustRecord(t, try("b", 2), markBad("a")), ErrInexpressible, "altbootcmd would boot slot a, keel would boot recovery"},
		// b on trial, a never confirmed 3 times: keel would not fall back to a.
		{mustRecord(t, boot, boot, boot, try("b", 1)), ErrInexpressible, "altbootcmd would boot slot a"},
	} {
		if err := CheckMender(tc.r, parts, 1); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("CheckMender: %v, want %v mentioning %q", err, tc.want, tc.text)
		}
	}
	three, _ := bootenv.Init([]string{"a", "b", "c"}, "a")
	if err := CheckMender(three, parts, 1); !errors.Is(err, ErrMapping) {
		t.Errorf("three slots: %v", err)
	}
	if err := CheckMender(mustRecord(t), map[int]string{2: "a", 3: "c"}, 1); !errors.Is(err, ErrMapping) {
		t.Errorf("slot c not in the record: %v", err)
	}
}
