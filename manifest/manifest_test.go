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
	return &Manifest{Version: "1.0", SecurityVersion: 1, Cmdline: "console=ttyS0", Kernel: k, Initrd: i, Root: Root{FSType: "erofs"}}
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
	m := sample(t)
	d, _ := DigestOf(strings.NewReader("empty file system"))
	m.Data = &d
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
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
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
