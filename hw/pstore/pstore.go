package pstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dir is where the pstore file system is mounted (sysfs provides the
// mount point when the kernel has pstore).
const Dir = "/sys/fs/pstore"

// Bounds of what Read and Parse take of the records.
const (
	// MaxRecords is how many dmesg records Read takes (efi_pstore writes
	// one per 1 KiB part of the compressed log: about 14 for a panic).
	MaxRecords = 64
	// MaxRecordSize is how much of a record Read takes.
	MaxRecordSize = 64 << 10
	// MaxLines is how many lines of a crash report Parse keeps.
	MaxLines = 24
	// maxLine is how much of a line Parse keeps.
	maxLine = 200
)

// Record is one dmesg record of the pstore file system.
type Record struct {
	// Name is the file's name: dmesg-<backend>-<id>, for example
	// dmesg-efi-179667270501001 or dmesg-ramoops-0; a record the
	// kernel could not decompress ends in .enc.z.
	Name string
	// Data is the record (at most MaxRecordSize bytes): a header line
	// "<reason>#<count> Part<n>" (fs/pstore/platform.c), then the end of
	// the kernel log, part 1 the newest.
	Data []byte
}

// Read returns the dmesg records in dir (the mounted pstore file
// system), at most MaxRecords, in name order. Other records (console,
// pmsg, ftrace) are not the kernel's crash log and are left alone.
func Read(dir string) ([]Record, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pstore: %w", err)
	}
	var recs []Record
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "dmesg-") || !e.Type().IsRegular() {
			continue
		}
		if len(recs) == MaxRecords {
			break
		}
		data, err := readBounded(filepath.Join(dir, e.Name()))
		if err != nil {
			return recs, fmt.Errorf("pstore: %w", err)
		}
		recs = append(recs, Record{Name: e.Name(), Data: data})
	}
	return recs, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxRecordSize))
}

// Clear removes the records from dir: the backend erases them (efi_pstore
// deletes the UEFI variables). It tries every record and returns every
// error.
func Clear(dir string, recs []Record) error {
	var errs []error
	for _, r := range recs {
		if err := os.Remove(filepath.Join(dir, filepath.Base(r.Name))); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pstore: %w", err)
	}
	return nil
}

// Crash is what the records say of a crash of the last kernel.
type Crash struct {
	// Reason is the dump's reason: Panic or Oops.
	Reason string
	// First is the report's first line, without the log's level and
	// time stamp ("Kernel panic - not syncing: ..."): what keel keeps in
	// the record.
	First string
	// Lines are the report's first lines (at most MaxLines), with their
	// time stamps: what keel events shows.
	Lines []string
}

var (
	// reHeader is the header pstore writes at the top of every dmesg
	// record (fs/pstore/platform.c, pstore_dump: "%s#%d Part%u\n").
	reHeader = regexp.MustCompile(`^([A-Za-z]+)#([0-9]{1,9}) Part([0-9]{1,6})$`)
	// rePrefix is the log level and time stamp of a kernel log line:
	// "<0>[    4.872485] ".
	rePrefix = regexp.MustCompile(`^(<[0-9]{1,3}>)?(\[ *[0-9]+\.[0-9]+\] )?`)
	// reReport are the lines that start a crash report in the kernel
	// log (kernel/panic.c, arch/*/mm/fault.c, lib/bug.c, kernel/sysrq).
	reReport = regexp.MustCompile(`Kernel panic - not syncing|BUG: |Oops|general protection fault|Unable to handle kernel|kernel BUG at|sysrq: Trigger a crash|watchdog: BUG: soft lockup|INFO: task .* blocked`)
)

// dump is one kmsg dump: the parts of one reason#count.
type dump struct {
	reason string
	count  int
	parts  map[int][]byte
}

// Parse says whether the records hold a crash (a dump whose reason is
// Panic or Oops; a record the kernel could not decompress counts as one,
// its reason unknown) and what its report's first lines are. Of several
// dumps it takes a panic over an oops, then the latest. Without a crash
// it returns false (dumps of other reasons, with printk.always_kmsg_dump,
// are no crash).
func Parse(recs []Record) (Crash, bool) {
	dumps := map[string]*dump{}
	var undecoded []string
	for _, r := range recs {
		if strings.HasSuffix(r.Name, ".enc.z") {
			undecoded = append(undecoded, Printable(r.Name))
			continue
		}
		head, body, _ := strings.Cut(string(r.Data), "\n")
		m := reHeader.FindStringSubmatch(strings.TrimSuffix(head, "\r"))
		if m == nil || (m[1] != "Panic" && m[1] != "Oops") {
			continue
		}
		count, _ := strconv.Atoi(m[2])
		part, _ := strconv.Atoi(m[3])
		key := m[1] + "#" + m[2]
		d := dumps[key]
		if d == nil {
			d = &dump{reason: m[1], count: count, parts: map[int][]byte{}}
			dumps[key] = d
		}
		d.parts[part] = []byte(body)
	}
	var best *dump
	for _, d := range dumps {
		if best == nil || (d.reason == "Panic") != (best.reason == "Panic") && d.reason == "Panic" ||
			(d.reason == "Panic") == (best.reason == "Panic") && d.count > best.count {
			best = d
		}
	}
	if best == nil {
		if len(undecoded) == 0 {
			return Crash{}, false
		}
		first := "a pstore record keel-init's kernel could not decompress: " + strings.Join(undecoded, ", ")
		return Crash{Reason: "unknown", First: cut(first), Lines: []string{cut(first)}}, true
	}
	// The oldest part has the highest number: the log in order.
	nums := make([]int, 0, len(best.parts))
	for n := range best.parts {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var lines []string
	for i := len(nums) - 1; i >= 0; i-- {
		for _, l := range strings.Split(string(best.parts[nums[i]]), "\n") {
			if l = strings.TrimRight(l, "\r"); l != "" {
				lines = append(lines, l)
			}
		}
	}
	start := slices.IndexFunc(lines, reReport.MatchString)
	if start < 0 {
		start = max(0, len(lines)-MaxLines) // no known start: the end of the log
	}
	c := Crash{Reason: best.reason}
	for _, l := range lines[start:min(len(lines), start+MaxLines)] {
		c.Lines = append(c.Lines, cut(Printable(l)))
	}
	if len(c.Lines) > 0 {
		c.First = cut(Printable(rePrefix.ReplaceAllString(lines[start], "")))
	}
	if c.First == "" {
		c.First = best.reason + " (an empty record)"
	}
	return c, true
}

// cut keeps at most maxLine bytes of a line, at a rune boundary.
func cut(s string) string {
	if len(s) <= maxLine {
		return s
	}
	n := maxLine
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Printable replaces what is not printable in s (control characters,
// invalid UTF-8) with '?': a record's text goes to a console.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
