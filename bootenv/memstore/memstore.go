// Package memstore is an in-memory bootenv.Store for tests: it keeps the
// record encoded (as a backend would) and can lose power during a commit.
// It models an atomic store such as a UEFI variable: a commit cut by a power
// loss leaves the old record or the new one, as the test chooses.
package memstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/keelboot/keel/bootenv"
)

type cutError string

func (e cutError) Error() string { return string(e) }

// errPowerCut is returned by the commit that lost power and by every call
// after it until PowerOn.
const errPowerCut = cutError("memstore: power cut")

// ErrPowerCut reports whether err is an injected power cut.
func ErrPowerCut(err error) bool { return errors.Is(err, errPowerCut) }

// Store is the in-memory store. The zero value is not usable; use New.
type Store struct {
	mu      sync.Mutex
	data    string // encoded record, "" when none
	commits int
	cut     *cutPlan
	off     bool
}

type cutPlan struct {
	after   int  // commits to let through before the cut
	persist bool // whether the cut commit's record survives
}

var _ bootenv.Store = (*Store)(nil)
var _ bootenv.Describer = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{} }

// CutPower makes the commit after the next `after` commits lose power. If
// persist is true the record of that commit survives (the cut came after
// the store's atomic point), otherwise the old record does.
func (s *Store) CutPower(after int, persist bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = &cutPlan{after: after, persist: persist}
}

// PowerOn brings the store back after a cut.
func (s *Store) PowerOn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.off = false
}

// Commits counts the commits that reached the store.
func (s *Store) Commits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// Load implements bootenv.Store.
func (s *Store) Load() (bootenv.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off {
		return bootenv.Record{}, errPowerCut
	}
	return s.load()
}

func (s *Store) load() (bootenv.Record, error) {
	if s.data == "" {
		return bootenv.Record{}, fmt.Errorf("memory store: %w", bootenv.ErrNoState)
	}
	var vars []bootenv.Var
	for _, line := range strings.Split(s.data, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars = append(vars, bootenv.Var{Name: k, Value: v})
		}
	}
	return bootenv.DecodeVars(vars)
}

// Commit implements bootenv.Store.
func (s *Store) Commit(r bootenv.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off {
		return errPowerCut
	}
	cur, err := s.load()
	if err := bootenv.CheckCommit(cur, err, r); err != nil {
		return err
	}
	var b strings.Builder
	for _, v := range bootenv.Encode(r) {
		b.WriteString(v.Name + "=" + v.Value + "\n")
	}
	if s.cut != nil {
		if s.cut.after == 0 {
			if s.cut.persist {
				s.data = b.String()
				s.commits++
			}
			s.cut = nil
			s.off = true
			return errPowerCut
		}
		s.cut.after--
	}
	s.data = b.String()
	s.commits++
	return nil
}

// Describe implements bootenv.Describer.
func (s *Store) Describe() bootenv.Info {
	return bootenv.Info{Backend: "memory", Location: "memory", PowerSafe: true}
}
