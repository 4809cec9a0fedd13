package channel

import (
	"fmt"
	"strings"
	"testing"
)

func rel(board, version string, secver uint64, rollout int) Target {
	return Target{Path: TargetPath(board, version, ""), Custom: Custom{Kind: KindBundle, Board: board, Version: version, SecurityVersion: secver, Rollout: rollout}}
}

func delta(board, version, from string, secver uint64) Target {
	return Target{Path: TargetPath(board, version, from), Custom: Custom{Kind: KindDelta, Board: board, Version: version, SecurityVersion: secver, DeltaFrom: from, Rollout: 100}}
}

// idIn and idOut are device ids inside and outside a 50% rollout of
// board b's version v.
func idIn(t *testing.T, b, v string, in bool) string {
	for i := range 1000 {
		id := fmt.Sprintf("device-%d", i)
		if (RolloutBucket(id, b, v) < 5000) == in {
			return id
		}
	}
	t.Fatal("no id")
	return ""
}

func TestDecide(t *testing.T) {
	const b = "board-x"
	in, out := idIn(t, b, "3.0", true), idIn(t, b, "3.0", false)
	dev := func(version string, secver uint64, floor int64, id string) Device {
		return Device{Board: b, Version: version, SecurityVersion: secver, Floor: floor, ID: id}
	}
	for _, tc := range []struct {
		name    string
		d       Device
		targets []Target
		reason  Reason
		install string // the path fetched
		text    string
	}{
		{"empty channel", dev("1.0", 1, -1, in), nil, ReasonBoard, "", "no release for board board-x"},
		{"other boards only", dev("1.0", 1, -1, in), []Target{rel("board-y", "2.0", 1, 100)}, ReasonBoard, "", "releases for board-y"},
		{"newer at 100%", dev("1.0", 1, -1, in), []Target{rel(b, "2.0", 1, 100)}, ReasonInstall, "board-x/2.0.bundle", "full bundle"},
		{"up to date", dev("2.0", 1, -1, in), []Target{rel(b, "2.0", 1, 100), rel(b, "1.0", 1, 100)}, ReasonUpToDate, "", "newest release for board-x is 2.0"},
		{"older only", dev("2.0", 1, -1, in), []Target{rel(b, "1.9", 1, 100)}, ReasonUpToDate, "", "running version 2.0"},
		{"versions compared as numbers", dev("1.9", 1, -1, in), []Target{rel(b, "1.10", 1, 100)}, ReasonInstall, "board-x/1.10.bundle", ""},
		{"lower security version is not newer", dev("1.0", 3, -1, in), []Target{rel(b, "2.0", 2, 100)}, ReasonUpToDate, "", ""},
		{"0% rollout", dev("1.0", 1, -1, in), []Target{rel(b, "3.0", 1, 0)}, ReasonNotRollout, "", "rolled out to 0%"},
		{"50%, in", dev("1.0", 1, -1, in), []Target{rel(b, "3.0", 1, 50)}, ReasonInstall, "board-x/3.0.bundle", ""},
		{"50%, out", dev("1.0", 1, -1, out), []Target{rel(b, "3.0", 1, 50)}, ReasonNotRollout, "", "not among them"},
		{"50%, out: the previous release instead", dev("1.0", 1, -1, out), []Target{rel(b, "3.0", 1, 50), rel(b, "2.0", 1, 100)}, ReasonInstall, "board-x/2.0.bundle", ""},
		{"below the floor", dev("1.0", 1, 5, in), []Target{rel(b, "2.0", 4, 100)}, ReasonFloor, "", "below this device's anti-rollback counter 5"},
		{"at the floor", dev("1.0", 1, 5, in), []Target{rel(b, "2.0", 5, 100)}, ReasonInstall, "board-x/2.0.bundle", ""},
		{"floor unknown", dev("1.0", 1, -1, in), []Target{rel(b, "2.0", 0, 100)}, ReasonUpToDate, "", ""},
		{"static delta for the running version", dev("1.0", 1, -1, in),
			[]Target{rel(b, "2.0", 1, 100), delta(b, "2.0", "1.0", 1), delta(b, "2.0", "0.9", 1)}, ReasonInstall, "board-x/2.0-from-1.0.bundle", "static delta"},
		{"a delta from another version: the full bundle (adaptive)", dev("1.1", 1, -1, in),
			[]Target{rel(b, "2.0", 1, 100), delta(b, "2.0", "1.0", 1)}, ReasonInstall, "board-x/2.0.bundle", "full bundle"},
		{"a delta without its bundle is no release", dev("1.0", 1, -1, in), []Target{delta(b, "2.0", "1.0", 1)}, ReasonBoard, "", ""},
		{"the newest of several", dev("1.0", 1, -1, in), []Target{rel(b, "2.0", 1, 100), rel(b, "2.1", 1, 100), rel(b, "1.5", 1, 100)}, ReasonInstall, "board-x/2.1.bundle", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.d, tc.targets)
			if got.Reason != tc.reason {
				t.Fatalf("reason %s (%s), want %s", got.Reason, got.Text, tc.reason)
			}
			fetched := ""
			if got.Fetch != nil {
				fetched = got.Fetch.Path
				if got.Target == nil || got.Target.Kind != KindBundle {
					t.Errorf("fetch %s without its release: %+v", fetched, got.Target)
				}
			}
			if fetched != tc.install {
				t.Errorf("fetch %q, want %q", fetched, tc.install)
			}
			if !strings.Contains(got.Text, tc.text) {
				t.Errorf("text %q does not say %q", got.Text, tc.text)
			}
		})
	}
}

// TestRolloutMonotone: a device in the share at p% is in it at every
// share above p, and the share is about p% of devices.
func TestRolloutMonotone(t *testing.T) {
	const n = 4000
	prev := 0
	for p := 0; p <= 100; p += 5 {
		in := 0
		for i := range n {
			id := fmt.Sprintf("dev-%d", i)
			c := Custom{Board: "b", Version: "7.1", Rollout: p}
			if InRollout(id, c) {
				in++
				if p > 0 && !InRollout(id, Custom{Board: "b", Version: "7.1", Rollout: p + 5}) && p+5 <= 100 {
					t.Fatalf("%s is in at %d%% but not at %d%%", id, p, p+5)
				}
			}
		}
		if in < prev {
			t.Fatalf("%d devices in at %d%%, %d before", in, p, prev)
		}
		if share := float64(in) / n * 100; share < float64(p)-3 || share > float64(p)+3 {
			t.Errorf("%d%%: %.1f%% of devices in", p, share)
		}
		prev = in
	}
	if prev != n {
		t.Errorf("at 100%%: %d of %d", prev, n)
	}
	// Another release cuts another share.
	same := 0
	for i := range n {
		id := fmt.Sprintf("dev-%d", i)
		if InRollout(id, Custom{Board: "b", Version: "7.1", Rollout: 50}) == InRollout(id, Custom{Board: "b", Version: "7.2", Rollout: 50}) {
			same++
		}
	}
	if same > n*60/100 || same < n*40/100 {
		t.Errorf("two releases at 50%%: %d of %d devices on the same side", same, n)
	}
}
