package image

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
)

// SizedBoard returns s.Board with the Spec's partition sizes (PartitionMB)
// and disk size (DiskMB) applied: the layout Build writes and BuildBundle
// sizes a slot's root for. Without DiskMB the disk grows (or shrinks) by
// what the named partitions did, so the partition that takes the rest of
// the disk keeps the board's size. The problems it reports name the Spec's
// fields (in a SpecError); the invariants of the sized board are
// Board.Validate's, which Spec.Validate runs on it.
//
// keel's boot archives (keel's initramfs, the slots' initrds) hold the
// board as boards/ defines it, not the sized one: keel-init finds
// partitions by name, never by size, so the same archives serve every
// size (and equal keel initramfs build's).
func (s *Spec) SizedBoard() (boards.Board, error) {
	b, errs := s.sizedBoard()
	if len(errs) > 0 {
		return s.Board, &SpecError{Errs: errs}
	}
	return b, nil
}

// sizedBoard is SizedBoard's work: the sized board and every problem.
func (s *Spec) sizedBoard() (boards.Board, []error) {
	b := s.Board
	if len(s.PartitionMB) == 0 && s.DiskMB == 0 {
		return b, nil
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if b.Name == "" {
		return b, nil // Validate says that no board is given
	}
	b.Layout = slices.Clone(b.Layout)
	var sizable []string
	rest := ""
	for _, p := range b.Layout {
		if p.SizeMB == 0 {
			rest = p.Name
		} else {
			sizable = append(sizable, p.Name)
		}
	}
	names := make([]string, 0, len(s.PartitionMB))
	for name := range s.PartitionMB {
		names = append(names, name)
	}
	sort.Strings(names)
	grow := 0
	for _, name := range names {
		mb := s.PartitionMB[name]
		i := slices.IndexFunc(b.Layout, func(p boards.Partition) bool { return p.Name == name })
		switch {
		case i < 0:
			add("partition_mb.%s: board %s has no partition %q: partition_mb sizes %s", name, b.Name, name, strings.Join(sizable, ", "))
		case b.Layout[i].SizeMB == 0:
			add("partition_mb.%s: partition %s takes the rest of the disk: size it with disk_mb (the whole disk in MiB) instead", name, name)
		case mb <= 0:
			add("partition_mb.%s: %d MiB: want the partition's size in MiB (board %s has %d)", name, mb, b.Name, b.Layout[i].SizeMB)
		default:
			grow += mb - b.Layout[i].SizeMB
			b.Layout[i].SizeMB = mb
		}
	}
	// What the partitions with a size take, with the GPT's 2 MiB.
	need := 2
	for _, p := range b.Layout {
		need += p.SizeMB
	}
	switch {
	case s.DiskMB < 0:
		add("disk_mb: %d MiB: want the disk's size in MiB (board %s has %d)", s.DiskMB, b.Name, b.DiskMB)
	case s.DiskMB > 0:
		min, what := need, ""
		if rest != "" {
			min++
			what = fmt.Sprintf(", and %s (the rest of the disk) at least 1 MiB", rest)
		}
		if s.DiskMB < min {
			add("disk_mb: %d MiB is too small: the partitions take %d MiB with the GPT's 2 MiB%s: set disk_mb to %d or more, or make partitions smaller in partition_mb",
				s.DiskMB, need, what, min)
		}
		b.DiskMB = s.DiskMB
	default:
		b.DiskMB += grow
	}
	return b, errs
}

// sizeHint says how the Spec gives partition part need bytes: the
// partition_mb entries to set. For a slot's partition it names that
// partition of every slot: an update installs a slot into the other slot's
// partitions, and the recovery seed's root goes into any root-<slot>.
func (bl *builder) sizeHint(part string, need int64) string {
	mb := (need + 1<<20 - 1) >> 20
	parts := []string{part}
	for _, name := range bl.s.Board.Slots {
		var of func(string) string
		switch part {
		case layout.RootPartition(name):
			of = layout.RootPartition
		case layout.SlotPartition(name):
			of = layout.SlotPartition
		default:
			continue
		}
		parts = parts[:0]
		for _, n := range bl.s.Board.Slots {
			parts = append(parts, of(n))
		}
		break
	}
	kv := make([]string, len(parts))
	for i, p := range parts {
		kv[i] = fmt.Sprintf("%q: %d", p, mb)
	}
	hint := fmt.Sprintf(`set "partition_mb": {%s} in the spec`, strings.Join(kv, ", "))
	if bl.s.DiskMB > 0 {
		hint += ` (with "disk_mb" large enough for them)`
	}
	return hint
}
