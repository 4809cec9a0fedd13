package cpio

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// sample adds a little of everything, including names and sizes that
// exercise every padding case.
func sample(t testing.TB, a *Archive, order []int) {
	t.Helper()
	adds := []func() error{
		func() error { return a.File("/init", 0o755, []byte("#!/bin/sh\necho hi\n")) },
		func() error { return a.Dir("/dev", 0o755) },
		func() error { return a.CharDev("/dev/console", 0o600, 5, 1) },
		func() error { return a.CharDev("dev/null", 0o666, 1, 3) },
		func() error { return a.BlockDev("/dev/vda", 0o660, 254, 0) },
		func() error { return a.Symlink("/bin/sh", "busybox") },
		func() error { return a.File("/bin/busybox", 0o755, bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 1000)) },
		func() error { return a.Dir("/tmp", 0o1777) },
		func() error { return a.File("/etc/empty", 0o644, nil) },
		func() error { return a.Add(Record{Name: "/run/fifo", Mode: TypeFIFO | 0o600}) },
		func() error {
			return a.Add(Record{Name: "/home/user/owned", Mode: TypeReg | 0o600, UID: 1000, GID: 1000, Data: []byte("x")})
		},
	}
	for n := 1; n <= 8; n++ {
		for size := 0; size <= 8; size++ {
			name := fmt.Sprintf("/pad/%s.%d", strings.Repeat("n", n), size)
			data := bytes.Repeat([]byte{byte('a' + size)}, size)
			adds = append(adds, func() error { return a.File(name, 0o644, data) })
		}
	}
	if order == nil {
		order = rand.Perm(len(adds))
	}
	for _, i := range order {
		if err := adds[i](); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	var a Archive
	sample(t, &a, nil)
	b, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", len(b))
	}
	recs, err := ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	names := a.Names()
	if len(recs) != len(names) {
		t.Fatalf("read %d records, wrote %d", len(recs), len(names))
	}
	for i, r := range recs {
		want := a.Get(names[i])
		if r.Name != names[i] || r.Mode != want.Mode || r.UID != want.UID || r.GID != want.GID ||
			!bytes.Equal(r.Data, want.Data) || r.RDevMajor != want.RDevMajor || r.RDevMinor != want.RDevMinor {
			t.Errorf("record %d: got %v, want %v", i, r, want)
		}
		if r.Ino != uint32(i+1) || r.Mtime != 0 {
			t.Errorf("%s: ino %d mtime %d, want ino %d mtime 0", r.Name, r.Ino, r.Mtime, i+1)
		}
		wantLinks := uint32(1)
		if r.Type() == TypeDir {
			wantLinks = 2
		}
		if r.NLink != wantLinks {
			t.Errorf("%s: nlink %d, want %d", r.Name, r.NLink, wantLinks)
		}
	}
	// Parents exist and come first.
	seen := map[string]bool{}
	for _, r := range recs {
		if i := strings.LastIndexByte(r.Name, '/'); i > 0 && !seen[r.Name[:i]] {
			t.Errorf("%s comes before its folder %s", r.Name, r.Name[:i])
		}
		seen[r.Name] = true
	}
	if got := a.Get("etc"); got == nil || got.Mode != TypeDir|0o755 {
		t.Errorf("implied parent etc: %v", got)
	}
	if !strings.HasSuffix(string(b), "TRAILER!!!\x00\x00\x00\x00") {
		t.Errorf("archive does not end with the trailer: %q", b[len(b)-20:])
	}
}

func TestDeterministic(t *testing.T) {
	var first []byte
	for i := 0; i < 5; i++ {
		var a Archive
		sample(t, &a, nil) // a different add order each time
		b, err := a.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Fatalf("run %d: %d bytes differ from run 0's %d bytes", i, len(b), len(first))
		}
	}
}

// TestGNUCpio lists (cpio -itvn) and extracts the archive with Debian's cpio.
func TestGNUCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal("cpio not installed (scripts/install-deps.sh installs it)")
	}
	var a Archive
	sample(t, &a, nil)
	b, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-itvn", "--quiet")
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("cpio -itv: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	names := a.Names()
	if len(lines) != len(names) {
		t.Fatalf("cpio -itv listed %d entries, want %d:\n%s", len(lines), len(names), out)
	}
	byName := map[string]string{}
	for i, l := range lines {
		if !strings.HasSuffix(l, " "+names[i]) && !strings.Contains(l, " "+names[i]+" -> ") {
			t.Errorf("line %d %q: want name %s", i, l, names[i])
		}
		byName[names[i]] = l
	}
	for name, want := range map[string][]string{
		"dev/console":     {"crw-------", "5,   1"},
		"dev/vda":         {"brw-rw----", "254,   0"},
		"bin/sh":          {"lrwxrwxrwx", "bin/sh -> busybox"},
		"tmp":             {"drwxrwxrwt"},
		"init":            {"-rwxr-xr-x", " 18 "},
		"run/fifo":        {"prw-------"},
		"home/user/owned": {"1000", "-rw-------"},
		"bin/busybox":     {" 4000 "},
	} {
		for _, w := range want {
			if !strings.Contains(byName[name], w) {
				t.Errorf("cpio -itv says %q for %s, want %q in it", byName[name], name, w)
			}
		}
	}
	// Contents, through cpio's own extraction.
	for _, name := range []string{"init", "bin/busybox", "pad/nnn.5", "pad/n.0"} {
		cmd := exec.Command(cpio, "-i", "--quiet", "--to-stdout", name)
		cmd.Stdin = bytes.NewReader(b)
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -i --to-stdout %s: %v", name, err)
		}
		if !bytes.Equal(got, a.Get(name).Data) {
			t.Errorf("cpio extracts %d bytes for %s, want %d", len(got), name, len(a.Get(name).Data))
		}
	}
}

// TestReadGNU reads an archive GNU cpio wrote.
func TestReadGNU(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal("cpio not installed (scripts/install-deps.sh installs it)")
	}
	cmd := exec.Command(cpio, "-o", "-H", "newc", "--quiet")
	cmd.Dir = "."
	cmd.Stdin = strings.NewReader("doc.go\ncpio.go\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -o: %v", err)
	}
	recs, err := ReadAll(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Name != "doc.go" || recs[1].Name != "cpio.go" || recs[0].Type() != TypeReg || len(recs[1].Data) == 0 {
		t.Errorf("read %v", recs)
	}
}

func TestAddErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  func(a *Archive) error
		want string
	}{
		{"empty", func(a *Archive) error { return a.File("", 0o644, nil) }, "empty path"},
		{"root", func(a *Archive) error { return a.Dir("/", 0o755) }, "root or outside"},
		{"escape", func(a *Archive) error { return a.File("../x", 0o644, nil) }, "root or outside"},
		{"unclean", func(a *Archive) error { return a.File("a//b", 0o644, nil) }, "not clean"},
		{"twice", func(a *Archive) error { a.File("/x", 0o644, nil); return a.File("/x", 0o644, nil) }, "x added twice"},
		{"dir modes", func(a *Archive) error { a.Dir("/d", 0o755); return a.Dir("/d", 0o700) }, "d added twice"},
		{"under file", func(a *Archive) error { a.File("/f", 0o644, nil); return a.File("/f/g", 0o644, nil) }, "parent f is a regular file"},
		{"no type", func(a *Archive) error { return a.Add(Record{Name: "x", Mode: 0o644}) }, "no file type"},
		{"dir data", func(a *Archive) error {
			a.Add(Record{Name: "d", Mode: TypeDir, Data: []byte("x")})
			_, err := a.Bytes()
			return err
		}, "folder has no data"},
		{"empty link", func(a *Archive) error { a.Symlink("l", ""); _, err := a.Bytes(); return err }, "empty target"},
		{"trailer", func(a *Archive) error { a.File(Trailer, 0o644, nil); _, err := a.Bytes(); return err }, "may not be named"},
	} {
		var a Archive
		if err := tc.add(&a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// The same folder twice, and an explicit folder after its implied
	// self, are fine.
	var a Archive
	if err := a.File("/lib/x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Dir("/lib", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := a.Dir("/lib", 0o700); err != nil {
		t.Fatal(err)
	}
	if a.Get("lib").Mode != TypeDir|0o700 {
		t.Errorf("lib mode %o", a.Get("lib").Mode)
	}
}

func TestReadErrors(t *testing.T) {
	var a Archive
	a.File("init", 0o755, []byte("hello"))
	good, _ := a.Bytes()
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty input"},
		{"gzip", []byte("\x1f\x8b\x08\x00" + strings.Repeat("\x00", 120)), "is the archive compressed?"},
		{"short header", good[:50], "header at offset 0"},
		{"short data", good[:headerLen+8+2], "init: data at offset 116"},
		{"no trailer", good[:headerLen+8+8], "header at offset 124"},
		{"bad hex", append([]byte("070701zzzzzzzz"), good[14:]...), "not 8 hex digits"},
		{"name size", append(append([]byte(nil), good[:94]...), append([]byte("00000000"), good[102:]...)...), "name size 0"},
	} {
		_, err := ReadAll(bytes.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// Reading stops at the trailer: what follows (another archive, or
	// padding) is left unread.
	r := NewReader(io.MultiReader(bytes.NewReader(good), strings.NewReader("garbage")))
	if rec, err := r.Next(); err != nil || rec.Name != "init" || string(rec.Data) != "hello" {
		t.Fatalf("Next: %v %v", rec, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("Next after the last record: %v, want io.EOF", err)
		}
	}
}

func FuzzReader(f *testing.F) {
	var a Archive
	a.File("init", 0o755, []byte("#!/bin/sh\n"))
	a.CharDev("dev/console", 0o600, 5, 1)
	a.Symlink("bin/sh", "busybox")
	b, _ := a.Bytes()
	f.Add(b)
	f.Add(b[:200])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ReadAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever reads back must write and read back the same (names
		// and data; inodes are renumbered).
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, r := range recs {
			if err := w.WriteRecord(r); err != nil {
				return // valid to read, not to write (e.g. a dir with data)
			}
		}
		w.Close()
		again, err := ReadAll(&buf)
		if err != nil {
			t.Fatalf("re-reading a written archive: %v", err)
		}
		if len(again) != len(recs) {
			t.Fatalf("%d records, then %d", len(recs), len(again))
		}
		for i := range recs {
			x, y := *recs[i], *again[i]
			x.Ino, y.Ino = 0, 0
			if x.NLink == 0 {
				x.NLink = y.NLink
			}
			if !reflect.DeepEqual(x, y) {
				t.Fatalf("record %d: %v, then %v", i, recs[i], again[i])
			}
		}
	})
}
