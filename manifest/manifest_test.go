package manifest

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
)

func sample(t testing.TB) *Manifest {
	k, _ := DigestOf(strings.NewReader("kernel"))
	i, _ := DigestOf(strings.NewReader("initrd"))
	return &Manifest{Compatible: testBoard, Role: RoleSlot, Version: "1.0", SecurityVersion: 1, Cmdline: "console=ttyS0", Kernel: k, Initrd: i, Root: Root{FSType: "erofs"}}
}

const testBoard = "qemu-x86_64-uefi"

// seedSample is sample as the recovery seed's manifest: role seed, with
// a data digest.
func seedSample(t testing.TB) *Manifest {
	m := sample(t)
	d, _ := DigestOf(strings.NewReader("empty file system"))
	m.Role, m.Data = RoleSeed, &d
	return m
}

func TestRoundTrip(t *testing.T) {
	m := sample(t)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil || *got != *m {
		t.Fatalf("%+v, %v", got, err)
	}
	if err := Check("kernel", strings.NewReader("kernel"), m.Kernel); err != nil {
		t.Error(err)
	}
	if err := Check("kernel", strings.NewReader("kernel!"), m.Kernel); err == nil || !strings.Contains(err.Error(), "kernel digest mismatch") {
		t.Errorf("tampered kernel: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	good, _ := sample(t).Marshal()
	for _, tc := range []struct{ from, to, want string }{
		{`"erofs"`, `"ntfs"`, "fstype"},
		{`"version"`, `"colour": 1, "version"`, "unknown field"},
		{`"size": 6`, `"size": 0`, "size"},
	} {
		b := bytes.Replace(good, []byte(tc.from), []byte(tc.to), 1)
		if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s->%s: %v", tc.from, tc.to, err)
		}
	}
	if _, err := Parse([]byte("{")); err == nil {
		t.Error("truncated JSON accepted")
	}
}

// TestDataDigest: a recovery seed's manifest carries the digest of its
// data entry; it round-trips and is validated like the others.
func TestDataDigest(t *testing.T) {
	m := seedSample(t)
	d := *m.Data
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("%+v, %v", got, err)
	}
	if plain, _ := sample(t).Marshal(); bytes.Contains(plain, []byte(`"data"`)) {
		t.Error("a slot manifest without data mentions it")
	}
	for _, bad := range []Digest{{SHA256: "zz", Size: 1}, {SHA256: d.SHA256, Size: 0}} {
		m.Data = &bad
		if _, err := m.Marshal(); err == nil || !strings.Contains(err.Error(), "data") {
			t.Errorf("data digest %+v: %v", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := sample(f).Marshal()
	f.Add(good)
	seed, _ := seedSample(f).Marshal()
	f.Add(seed)
	// The ambiguous and the unbound, refused.
	f.Add(bytes.Replace(good, []byte(`"role": "slot"`), []byte(`"role": "slot", "role": "seed"`), 1))
	f.Add(bytes.Replace(good, []byte(`"role"`), []byte(`"Role"`), 1))
	f.Add(bytes.Replace(good, []byte(`"compatible": "`+testBoard+`",`), nil, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if m.Compatible == "" || (m.Role != RoleSlot && m.Role != RoleSeed) {
			t.Fatalf("accepted a manifest bound to no board or role: %+v", m)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if m2, err := Parse(again); err != nil || !reflect.DeepEqual(m2, m) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// TestParseRefusesTrailingData: nothing after the JSON object (issue 9
// item 14): signed bytes carry nothing the parser did not read.
func TestParseRefusesTrailingData(t *testing.T) {
	b, err := sample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(append(bytes.Clone(b), " \n\t"...)); err != nil {
		t.Errorf("trailing white space: %v", err)
	}
	for _, tail := range []string{"x", "{}", `{"version":"9"}`, "\x00", "]"} {
		if _, err := Parse(append(bytes.Clone(b), tail...)); err == nil || !strings.Contains(err.Error(), "trailing data") {
			t.Errorf("tail %q: err = %v, want trailing data", tail, err)
		}
	}
}

// TestCheckReadsNoMoreThanSigned: an entry longer than the signed size is
// refused after at most size+1 bytes (issue 9 item 6): PID 1 never copies
// an unsigned amount into memory.
func TestCheckReadsNoMoreThanSigned(t *testing.T) {
	want, err := DigestOf(strings.NewReader("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	r := &countingZeros{left: 64 << 20}
	if err := Check("kernel", r, want); err == nil {
		t.Fatal("Check of a 64 MiB input against a 10-byte digest passed")
	}
	if r.read > want.Size+1 {
		t.Errorf("Check read %d bytes for a signed size of %d", r.read, want.Size)
	}
}

type countingZeros struct{ left, read int64 }

func (c *countingZeros) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), c.left)
	clear(p[:n])
	c.left -= n
	c.read += n
	return int(n), nil
}

// TestValidateBinding: a manifest names its board and role, both required
// (issue 9 item 14). On the old code a manifest without them parsed.
func TestValidateBinding(t *testing.T) {
	good, _ := sample(t).Marshal()
	if !bytes.Contains(good, []byte(`"compatible": "qemu-x86_64-uefi"`)) || !bytes.Contains(good, []byte(`"role": "slot"`)) {
		t.Fatalf("the encoding lacks compatible or role:\n%s", good)
	}
	for _, tc := range []struct {
		name string
		edit func(*Manifest)
		want string
	}{
		{"no compatible", func(m *Manifest) { m.Compatible = "" }, "no compatible"},
		{"no role", func(m *Manifest) { m.Role = "" }, "no role"},
		{"unknown role", func(m *Manifest) { m.Role = "bundle" }, `role "bundle": want "slot" or "seed"`},
		{"compatible with a space", func(m *Manifest) { m.Compatible = "qemu x86" }, `compatible "qemu x86"`},
		{"compatible with a newline", func(m *Manifest) { m.Compatible = "qemu\n" }, "compatible"},
		{"compatible too long", func(m *Manifest) { m.Compatible = strings.Repeat("b", MaxCompatible+1) }, "compatible"},
		{"data in a slot's manifest", func(m *Manifest) { m.Data = seedSample(t).Data }, "only a seed's manifest carries a data file system, this is a slot's"},
	} {
		m := sample(t)
		tc.edit(m)
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
		if _, err := m.Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted it", tc.name)
		}
	}
	// The same through Parse: a manifest of the old format (neither field)
	// and one missing either field.
	for _, tc := range []struct{ from, to, want string }{
		{`"compatible": "qemu-x86_64-uefi",`, ``, "no compatible"},
		{`"role": "slot",`, ``, "no role"},
		{`"role": "slot"`, `"role": ""`, "no role"},
		{`"role": "slot"`, `"role": "SLOT"`, `role "SLOT"`},
	} {
		b := bytes.Replace(good, []byte(tc.from), []byte(tc.to), 1)
		if bytes.Equal(b, good) {
			t.Fatalf("%q not in the encoding", tc.from)
		}
		if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: Parse = %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
	old := bytes.Replace(bytes.Replace(good, []byte(`"compatible": "qemu-x86_64-uefi",`), nil, 1), []byte(`"role": "slot",`), nil, 1)
	if _, err := Parse(old); err == nil {
		t.Error("a manifest of the old format (no compatible, no role) parsed")
	}
	// Both roles and any board name of the allowed characters round-trip.
	for _, m := range []*Manifest{seedSample(t), func() *Manifest { m := sample(t); m.Compatible = "raspberrypi,4-model-b+1.2_x"; return m }()} {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Parse(b); err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("%+v: %+v, %v", m, got, err)
		}
	}
}

// TestParseRefusesAmbiguousKeys: a key that encoding/json would match
// without regard to case, or a key given twice (the last would win), is
// refused: the signed role and board have one reading.
func TestParseRefusesAmbiguousKeys(t *testing.T) {
	good, _ := sample(t).Marshal()
	for _, tc := range []struct{ from, to, want string }{
		{`"role": "slot"`, `"role": "slot", "role": "seed"`, `key "role" appears twice`},
		{`"compatible": "qemu-x86_64-uefi"`, `"compatible": "other-board", "compatible": "qemu-x86_64-uefi"`, `key "compatible" appears twice`},
		{`"size": 6`, `"size": 6, "size": 6`, `key "size" appears twice`},
		{`"role"`, `"Role"`, `key "Role"`},
		{`"compatible"`, `"COMPATIBLE"`, `key "COMPATIBLE"`},
		{`"size"`, `"\u017fize"`, "field names are lower case"}, // ſ folds to s in encoding/json
		{`"role": "slot"`, `"role": "slot", "rolE": "seed"`, `key "rolE"`},
	} {
		b := bytes.Replace(good, []byte(tc.from), []byte(tc.to), 1)
		if bytes.Equal(b, good) {
			t.Fatalf("%q not in the encoding", tc.from)
		}
		if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: Parse = %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
	// Keys in different objects may repeat; escapes decode to the name.
	b := bytes.Replace(good, []byte(`"role"`), []byte(`"r\u006fle"`), 1)
	if _, err := Parse(b); err != nil {
		t.Errorf("escaped key: %v", err)
	}
}
