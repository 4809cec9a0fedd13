package bootenv

import "io/fs"

// Error is a sentinel error of this package. Its values are constants, so no
// caller can reassign them.
type Error string

func (e Error) Error() string { return string(e) }

// Is lets ErrNoState match fs.ErrNotExist: a store with no record behaves
// like a missing file.
func (e Error) Is(target error) bool {
	return e == ErrNoState && target == fs.ErrNotExist
}

// Sentinel errors. Wrap them with %w and test with errors.Is.
const (
	// ErrNoState: the store holds no keel record yet (a new device, or an
	// env without keel_* variables). It matches fs.ErrNotExist.
	ErrNoState Error = "no keel boot state"
	// ErrCorrupt: the stored record cannot be read (every copy fails its
	// checksum, or the keel_* variables do not decode).
	ErrCorrupt Error = "keel boot state is corrupt"
	// ErrInvalidRecord: a record breaks an invariant (see Record.Validate).
	ErrInvalidRecord Error = "invalid keel boot record"
	// ErrUnknownSlot: a slot name that the record does not have.
	ErrUnknownSlot Error = "unknown slot"
	// ErrRefused: a transition that the record's state does not allow.
	ErrRefused Error = "refused"
)

// ErrStale: a Commit of a record whose generation is not newer than the
// stored one (another writer committed in between; load again).
const ErrStale Error = "stale keel boot record"
