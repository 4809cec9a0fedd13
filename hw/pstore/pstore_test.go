package pstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseEFIPanic: the records efi_pstore wrote for a sysrq crash of
// Debian's 6.1 kernel under QEMU and OVMF (testdata/efi-sysrq, read back
// through the pstore file system at the next boot): 14 parts, the report
// starting in part 2.
func TestParseEFIPanic(t *testing.T) {
	recs, err := Read(filepath.Join("testdata", "efi-sysrq"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 14 {
		t.Fatalf("%d records, want 14", len(recs))
	}
	c, ok := Parse(recs)
	if !ok {
		t.Fatal("no crash found")
	}
	if c.Reason != "Panic" || c.First != "sysrq: Trigger a crash" {
		t.Errorf("crash %q, first line %q", c.Reason, c.First)
	}
	if len(c.Lines) != MaxLines || !strings.Contains(c.Lines[1], "Kernel panic - not syncing: sysrq triggered crash") {
		t.Errorf("%d lines: %q", len(c.Lines), c.Lines)
	}
	if !strings.HasPrefix(c.Lines[0], "<6>[") {
		t.Errorf("the kept lines lost their time stamps: %q", c.Lines[0])
	}
}

func rec(name, data string) Record { return Record{Name: name, Data: []byte(data)} }

func TestParse(t *testing.T) {
	oops := "<4>[    1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n<4>[    1.1] Oops: 0000 [#1] SMP\n"
	for _, tc := range []struct {
		name   string
		recs   []Record
		ok     bool
		reason string
		first  string
	}{
		{"none", nil, false, "", ""},
		{"a shutdown dump is no crash", []Record{rec("dmesg-efi-1", "Shutdown#1 Part1\n<6>[ 9.0] reboot: Restarting system\n")}, false, "", ""},
		{"an emergency restart is no crash", []Record{rec("dmesg-efi-1", "Emergency#1 Part1\n<6>[ 9.0] sysrq: Emergency Sync\n")}, false, "", ""},
		{"no header", []Record{rec("dmesg-efi-1", "<0>[ 9.0] Kernel panic - not syncing: x\n")}, false, "", ""},
		{"an oops", []Record{rec("dmesg-ramoops-0", "Oops#1 Part1\n<6>[ 0.5] booting\n"+oops)}, true, "Oops", "BUG: kernel NULL pointer dereference, address: 0000000000000000"},
		{"a panic over an oops", []Record{
			rec("dmesg-ramoops-0", "Oops#1 Part1\n"+oops),
			rec("dmesg-ramoops-1", "Panic#2 Part1\n<0>[ 2.0] Kernel panic - not syncing: Fatal exception\n"),
		}, true, "Panic", "Kernel panic - not syncing: Fatal exception"},
		{"the later of two panics", []Record{
			rec("dmesg-efi-1", "Panic#1 Part1\n<0>[ 2.0] Kernel panic - not syncing: first\n"),
			rec("dmesg-efi-2", "Panic#3 Part1\n<0>[ 2.0] Kernel panic - not syncing: third\n"),
		}, true, "Panic", "Kernel panic - not syncing: third"},
		{"parts in order, oldest first", []Record{
			rec("dmesg-efi-1", "Panic#1 Part1\n<0>[ 3.0] Kernel panic - not syncing: in part 1\n"),
			rec("dmesg-efi-2", "Panic#1 Part2\n<4>[ 2.0] BUG: in part 2\n"),
		}, true, "Panic", "BUG: in part 2"},
		{"no report line: the log's end", []Record{rec("dmesg-efi-1", "Panic#1 Part1\n<6>[ 1.0] a\n<6>[ 2.0] b\n")}, true, "Panic", "a"},
		{"an empty panic", []Record{rec("dmesg-efi-1", "Panic#1 Part1\n")}, true, "Panic", "Panic (an empty record)"},
		{"not decompressed", []Record{rec("dmesg-efi-123.enc.z", "\x78\x9c\x01\x02")}, true, "unknown", "a pstore record keel-init's kernel could not decompress: dmesg-efi-123.enc.z"},
		{"control characters", []Record{rec("dmesg-efi-1", "Panic#1 Part1\n<0>[ 1.0] Kernel panic - not syncing: \x1b[2J\xff\n")}, true, "Panic", "Kernel panic - not syncing: ?[2J?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := Parse(tc.recs)
			if ok != tc.ok || c.Reason != tc.reason || c.First != tc.first {
				t.Errorf("Parse = %+v, %v; want %s %q (%v)", c, ok, tc.reason, tc.first, tc.ok)
			}
		})
	}
}

// TestReadBounds: Read takes only dmesg records, at most MaxRecords of
// at most MaxRecordSize bytes; Clear removes what was read.
func TestReadBounds(t *testing.T) {
	dir := t.TempDir()
	for i := range MaxRecords + 3 {
		name := filepath.Join(dir, "dmesg-efi-"+strings.Repeat("1", 3)+string(rune('a'+i%26))+strings.Repeat("x", i/26))
		if err := os.WriteFile(name, []byte("Panic#1 Part1\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "console-ramoops-0"), []byte("the last boot's console"), 0o444); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "dmesg-aaa-big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", MaxRecordSize+100)), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dmesg-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != MaxRecords || recs[0].Name != "dmesg-aaa-big" || len(recs[0].Data) != MaxRecordSize {
		t.Fatalf("%d records, the first %q of %d bytes", len(recs), recs[0].Name, len(recs[0].Data))
	}
	if err := Clear(dir, recs); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 6 { // 4 records over the bound, the console, the folder
		t.Errorf("%d entries left after Clear, want 6", len(left))
	}
	if err := Clear(dir, recs[:1]); err == nil {
		t.Errorf("Clear of a record that is gone: no error")
	}
	if _, err := Read(filepath.Join(dir, "none")); err == nil {
		t.Errorf("Read of no pstore: no error")
	}
}

// FuzzParse: whatever the records hold (they are unauthenticated),
// Parse never panics, keeps at most MaxLines lines of at most maxLine
// bytes plus an ellipsis, all printable, and a crash always has a first
// line.
func FuzzParse(f *testing.F) {
	seed, _ := Read(filepath.Join("testdata", "efi-sysrq"))
	if len(seed) > 1 {
		f.Add(string(seed[0].Data), string(seed[1].Data), seed[1].Name)
	}
	f.Add("Panic#1 Part1\n<0>[ 1.0] Kernel panic - not syncing: x\n", "Oops#2 Part1\nBUG: y", "dmesg-efi-2")
	f.Add("Panic#999999999 Part999999\n", "", "dmesg-efi-1.enc.z")
	f.Fuzz(func(t *testing.T, a, b, name string) {
		c, ok := Parse([]Record{rec("dmesg-efi-1", a), rec(name, b)})
		if !ok {
			return
		}
		if c.First == "" || len(c.Lines) > MaxLines {
			t.Fatalf("crash %+v", c)
		}
		for _, l := range append(c.Lines, c.First) {
			if len(l) > maxLine+len("…") || Printable(l) != l {
				t.Fatalf("line %q", l)
			}
		}
	})
}
