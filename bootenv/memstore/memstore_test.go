package memstore

import (
	"errors"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		s := New()
		return func() (bootenv.Store, error) { return s, nil }
	})
}

func TestPowerCut(t *testing.T) {
	for _, persist := range []bool{false, true} {
		s := New()
		old, _ := bootenv.Init(nil, "a")
		if err := s.Commit(old); err != nil {
			t.Fatal(err)
		}
		_, next := bootenv.Select(old)
		s.CutPower(0, persist)
		if err := s.Commit(next); !ErrPowerCut(err) {
			t.Fatalf("commit: %v, want a power cut", err)
		}
		if _, err := s.Load(); !ErrPowerCut(err) {
			t.Fatalf("load while off: %v", err)
		}
		s.PowerOn()
		got, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		want := old
		if persist {
			want = next
		}
		if !got.Equal(want) {
			t.Errorf("persist=%v: got generation %d, want %d", persist, got.Generation, want.Generation)
		}
	}
	if errors.Is(bootenv.ErrNoState, errPowerCut) {
		t.Error("sentinels collide")
	}
}

func BenchmarkLoadCommit(b *testing.B) {
	s := New()
	storetest.BenchmarkLoadCommit(b, func() (bootenv.Store, error) { return s, nil })
}
