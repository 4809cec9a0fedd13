package dataarea

import "testing"

func TestDecide(t *testing.T) {
	const h1, h2 = "1111", "2222"
	for _, c := range []struct {
		name string
		s    State
		want Action
		src  string
	}{
		{"normal with an area", State{Slot: "a", Mode: "normal", Install: h1, Source: "b", HasArea: true, AreaInstall: h2, HasSource: true}, Use, ""},
		{"normal without an area", State{Slot: "a", Mode: "normal", Install: h1, Source: "b", HasSource: true}, Create, ""},
		{"fallback keeps the old area", State{Slot: "a", Mode: "fallback", Install: h1, Source: "b", HasArea: true, AreaInstall: h1, HasSource: true}, Use, ""},
		{"fallback without an area", State{Slot: "a", Mode: "fallback", Source: "b", HasSource: true}, Create, ""},
		{"trial, first boot, old area of another install", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasArea: true, AreaInstall: h1, HasSource: true}, Snapshot, "a"},
		{"trial, first boot, no area", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasSource: true}, Snapshot, "a"},
		{"trial, first boot, area without install", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasArea: true, HasSource: true}, Snapshot, "a"},
		{"trial, later boot", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasArea: true, AreaInstall: h2, HasSource: true}, Use, ""},
		{"trial, no source area, old area", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasArea: true, AreaInstall: h1}, Use, ""},
		{"trial, no source area, no area", State{Slot: "b", Mode: "trial", Install: h2, Source: "a"}, Create, ""},
		{"trial, no source slot", State{Slot: "b", Mode: "trial", Install: h2, HasSource: true}, Create, ""},
		{"trial, source is the slot itself", State{Slot: "b", Mode: "trial", Install: h2, Source: "b", HasSource: true}, Create, ""},
		{"trial, unknown install, area", State{Slot: "b", Mode: "trial", Source: "a", HasArea: true, AreaInstall: h1, HasSource: true}, Use, ""},
		{"trial, unknown install, no area", State{Slot: "b", Mode: "trial", Source: "a", HasSource: true}, Snapshot, "a"},
		{"unknown mode", State{Slot: "b", Mode: "", Install: h2, Source: "a", HasArea: true, AreaInstall: h1, HasSource: true}, Use, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Decide(c.s)
			if p.Action != c.want || p.Source != c.src || p.Why == "" {
				t.Errorf("Decide(%+v) = %+v, want %v from %q", c.s, p, c.want, c.src)
			}
		})
	}
}
