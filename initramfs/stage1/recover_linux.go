//go:build linux

package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/initramfs/sysinit"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/recovery"
	"github.com/keelboot/keel/slotwrite"
)

// deviceRecoverer is the seed on the recovery partition and the slot and
// data partitions it rewrites.
type deviceRecoverer struct {
	logf    Logf
	trusted []manifest.PublicKey
	board   string // the seed's manifests must be for it
	disks   *bootDisks
	wd      *sysinit.Watchdog // armed at keel-init's start; nil: none
	seed    *recovery.Seed
	src     *os.File
}

var _ Recoverer = (*deviceRecoverer)(nil)

func (d *deviceRecoverer) Verify(ctx context.Context) (SeedInfo, error) {
	if len(d.trusted) == 0 {
		return SeedInfo{}, fmt.Errorf("no trusted keys to verify the seed with")
	}
	disk, err := d.disks.get(d.logf)
	if err != nil {
		return SeedInfo{}, err
	}
	dev, err := disk.Partition(layout.Recovery)
	if err != nil {
		return SeedInfo{}, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return SeedInfo{}, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return SeedInfo{}, err
	}
	d.pet()
	start := time.Now()
	seed, err := recovery.VerifySeed(f, size, d.trusted, d.board)
	d.pet()
	if err != nil {
		f.Close()
		return SeedInfo{}, fmt.Errorf("%s (%s): %w", layout.Recovery, dev, err)
	}
	d.seed, d.src = seed, f
	d.logf("recovery seed verified in %.1fs: version %s, security version %d", time.Since(start).Seconds(),
		seed.Manifest.Version, seed.Manifest.SecurityVersion)
	return SeedInfo{Version: seed.Manifest.Version, SecurityVersion: seed.Manifest.SecurityVersion}, nil
}

// pet restarts the watchdog's countdown (at most once a second, and only
// when keel-init armed it). Verifying the seed is not
// petted while it runs: it must finish within the board's watchdog
// timeout.
func (d *deviceRecoverer) pet() {
	if err := d.wd.Pet(); err != nil {
		d.logf("warning: %v", err)
	}
}

// openRW opens the partition named name on the boot disk (never another
// disk's partition of that name) for the rewrite.
func (d *deviceRecoverer) openRW(name string) (*os.File, int64, error) {
	disk, err := d.disks.get(d.logf)
	if err != nil {
		return nil, 0, err
	}
	return disk.OpenRW(name)
}

// progress prints the rewrite's progress every 10% and pets the watchdog
// keel-init armed at start: a reinstall or a wipe may take longer than the
// board's watchdog timeout, and is reset only when it stops progressing.
func (d *deviceRecoverer) progress(what string) recovery.Progress {
	next := int64(0)
	return func(done, total int64, mbps float64) {
		d.pet()
		if total <= 0 {
			return
		}
		pct := done * 100 / total
		if pct >= next || done == total {
			d.logf("KEEL-PROGRESS %s %3d%% (%d of %d MiB, %.1f MB/s)", what, pct, done>>20, total>>20, mbps)
			next = pct/10*10 + 10
		}
	}
}

func (d *deviceRecoverer) Reinstall(ctx context.Context, slot string) error {
	if d.seed == nil {
		return fmt.Errorf("the seed was not verified")
	}
	sf, ss, err := d.openRW(layout.SlotPartition(slot))
	if err != nil {
		return err
	}
	defer sf.Close()
	rf, rs, err := d.openRW(layout.RootPartition(slot))
	if err != nil {
		return err
	}
	defer rf.Close()
	res, err := recovery.Reinstall(ctx, d.seed, d.src, slotwrite.Target{Slot: sf, SlotSize: ss, Root: rf, RootSize: rs},
		d.events(slot))
	if err != nil {
		return err
	}
	d.logf("slot %s: root blocks %v", slot, res.Blocks)
	return nil
}

// events prints the reinstall's progress, the slot writer's phases each
// from 0 to 100%: reading the slot's blocks (to write only those that
// differ from the seed's), writing it ("reinstall slot"), verifying what
// it wrote.
func (d *deviceRecoverer) events(slot string) func(slotwrite.Event) {
	what := map[string]string{"index": "reading slot " + slot, "write": "reinstall slot " + slot, "verify": "verifying slot " + slot}
	var (
		phase string
		show  recovery.Progress
		start time.Duration // the phase's, since the writer's start
	)
	return func(e slotwrite.Event) {
		if e.Phase != phase {
			phase, show, start = e.Phase, nil, e.Elapsed
			if w, ok := what[e.Phase]; ok {
				show = d.progress(w)
			}
		}
		if show == nil {
			d.pet()
			return
		}
		mbps := 0.0
		if s := (e.Elapsed - start).Seconds(); s > 0 {
			mbps = float64(e.Done) / 1e6 / s
		}
		show(e.Done, e.Total, mbps)
	}
}

func (d *deviceRecoverer) WipeData(ctx context.Context) error {
	if d.seed == nil {
		return fmt.Errorf("the seed was not verified")
	}
	f, size, err := d.openRW(layout.Data)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: a factory reset re-creates the data file system in the board's %q partition, and the boot disk has none (write the board's disk image to it again)", err, layout.Data)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return recovery.WipeData(ctx, d.seed, d.src, f, size, d.progress("factory reset of data"))
}
