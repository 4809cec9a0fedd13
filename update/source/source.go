package source

import "github.com/keelboot/keel/format/bundle"

// The interface this package implements lives beside the bundle format
// that reads through it (package format/bundle); these aliases keep the
// names callers use.

// PieceSize is the most bytes Fetch hands to its callback at once
// (bundle.PieceSize).
const PieceSize = bundle.PieceSize

// Range is Len bytes of the bundle from offset Off (bundle.Range).
type Range = bundle.Range

// Source is where an update bundle's bytes come from (bundle.Source):
// File, NewReaderAt, Stream and HTTP return one.
type Source = bundle.Source
