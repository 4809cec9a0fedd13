package update

import (
	"context"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/slotwrite"
	"github.com/keelboot/keel/update/source"
)

// Options configure Install.
type Options struct {
	// Trusted are the keys the bundle's header and manifest must be
	// signed with (on a device, the keys keel-init verified the running
	// slot with), and Board the board's name (compatible).
	Trusted []manifest.PublicKey
	Board   string
	// Check, if set, decides whether the verified bundle may be installed
	// (board policy: downgrades, the anti-rollback counter); its error
	// stops the install before anything is written.
	Check func(*bundle.Bundle) error
	// Target, Active, NoLocal, Begin and Progress are the writer's
	// (slotwrite.Options): the slot written, the running slot as a source
	// of blocks (nil: none), no delta lookups, the boot record's "being
	// written" just before the first write, progress events.
	Target   slotwrite.Target
	Active   *slotwrite.Active
	NoLocal  bool
	Begin    func(*bundle.Bundle) error
	Progress func(slotwrite.Event)
}

// Install installs the update bundle in src into o.Target: it opens the
// bundle (bundle.Open: the header's and the manifest's signatures by
// o.Trusted, the board), lets o.Check refuse it, and hands it to the slot
// writer (slotwrite.Write: delta, pipelined, read back, power-cut safe),
// which fetches from src only the blocks the device lacks. Nothing is
// written before everything that can be checked was.
func Install(ctx context.Context, src source.Source, o Options) (*slotwrite.Result, error) {
	open := func(ctx context.Context, src bundle.Source) (*bundle.Bundle, error) {
		b, err := bundle.Open(ctx, src, o.Trusted, o.Board)
		if err != nil {
			return nil, err
		}
		if o.Check != nil {
			if err := o.Check(b); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return slotwrite.Write(ctx, src, open, slotwrite.Options{
		Target: o.Target, Active: o.Active, NoLocal: o.NoLocal, Begin: o.Begin, Progress: o.Progress})
}
