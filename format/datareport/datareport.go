// Package datareport is what stage 2 tells the slot's OS about the data
// partition (package initramfs/dataarea): whether the OS has /data and its
// slot's area, why not, what stage 2 found there and ignored, what it set
// aside in quarantine/ because it could not remove it, and what quarantine/
// holds. Stage 2 writes it as JSON at layout.DataReportPath (in /run/keel,
// which the OS keeps); `keel status` and `keel events` read it.
//
// Everything in a report that came from the data partition (file names
// above all) is escaped by the writer: quoted as strconv.Quote does, so a
// name cannot carry a control character, a terminal escape or a line
// break into a console or an admin's terminal. Parse escapes again
// whatever holds an unprintable character: the file is on the OS's /run,
// which the OS can write.
//
// Format: JSON, one object; "format" is ReportFormat. A reader ignores
// fields it does not know (a newer keel's); a change an older reader must
// not ignore raises the format number.
package datareport

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Format is the report's format number.
const Format = 1

// MaxSize bounds a report: Parse refuses a longer one (the writer keeps
// its lists short: MaxNotes, MaxNames).
const MaxSize = 64 << 10

// MaxNotes is the most notes (Ignored, SetAside) a report lists; MaxNames
// the most names of quarantine/ it lists.
const (
	MaxNotes = 32
	MaxNames = 16
)

// Report is one boot's report.
type Report struct {
	// Format is Format.
	Format int `json:"format"`
	// Slot and Mode are the booted slot and its keel.mode=.
	Slot string `json:"slot"`
	Mode string `json:"mode"`
	// Mounted: the OS has the data partition on /data and the slot's
	// area on /data/slot.
	Mounted bool `json:"mounted"`
	// Action is what stage 2 did with the slot's area (use, create,
	// snapshot) and Why why; "" when it did not get that far.
	Action string `json:"action,omitempty"`
	Why    string `json:"why,omitempty"`
	// Unavailable says why the OS has no /data ("" when it has it).
	Unavailable string `json:"unavailable,omitempty"`
	// Ignored lists what stage 2 found on the data partition and did not
	// use (an object where keel keeps another kind, an install file it
	// could not read), one sentence each.
	Ignored []string `json:"ignored,omitempty"`
	// SetAside lists what stage 2 moved into quarantine/ at this boot.
	SetAside []SetAside `json:"set_aside,omitempty"`
	// Quarantine lists the first names in quarantine/ (quoted), and
	// QuarantineCount how many it holds in all (what keel set aside at
	// this boot and before, until someone removes it).
	Quarantine      []string `json:"quarantine,omitempty"`
	QuarantineCount int      `json:"quarantine_count,omitempty"`
}

// SetAside is one object stage 2 could not remove and moved into
// quarantine/: From and To are its paths on the data partition (quoted),
// Why why it could not be removed.
type SetAside struct {
	From string `json:"from"`
	To   string `json:"to"`
	Why  string `json:"why"`
}

// Quote is how a report (and stage 2's console) shows a name or a path
// from the data partition: strconv.Quote of it, cut to about 200 bytes (a
// path can be longer than PATH_MAX).
func Quote(s string) string {
	const max = 200
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return strconv.Quote(s)
}

// Printable returns s if every rune in it is printable (or a space), else
// s quoted: what a line built from untrusted text must pass through.
func Printable(s string) string {
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Parse reads a report. It refuses one longer than MaxSize, one that is
// not a JSON object, and one without a format number (not a report); it
// makes every string in it printable.
func Parse(b []byte) (Report, error) {
	var r Report
	if len(b) > MaxSize {
		return r, fmt.Errorf("data report: %d bytes, more than %d", len(b), MaxSize)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Report{}, fmt.Errorf("data report: %w", err)
	}
	if r.Format < 1 {
		return Report{}, errors.New("data report: no format number: not a data report of keel's")
	}
	for _, p := range []*string{&r.Slot, &r.Mode, &r.Action, &r.Why, &r.Unavailable} {
		*p = Printable(*p)
	}
	for _, l := range [][]string{r.Ignored, r.Quarantine} {
		for i := range l {
			l[i] = Printable(l[i])
		}
	}
	for i := range r.SetAside {
		s := &r.SetAside[i]
		s.From, s.To, s.Why = Printable(s.From), Printable(s.To), Printable(s.Why)
	}
	return r, nil
}

// Lines is the report for people, a line each, every line printable: what
// `keel status` and `keel events` show. A report with nothing to say but
// that /data is there has no lines but the first.
func (r Report) Lines() []string {
	var l []string
	switch {
	case r.Mounted:
		l = append(l, fmt.Sprintf("slot %s's area on /data/slot, the shared area on /data/shared (%s: %s)", Printable(r.Slot), Printable(r.Action), Printable(r.Why)))
	case r.Unavailable != "":
		l = append(l, "no /data: "+Printable(r.Unavailable))
	default:
		l = append(l, "no /data")
	}
	for _, s := range r.Ignored {
		l = append(l, "ignored: "+Printable(s))
	}
	for _, s := range r.SetAside {
		l = append(l, fmt.Sprintf("set aside: %s as %s: %s", Printable(s.From), Printable(s.To), Printable(s.Why)))
	}
	if r.QuarantineCount > 0 {
		names := ""
		for i, n := range r.Quarantine {
			if i > 0 {
				names += ", "
			}
			names += Printable(n)
		}
		if r.QuarantineCount > len(r.Quarantine) {
			names += fmt.Sprintf(" and %d more", r.QuarantineCount-len(r.Quarantine))
		}
		l = append(l, fmt.Sprintf("quarantine: /data/quarantine holds %d %s keel set aside (%s): look at them, then remove them (chattr -i, rm -r)", r.QuarantineCount, plural(r.QuarantineCount), names))
	}
	return l
}

func plural(n int) string {
	if n == 1 {
		return "entry"
	}
	return "entries"
}
