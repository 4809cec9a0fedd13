package efivars

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func() (bootenv.Store, error) { return Open(dir) }
	})
}

// TestLayout checks the variable file is what efivarfs holds: the 4-byte
// little-endian attributes, then the data.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := bootenv.Init(nil, "a")
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390"))
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(b); got != 0x7 {
		t.Errorf("attributes = %#x, want 0x7 (NV|BS|RT)", got)
	}
	if string(b[4:8]) != "KEEL" {
		t.Errorf("data starts %q", b[4:8])
	}
	if !bytes.Contains(b, []byte("keel_active=a\x00")) || !bytes.HasSuffix(b, []byte("\x00\x00")) {
		t.Errorf("payload = %q", b[16:])
	}
	// A shorter record after a longer one leaves no stale tail.
	r2, _ := bootenv.MarkBad(r, "a", strings.Repeat("x", 300))
	r3, _ := bootenv.MarkGood(r2, "a")
	for _, rec := range []bootenv.Record{r2, r3} {
		if err := s.Commit(rec); err != nil {
			t.Fatal(err)
		}
	}
	b2, _ := os.ReadFile(filepath.Join(dir, "KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390"))
	if bytes.Contains(b2, []byte("xxx")) {
		t.Errorf("stale bytes after a shorter write: %q", b2)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want 1 (temporary files left?)", len(entries))
	}
}

func TestCorruptVariable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := bootenv.Init(nil, "a")
	if err := s.Commit(r); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	for name, mutate := range map[string]func([]byte) []byte{
		"flipped byte":   func(b []byte) []byte { b[len(b)-5] ^= 1; return b },
		"truncated":      func(b []byte) []byte { return b[:len(b)-10] },
		"wrong magic":    func(b []byte) []byte { b[4] = 'X'; return b },
		"wrong attrs":    func(b []byte) []byte { b[0] = 0x3; return b },
		"attrs only":     func(b []byte) []byte { return b[:4] },
		"garbage record": nil,
	} {
		t.Run(name, func(t *testing.T) {
			var b []byte
			if mutate == nil {
				var buf bytes.Buffer
				buf.Write(good[:4])
				(&payload{vars: []bootenv.Var{{Name: "keel_format", Value: "1"}, {Name: "keel_slots", Value: "a,b"}}}).Marshal(&buf)
				b = buf.Bytes()
			} else {
				b = mutate(bytes.Clone(good))
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load()
			if !errors.Is(err, bootenv.ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the variable file", err)
			}
			// Commit over a corrupt variable is allowed (keel init --force).
			if err := s.Commit(r); err != nil {
				t.Fatalf("commit over corrupt: %v", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "mount -t efivarfs") {
		t.Errorf("missing dir: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Open(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file: %v", err)
	}
}

func FuzzPayload(f *testing.F) {
	var b bytes.Buffer
	(&payload{vars: []bootenv.Var{{Name: "keel_format", Value: "1"}}}).Marshal(&b)
	f.Add(b.Bytes())
	f.Add([]byte("KEEL\xff\xff\xff\xff\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := decodePayload(data)
		if err != nil {
			return
		}
		var again bytes.Buffer
		(&payload{vars: vars}).Marshal(&again)
		v2, err := decodePayload(again.Bytes())
		if err != nil || len(v2) != len(vars) {
			t.Fatalf("re-encoding failed: %v", err)
		}
	})
}

func BenchmarkLoadCommit(b *testing.B) {
	dir := b.TempDir()
	storetest.BenchmarkLoadCommit(b, func() (bootenv.Store, error) { return Open(dir) })
}

// TestRecordThatCannotBeWrittenBack: a variable another tool wrote with a
// 5 KiB version, or a generation at the top of the range, loads as corrupt
// (keel-init starts over) instead of loading and then failing every commit
// (issue 9 item 5).
func TestRecordThatCannotBeWrittenBack(t *testing.T) {
	for name, vars := range map[string][]bootenv.Var{
		"5 KiB version":  {{Name: "keel_slot_a_version", Value: strings.Repeat("v", 5<<10)}},
		"max generation": {{Name: "keel_generation", Value: "18446744073709551615"}},
		"too many bytes": manySlots(),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390")
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := bootenv.Init(nil, "a")
			if err := s.Commit(r); err != nil {
				t.Fatal(err)
			}
			// Rewrite the variable as another tool could: the record's
			// variables with some replaced.
			all := bootenv.Encode(r)
			if name == "too many bytes" {
				all = nil // a whole record of its own
			}
			for _, v := range vars {
				replaced := false
				for i := range all {
					if all[i].Name == v.Name {
						all[i].Value, replaced = v.Value, true
					}
				}
				if !replaced {
					all = append(all, v)
				}
			}
			good, _ := os.ReadFile(path)
			var buf bytes.Buffer
			buf.Write(good[:4])
			(&payload{vars: all}).Marshal(&buf)
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = s.Load()
			if !errors.Is(err, bootenv.ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			if name == "too many bytes" && !strings.Contains(err.Error(), "written back") {
				t.Errorf("Load = %v, want the write-back size named", err)
			}
			// keel-init starts over on storage it owns.
			n, _ := bootenv.Init(nil, "a")
			if err := s.Commit(n); err != nil {
				t.Fatalf("starting over: %v", err)
			}
			if _, err := s.Load(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// manySlots: every text within bootenv.MaxText, but together more than a
// variable holds.
func manySlots() []bootenv.Var {
	var names []string
	var vs []bootenv.Var
	for i := range bootenv.MaxSlots {
		n := fmt.Sprintf("s%d", i)
		names = append(names, n)
		vs = append(vs, bootenv.Var{Name: "keel_slot_" + n + "_state", Value: "bad"},
			bootenv.Var{Name: "keel_slot_" + n + "_reason", Value: strings.Repeat("r", bootenv.MaxText)},
			bootenv.Var{Name: "keel_slot_" + n + "_version", Value: strings.Repeat("v", bootenv.MaxText)})
	}
	return append(vs, bootenv.Var{Name: "keel_format", Value: "1"}, bootenv.Var{Name: "keel_generation", Value: "7"},
		bootenv.Var{Name: "keel_slots", Value: strings.Join(names, ",")})
}
