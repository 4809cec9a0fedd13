package slotwrite

import (
	"fmt"
	"strings"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/verity"
)

// from is where a block of the new root comes from.
type from uint8

// The sources, in the order they are looked at (docs/DESIGN.md section 8): a
// block the target already holds in place costs nothing; then the zero
// block, a block already written in this install, the target's old
// contents elsewhere, the active slot's root; the bundle last.
const (
	fromInPlace from = iota
	fromZero
	fromWritten
	fromTarget
	fromActive
	fromBundle
	numFrom
)

var fromNames = [numFrom]string{"in place", "zero", "copied", "target", "active", "fetched"}

// BlockCounts counts the blocks of the new root by where they came from.
type BlockCounts struct {
	// InPlace: the target already held the block where it belongs.
	InPlace uint64 `json:"in_place"`
	// Zero: the zero block.
	Zero uint64 `json:"zero"`
	// Copied: the same block already written earlier in this install.
	Copied uint64 `json:"copied"`
	// Target: the target's old contents, elsewhere.
	Target uint64 `json:"target"`
	// Active: the active slot's root.
	Active uint64 `json:"active"`
	// Fetched: from the bundle.
	Fetched uint64 `json:"fetched"`
}

func (c BlockCounts) String() string {
	v := [numFrom]uint64{c.InPlace, c.Zero, c.Copied, c.Target, c.Active, c.Fetched}
	var parts []string
	for i, n := range v {
		parts = append(parts, fmt.Sprintf("%s %d", fromNames[i], n))
	}
	return strings.Join(parts, ", ")
}

// plan says where each block of the new root comes from.
type plan struct {
	kind []from
	src  []uint64 // the source block (fromWritten, fromTarget, fromActive)
	// fetch lists the blocks taken from the bundle, ascending, and ranges
	// their bytes in the bundle (adjacent blocks coalesced).
	fetch  []uint64
	ranges []bundle.Range
	counts BlockCounts
}

// ErrDeltaSource is wrapped when a static delta bundle needs blocks the
// device does not have.
const ErrDeltaSource = bundle.Error("the device lacks blocks this delta bundle needs")

// makePlan decides the source of every block of the tree's root: old are
// the digests of the target's current blocks (by position), active those
// of the active slot's root (nil when there is none). b's block map (nil
// for a full bundle) says which blocks the bundle carries.
func makePlan(t *verity.Tree, b *bundle.Bundle, bm bundle.BlockMap, old, active []digest, zero digest) (*plan, error) {
	n := t.Blocks()
	p := &plan{kind: make([]from, n), src: make([]uint64, n)}
	firstNew := make(map[digest]uint64, n)
	oldLast := lastIndex(old)
	activeFirst := firstIndex(active)
	dp, _ := b.Header.Part(bundle.PartData)
	var missing []uint64
	rank := uint64(0) // carried blocks before i, for a delta
	for i := uint64(0); i < n; i++ {
		var want digest
		copy(want[:], t.Leaf(i))
		carried := bm == nil || bm.Has(i)
		k, src := fromBundle, uint64(0)
		if j, ok := firstNew[want]; ok {
			k, src = fromWritten, j
		} else {
			firstNew[want] = i
		}
		switch {
		case i < uint64(len(old)) && old[i] == want:
			k = fromInPlace
		case want == zero:
			k = fromZero
		case k == fromWritten:
		default:
			if j, ok := oldLast[want]; ok && j > i {
				k, src = fromTarget, j
			} else if j, ok := activeFirst[want]; ok {
				k, src = fromActive, j
			}
		}
		if k == fromBundle {
			if !carried {
				missing = append(missing, i)
			} else {
				p.fetch = append(p.fetch, i)
				off := dp.Offset + int64(i)*blockSize
				if bm != nil {
					off = dp.Offset + int64(rank)*blockSize
				}
				if l := len(p.ranges); l > 0 && p.ranges[l-1].End() == off && p.ranges[l-1].Len < bundle.PieceSize*8 {
					p.ranges[l-1].Len += blockSize
				} else {
					p.ranges = append(p.ranges, bundle.Range{Off: off, Len: blockSize})
				}
			}
		}
		if carried && bm != nil {
			rank++
		}
		p.kind[i], p.src[i] = k, src
		switch k {
		case fromInPlace:
			p.counts.InPlace++
		case fromZero:
			p.counts.Zero++
		case fromWritten:
			p.counts.Copied++
		case fromTarget:
			p.counts.Target++
		case fromActive:
			p.counts.Active++
		case fromBundle:
			p.counts.Fetched++
		}
	}
	if len(missing) > 0 {
		d := b.Header.Delta
		first := make([]string, 0, 5)
		for _, m := range missing[:min(5, len(missing))] {
			first = append(first, fmt.Sprint(m))
		}
		return nil, fmt.Errorf("%w: it is a delta from version %s (root hash %.16s…) and %d of its %d blocks are neither in it nor on this device (blocks %s…): install it on a device running version %s, or install the full bundle of version %s",
			ErrDeltaSource, d.From, d.FromRootHash, len(missing), n, strings.Join(first, ", "), d.From, b.Header.Version)
	}
	return p, nil
}
