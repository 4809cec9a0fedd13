package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/update"
)

// Progress styles of keel install.
const (
	progressAuto  = "auto"  // bar on a terminal, lines otherwise
	progressBar   = "bar"   // one line redrawn: bar, bytes, rate, ETA
	progressLines = "lines" // a plain line every few seconds and per phase
	progressJSON  = "json"  // one JSON object per line (for update agents)
	progressNone  = "none"
)

// progress renders slotwrite.Events.
type progress struct {
	w     io.Writer
	style string
	now   func() time.Time
	last  time.Time // last line printed (lines, json) or drawn (bar)
	phase string
	start time.Time // of the phase
	width int       // of the last bar line, to clear it
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(w io.Writer, style string, now func() time.Time) (*progress, error) {
	switch style {
	case progressAuto, "":
		style = progressLines
		if isTerminal(w) {
			style = progressBar
		}
	case progressBar, progressLines, progressJSON, progressNone:
	default:
		return nil, usagef("--progress %q: want auto, bar, lines, json or none", style)
	}
	return &progress{w: w, style: style, now: now}, nil
}

// event is the JSON form of a progress event.
type progressEvent struct {
	slotwrite.Event
	Rate float64 `json:"bytes_per_second"`
	ETA  float64 `json:"eta_seconds"`
}

func (p *progress) event(e slotwrite.Event) {
	now := p.now()
	changed := e.Phase != p.phase
	if changed {
		p.phase, p.start = e.Phase, now
	}
	el := now.Sub(p.start).Seconds()
	rate, eta := 0.0, -1.0
	if el > 0.2 && e.Done > 0 {
		rate = float64(e.Done) / el
		eta = float64(e.Total-e.Done) / rate
	}
	end := e.Done == e.Total || e.Phase == "done"
	switch p.style {
	case progressNone:
	case progressJSON:
		if changed || end || now.Sub(p.last) >= 500*time.Millisecond {
			b, _ := json.Marshal(progressEvent{Event: e, Rate: rate, ETA: eta})
			fmt.Fprintf(p.w, "%s\n", b)
			p.last = now
		}
	case progressLines:
		if e.Phase == "done" {
			return
		}
		if changed || (end && now.Sub(p.last) > 0) || now.Sub(p.last) >= 3*time.Second {
			fmt.Fprintf(p.w, "install: %s %s\n", update.PhaseName(e.Phase), amounts(e, rate, eta))
			p.last = now
		}
	case progressBar:
		if !changed && !end && now.Sub(p.last) < 100*time.Millisecond {
			return
		}
		p.last = now
		if e.Phase == "done" {
			p.clear()
			return
		}
		const width = 24
		fill := 0
		if e.Total > 0 {
			fill = int(int64(width) * e.Done / e.Total)
		}
		line := fmt.Sprintf("%-9s [%s%s] %s", e.Phase, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), amounts(e, rate, eta))
		p.clear()
		fmt.Fprint(p.w, line)
		p.width = len(line)
		if end {
			fmt.Fprintln(p.w)
			p.width = 0
		}
	}
}

// clear erases the bar line.
func (p *progress) clear() {
	if p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width = 0
	}
}

// amounts is "45% 120.3/267.0 MiB 35.2 MB/s ETA 4s".
func amounts(e slotwrite.Event, rate, eta float64) string {
	pct := 100.0
	if e.Total > 0 {
		pct = 100 * float64(e.Done) / float64(e.Total)
	}
	s := fmt.Sprintf("%3.0f%% %.1f/%.1f MiB", pct, float64(e.Done)/(1<<20), float64(e.Total)/(1<<20))
	if rate > 0 {
		s += fmt.Sprintf(" %.1f MB/s", rate/1e6)
	}
	if eta >= 0 && e.Done < e.Total {
		s += " ETA " + (time.Duration(eta) * time.Second).Round(time.Second).String()
	}
	if e.Fetched > 0 {
		s += fmt.Sprintf(" (fetched %.1f MiB)", float64(e.Fetched)/(1<<20))
	}
	return s
}
