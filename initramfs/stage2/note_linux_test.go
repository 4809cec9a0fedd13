//go:build linux

package stage2

import (
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/memstore"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/verity"
)

// TestNoteFailure: a failed stage 2 notes in the record that keel-init
// ends the boot, so that the next keel-init counts the trial's try as
// used (a reboot), not given back (a power loss).
func TestNoteFailure(t *testing.T) {
	// b's trial booted: the record keel-init committed before kexec.
	tried, err := bootenv.Try(bootenv.Record{Slots: []bootenv.Slot{{Name: "a", State: bootenv.StateGood}, {Name: "b", State: bootenv.StateEmpty}}, Active: "a", Generation: 1}, "b", 2, bootenv.NewID())
	s := memstore.New()
	if _, booted := bootenv.Select(tried); err != nil || s.Commit(booted) != nil {
		t.Fatalf("arming b's trial: %v", err)
	}
	if err := note(s, "b"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Load()
	if got.Shutdown != bootenv.NoteKeelInit {
		t.Fatalf("note %q, want %q", got.Shutdown, bootenv.NoteKeelInit)
	}
	if e := bootenv.Classify(got, bootenv.Evidence{WatchdogRead: true}); e.How != bootenv.EndReboot {
		t.Errorf("the next boot sees %+v, want a reboot", e)
	}
	// Another slot's boot is not this one's to note.
	if err := note(s, "a"); err == nil {
		t.Errorf("noting slot a's end, when the last boot ran b: no error")
	}
	if _, err := openStore(cmdline.Store{}, t.Logf); err == nil {
		t.Errorf("no keel.store=: no error")
	}
}

// TestVerityMode: a corrupted block panics on a board that keeps the
// panic's log and has a watchdog (the next boot sees a panic), restarts
// the machine elsewhere.
func TestVerityMode(t *testing.T) {
	for name, want := range map[string]verity.Option{"qemu-x86_64-uefi": verity.PanicOnCorruption, "qemu-arm64-uboot": verity.RestartOnCorruption} {
		b, err := boards.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := verityMode(b); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
		b.Watchdog.Module = ""
		if got := verityMode(b); got != verity.RestartOnCorruption {
			t.Errorf("%s without a watchdog: %s, want %s (a panic would hang for good)", name, got, verity.RestartOnCorruption)
		}
	}
}
