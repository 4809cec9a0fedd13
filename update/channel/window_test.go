package channel

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 12, 7, h, m, 0, 0, time.UTC) }
	for _, tc := range []struct {
		window string
		t      time.Time
		in     bool
	}{
		{"02:00-04:00", at(2, 0), true},
		{"02:00-04:00", at(3, 59), true},
		{"02:00-04:00", at(4, 0), false},
		{"02:00-04:00", at(1, 59), false},
		{"22:00-04:00", at(23, 30), true},
		{"22:00-04:00", at(0, 0), true},
		{"22:00-04:00", at(4, 0), false},
		{"22:00-04:00", at(12, 0), false},
		{"00:00-24:00", at(12, 0), true},
	} {
		w, err := ParseWindow(tc.window)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Contains(tc.t); got != tc.in {
			t.Errorf("%s at %s: %v", tc.window, tc.t.Format("15:04"), got)
		}
		if w.String() != tc.window {
			t.Errorf("%s prints as %s", tc.window, w)
		}
	}
	for _, bad := range []string{"", "2-4", "02:00", "25:00-01:00", "02:60-03:00", "02:00-02:00", "2:0-3:00", "24:01-01:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
