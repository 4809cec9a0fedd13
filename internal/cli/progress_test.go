package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/slotwrite"
)

// TestProgress: the bar redraws one line with bytes, rate and ETA; lines
// come per phase and every few seconds; JSON is one event per line.
func TestProgress(t *testing.T) {
	events := func(p *progress, clock *time.Time) {
		for _, e := range []struct {
			phase       string
			done, total int64
			after       time.Duration
		}{
			{"index", 0, 8 << 20, 0}, {"index", 8 << 20, 8 << 20, time.Second},
			{"write", 0, 100 << 20, 0}, {"write", 25 << 20, 100 << 20, time.Second},
			{"write", 50 << 20, 100 << 20, 4 * time.Second}, {"write", 100 << 20, 100 << 20, 2 * time.Second},
			{"done", 0, 0, 0},
		} {
			*clock = clock.Add(e.after)
			p.event(slotwrite.Event{Phase: e.phase, Done: e.done, Total: e.total, Fetched: e.done / 2})
		}
	}
	for _, style := range []string{progressBar, progressLines, progressJSON, progressNone} {
		var out bytes.Buffer
		clock := time.Unix(1000, 0)
		p, err := newProgress(&out, style, func() time.Time { return clock })
		if err != nil {
			t.Fatal(err)
		}
		events(p, &clock)
		s := out.String()
		switch style {
		case progressBar:
			for _, want := range []string{"\r", "write     [======", "25%", "MB/s", "ETA", "100%"} {
				if !strings.Contains(s, want) {
					t.Errorf("bar lacks %q: %q", want, s)
				}
			}
		case progressLines:
			lines := strings.Split(strings.TrimSpace(s), "\n")
			if len(lines) < 4 || !strings.HasPrefix(lines[0], "install: reading the device's blocks") || strings.Contains(s, "\r") {
				t.Errorf("lines: %q", s)
			}
			if !strings.Contains(s, "install: writing  50%") {
				t.Errorf("no periodic line at 50%%: %q", s)
			}
		case progressJSON:
			n := 0
			for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
				var e progressEvent
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				n++
			}
			if n < 5 {
				t.Errorf("%d JSON events", n)
			}
		case progressNone:
			if s != "" {
				t.Errorf("none printed %q", s)
			}
		}
	}
	if _, err := newProgress(&bytes.Buffer{}, "fancy", time.Now); err == nil {
		t.Error("an unknown style is accepted")
	}
}
