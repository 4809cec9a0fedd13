package bootenv

import "fmt"

// Store persists the Record. Load returns the last committed record, or an
// error wrapping ErrNoState (nothing committed yet) or ErrCorrupt. Commit
// validates r and writes the whole record at once: a backend that says it
// is power-safe (Info) guarantees that after a power cut at any point of a
// Commit, Load returns the old or the new record, never a mix. A Commit that
// fails validation writes nothing.
type Store interface {
	Load() (Record, error)
	Commit(r Record) error
}

// Info describes where and how a Store keeps the record.
type Info struct {
	// Backend is "uboot-env", "efivars" or "memory".
	Backend string `json:"backend"`
	// Location names the file, device or variable.
	Location string `json:"location"`
	// PowerSafe is true when a power cut during Commit leaves the old or
	// the new record (a redundant env, a UEFI variable).
	PowerSafe bool `json:"power_safe"`
	// Note says what the caller should know, e.g. why the store is not
	// power-safe.
	Note string `json:"note,omitempty"`
}

// Describer is implemented by stores that can say what they are.
type Describer interface {
	Describe() Info
}

// CheckCommit is what every Store does before it writes next over the
// stored record cur (curErr is the error Load gave for it): next must be
// valid and, when cur could be read, newer than cur.
func CheckCommit(cur Record, curErr error, next Record) error {
	if err := next.Validate(); err != nil {
		return err
	}
	if curErr == nil && next.Generation <= cur.Generation {
		return fmt.Errorf("%w: generation %d is not newer than the stored %d; load the state again and redo the change",
			ErrStale, next.Generation, cur.Generation)
	}
	return nil
}
