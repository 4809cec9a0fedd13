package datareport

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
)

func printableAll(t *testing.T, what string, ss ...string) {
	t.Helper()
	for _, s := range ss {
		if i := strings.IndexFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }); i >= 0 {
			t.Errorf("%s: %q holds a control character", what, s)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	r := Report{
		Format: Format, Slot: "a", Mode: "normal", Mounted: true, Action: "use", Why: "as it is",
		Ignored:    []string{`"slots/b/install" is a FIFO`},
		SetAside:   []SetAside{{From: Quote("slots/b.old"), To: Quote("quarantine/x"), Why: "immutable"}},
		Quarantine: []string{Quote("x")}, QuarantineCount: 1,
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := json.Marshal(got); string(g) != string(b) {
		t.Errorf("round trip:\n%s\nwant\n%s", g, b)
	}
}

// TestParseHostile: the file is on the OS's /run: Parse refuses what is
// not a report, reads a newer one, and makes every string printable.
func TestParseHostile(t *testing.T) {
	for _, c := range []struct {
		name, in, err string
	}{
		{"not JSON", "\x1b[2J", "data report"},
		{"no format", `{"slot":"a"}`, "no format number"},
		{"too long", `{"format":1,"why":"` + strings.Repeat("x", MaxSize) + `"}`, "more than"},
		{"array", `[1]`, "data report"},
	} {
		if _, err := Parse([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
	}
	r, err := Parse([]byte(`{"format":2,"slot":"a\nKEEL-X","mode":"\u001b[2J","why":"w\r","unavailable":"u\u0007",
		"ignored":["i\n"],"set_aside":[{"from":"f\n","to":"t\u001b","why":"y\u0000"}],"quarantine":["q\u202e"],"later":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	printableAll(t, "parsed", r.Slot, r.Mode, r.Why, r.Unavailable, r.Ignored[0], r.SetAside[0].From, r.SetAside[0].To, r.SetAside[0].Why, r.Quarantine[0])
	r.QuarantineCount = 1
	printableAll(t, "lines", r.Lines()...)
}

func TestQuote(t *testing.T) {
	if got := Quote("a\nb"); got != `"a\nb"` {
		t.Errorf("Quote = %s", got)
	}
	long := strings.Repeat("é", 300)
	got := Quote(long)
	if !strings.HasSuffix(got, "…(600 bytes)") || len(got) > 260 {
		t.Errorf("Quote(long) = %s", got)
	}
	printableAll(t, "quoted", Quote("\x1b[2J\xff"), Printable("x\ny"))
	if Printable("plain text") != "plain text" {
		t.Error("Printable changed plain text")
	}
}

func TestLines(t *testing.T) {
	for _, c := range []struct {
		r    Report
		want []string
	}{
		{Report{Mounted: true, Slot: "a", Action: "use", Why: "w"}, []string{"slot a's area on /data/slot, the shared area on /data/shared (use: w)"}},
		{Report{Unavailable: "no data partition"}, []string{"no /data: no data partition"}},
		{Report{}, []string{"no /data"}},
		{Report{Mounted: true, Slot: "b", Action: "snapshot", Why: "w", Quarantine: []string{`"x"`}, QuarantineCount: 3}, []string{
			"slot b's area on /data/slot, the shared area on /data/shared (snapshot: w)",
			`quarantine: /data/quarantine holds 3 entries keel set aside ("x" and 2 more): look at them, then remove them (chattr -i, rm -r)`,
		}},
	} {
		if got := c.r.Lines(); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("Lines(%+v):\n%s\nwant\n%s", c.r, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

// FuzzParse: Parse never panics, and what it returns is printable.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"format":1,"slot":"a","mounted":true,"set_aside":[{"from":"\"x\"","to":"\"y\"","why":"z"}],"quarantine":["\"q\""],"quarantine_count":1}`))
	f.Add([]byte(`{"format":1,"ignored":["\u001b"]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		printableAll(t, "lines", r.Lines()...)
	})
}
