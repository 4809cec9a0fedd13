package dm

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// The ioctl request numbers, as _IOWR(0xfd, nr, struct dm_ioctl) gives
// them with sizeof(struct dm_ioctl) = 312 = 0x138 (what strace prints for
// dmsetup: DM_VERSION is 0xc138fd00).
func TestRequestNumbers(t *testing.T) {
	for cmd, want := range map[uintptr]uintptr{
		cmdVersion:      0xc138fd00,
		cmdDevCreate:    0xc138fd03,
		cmdDevRemove:    0xc138fd04,
		cmdDevSuspend:   0xc138fd06,
		cmdDevStatus:    0xc138fd07,
		cmdTableLoad:    0xc138fd09,
		cmdTableStatus:  0xc138fd0c,
		cmdListVersions: 0xc138fd0d,
	} {
		if got := request(cmd); got != want {
			t.Errorf("%s: %#x, want %#x", cmdNames[cmd], got, want)
		}
	}
}

// struct dm_ioctl field offsets, counted by hand from dm-ioctl.h.
func TestHeaderLayout(t *testing.T) {
	h := header{
		Version: [3]uint32{4, 1, 2}, DataSize: 0x11223344, DataStart: 312, TargetCount: 3,
		OpenCount: -2, Flags: flagReadOnly | flagStatusTable, EventNr: 7, Dev: 0xfe00 | 5<<20,
		Name: "keel-root", UUID: "KEEL-VERITY-a",
	}
	b := bytes.Repeat([]byte{0xee}, sizeofIoctl)
	h.encode(b)
	le := binary.LittleEndian // keel's targets (amd64, arm64) are little endian
	u32 := func(off int) uint32 { return le.Uint32(b[off:]) }
	for _, c := range []struct {
		off  int
		want uint32
	}{{0, 4}, {4, 1}, {8, 2}, {12, 0x11223344}, {16, 312}, {20, 3}, {24, 0xfffffffe}, {28, 0x11}, {32, 7}, {36, 0}} {
		if got := u32(c.off); got != c.want {
			t.Errorf("u32 at %d = %#x, want %#x", c.off, got, c.want)
		}
	}
	if got := le.Uint64(b[40:]); got != 0xfe00|5<<20 {
		t.Errorf("dev = %#x", got)
	}
	if string(b[48:57]) != "keel-root" || b[57] != 0 || b[175] != 0 {
		t.Errorf("name field: %q", b[48:176])
	}
	if string(b[176:189]) != "KEEL-VERITY-a" || b[189] != 0 || b[304] != 0 {
		t.Errorf("uuid field: %q", b[176:305])
	}
	if !bytes.Equal(b[305:312], make([]byte, 7)) {
		t.Errorf("data[7] not zeroed: %x", b[305:312])
	}
	if got := decodeHeader(b); got != h {
		t.Errorf("decode(encode(h)) = %+v, want %+v", got, h)
	}
	// Over-long names are cut to leave the NUL.
	h.Name = strings.Repeat("n", 200)
	h.encode(b)
	if b[48+127] != 0 || b[48+126] != 'n' {
		t.Error("name not NUL terminated")
	}
}

// struct dm_target_spec and the params, 8-byte aligned.
func TestTargetsLayout(t *testing.T) {
	data, err := encodeTargets([]Target{
		{Start: 0, Length: 16384, Type: "linear", Params: "7:0 0"},          // 40+5+1 = 46 -> 48
		{Start: 16384, Length: 8, Type: "zero", Params: ""},                 // 40+0+1 = 41 -> 48
		{Start: 16392, Length: 1, Type: "error", Params: "0123456789abcde"}, // 40+15+1 = 56
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 48+48+56 {
		t.Fatalf("%d bytes, want %d", len(data), 48+48+56)
	}
	le := binary.LittleEndian
	for i, c := range []struct {
		off           int
		start, length uint64
		next          uint32
		typ, params   string
	}{
		{0, 0, 16384, 48, "linear", "7:0 0"},
		{48, 16384, 8, 48, "zero", ""},
		{96, 16392, 1, 56, "error", "0123456789abcde"},
	} {
		s := data[c.off:]
		if le.Uint64(s[0:]) != c.start || le.Uint64(s[8:]) != c.length || le.Uint32(s[16:]) != 0 || le.Uint32(s[20:]) != c.next {
			t.Errorf("spec %d: start %d length %d status %d next %d", i, le.Uint64(s[0:]), le.Uint64(s[8:]), le.Uint32(s[16:]), le.Uint32(s[20:]))
		}
		if cstring(s[24:40]) != c.typ || s[24+len(c.typ)] != 0 {
			t.Errorf("spec %d: type %q", i, s[24:40])
		}
		if string(s[40:40+len(c.params)]) != c.params || s[40+len(c.params)] != 0 {
			t.Errorf("spec %d: params %q", i, s[40:int(c.next)])
		}
	}
	for _, bad := range []Target{
		{Length: 1, Type: ""},
		{Length: 1, Type: "a-very-long-type-name"},
		{Length: 0, Type: "zero"},
		{Length: 1, Type: "linear", Params: "a\x00b"},
	} {
		if _, err := encodeTargets([]Target{bad}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// A DM_TABLE_STATUS reply as the kernel's retrieve_status() writes it:
// specs from data_start, next counted from the first spec.
func TestDecodeStatusReply(t *testing.T) {
	le := binary.LittleEndian
	data := make([]byte, 200)
	put := func(off int, start, length uint64, next uint32, typ, status string) {
		le.PutUint64(data[off:], start)
		le.PutUint64(data[off+8:], length)
		le.PutUint32(data[off+20:], next)
		copy(data[off+24:], typ)
		copy(data[off+40:], status)
	}
	put(0, 0, 16384, 48, "verity", "V")
	put(48, 16384, 100, 96, "linear", "")
	targets, err := decodeTargets(data, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{0, 16384, "verity", "V"}, {16384, 100, "linear", ""}}
	if len(targets) != 2 || targets[0] != want[0] || targets[1] != want[1] {
		t.Fatalf("got %+v, want %+v", targets, want)
	}
	if _, err := decodeTargets(data[:60], 2); err == nil {
		t.Error("truncated reply: no error")
	}
	le.PutUint32(data[20:], 0) // next pointing backwards
	if _, err := decodeTargets(data, 2); err == nil {
		t.Error("looping reply: no error")
	}
}

func TestDecodeVersions(t *testing.T) {
	le := binary.LittleEndian
	data := make([]byte, 64)
	le.PutUint32(data[0:], 24)
	le.PutUint32(data[4:], 1)
	le.PutUint32(data[8:], 9)
	copy(data[16:], "verity")
	le.PutUint32(data[24+4:], 1)
	le.PutUint32(data[24+8:], 4)
	copy(data[24+16:], "linear")
	got, err := decodeVersions(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["verity"] != [3]uint32{1, 9, 0} || got["linear"] != [3]uint32{1, 4, 0} {
		t.Fatalf("got %v", got)
	}
}

func TestNames(t *testing.T) {
	for _, bad := range []string{"", "a/b", "control", "..", strings.Repeat("x", 128)} {
		if checkName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := Create("ok", strings.Repeat("u", 129), true, []Target{{Length: 1, Type: "zero"}}); err == nil {
		t.Error("long uuid accepted")
	}
	if _, err := Create("ok", "", true, nil); err == nil {
		t.Error("no targets accepted")
	}
}
