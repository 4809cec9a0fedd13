package vmkit

import (
	"context"
	"fmt"
	"os"

	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/format/bundle"
)

// Bundle builds the update bundle of a test slot (as Disk would build it
// into slot name) into out, signed with the release key.
func (a *Artefacts) Bundle(ctx context.Context, out, name string, s SlotSpec) (*bundle.Header, error) {
	sl, err := a.imageSlot(s)
	if err != nil {
		return nil, err
	}
	spec := image.Spec{Board: a.Board, Seed: "keel-vmtest", SigningKeys: []string{a.SigningKey},
		Slots: map[string]image.Slot{name: sl}}
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	h, err := image.BuildBundle(ctx, spec, name, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("vmkit: bundle of slot %s version %s: %w", name, s.Version, err)
	}
	return h, nil
}
