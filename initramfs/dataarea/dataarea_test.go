package dataarea

import "testing"

func TestDecide(t *testing.T) {
	// h: root hashes; t: trial ids.
	const h1, h2 = "1111", "2222"
	const t1, t2 = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
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
		// Trials are named by their ids (InstallID): whatever was
		// installed, a new trial's first boot copies the running slot's
		// area, and only its own later boots keep theirs.
		{"the same bundle installed again: a new trial id", State{Slot: "b", Mode: "trial", Install: t2, Source: "a", HasArea: true, AreaInstall: t1, HasSource: true}, Snapshot, "a"},
		{"a kernel-only update after one of the same root", State{Slot: "b", Mode: "trial", Install: t2, Source: "a", HasArea: true, AreaInstall: t1, HasSource: true}, Snapshot, "a"},
		{"a bundle retried after a failed trial", State{Slot: "b", Mode: "trial", Install: t2, Source: "a", HasArea: true, AreaInstall: t1, HasSource: true}, Snapshot, "a"},
		{"keel try of a slot installed earlier (its area of a normal boot)", State{Slot: "b", Mode: "trial", Install: t2, Source: "a", HasArea: true, AreaInstall: "", HasSource: true}, Snapshot, "a"},
		{"a trial's later boot", State{Slot: "b", Mode: "trial", Install: t2, Source: "a", HasArea: true, AreaInstall: t2, HasSource: true}, Use, ""},
		{"a trial id after an older keel's area of the same root", State{Slot: "b", Mode: "trial", Install: t2, Source: "a", HasArea: true, AreaInstall: h2, HasSource: true}, Snapshot, "a"},
		{"an older keel-init: an area of a trial with an id", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasArea: true, AreaInstall: t1, HasSource: true}, Snapshot, "a"},
		{"an older keel-init: the trial's later boot", State{Slot: "b", Mode: "trial", Install: h2, Source: "a", HasArea: true, AreaInstall: h2, HasSource: true}, Use, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Decide(c.s)
			if p.Action != c.want || p.Source != c.src || p.Why == "" {
				t.Errorf("Decide(%+v) = %+v, want %v from %q", c.s, p, c.want, c.src)
			}
		})
	}
}

func TestInstallID(t *testing.T) {
	const id, root = "0123456789abcdef0123456789abcdef", "ab12"
	for _, c := range []struct{ mode, id, root, want string }{
		{"trial", id, root, id},    // named by the record's trial id
		{"trial", "", root, root},  // an older keel-init: the root hash
		{"trial", "", "", ""},      // neither: unknown
		{"trial", id, "", id},      // no dm-verity root
		{"normal", id, root, ""},   // only a trial makes an area a trial keeps
		{"fallback", "", root, ""}, //
		{"recovery", id, root, ""}, //
		{"", id, root, ""},         //
	} {
		if got := InstallID(c.mode, c.id, c.root); got != c.want {
			t.Errorf("InstallID(%q, %q, %q) = %q, want %q", c.mode, c.id, c.root, got, c.want)
		}
	}
}
