package ubootenv

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// Limits of the search for the size an env was really written with.
const (
	probeMax     = 16 << 20 // bytes read from the device at most
	probeMulMax  = 1 << 20  // multiples of 512 are tried up to here
	probeMinPow2 = 16       // powers of two are tried from here up to probeMax
)

// probeSizes returns the candidate copy sizes up to limit: powers of two,
// multiples of 512 (to probeMulMax) and the configured size, ascending.
func probeSizes(limit, configured int64) []int64 {
	var c []int64
	for p := int64(probeMinPow2); p <= limit; p *= 2 {
		c = append(c, p)
	}
	for m := int64(512); m <= min(limit, probeMulMax); m += 512 {
		c = append(c, m)
	}
	if configured <= limit {
		c = append(c, configured)
	}
	slices.Sort(c)
	return slices.Compact(c)
}

type probeMatch struct {
	size      int64
	redundant bool // layout: CRC + flag + data
	bigEndian bool
}

// probe looks at a copy whose CRC fails and says, if it can, what the env
// was really written as: another size, the other layout (single vs
// redundant), or a big-endian CRC (mkenvimage -b). It returns "" when
// nothing matches: the copy is just damaged.
func (s *Storage) probe(i int) string {
	a := &s.areas[i]
	limit := min(a.devSize-a.off, probeMax)
	if limit <= hdrRedundant {
		return ""
	}
	buf := make([]byte, limit)
	n, _ := a.dev.ReadAt(buf, a.off)
	buf = buf[:n]
	if len(buf) <= hdrRedundant {
		return ""
	}
	red := s.Redundant()
	m, ok := findCRC(buf, s.size, red)
	if !ok {
		return ""
	}
	return m.hint(s.size, red)
}

// findCRC scans buf (a copy and what follows it) for a size and layout at
// which the stored CRC matches, other than the configured one, with one
// running CRC per layout. Matches are ranked: same layout little-endian,
// other layout little-endian, then big-endian; smallest size first.
func findCRC(buf []byte, configured int64, redundant bool) (probeMatch, bool) {
	stored := binary.LittleEndian.Uint32(buf)
	storedBE := binary.BigEndian.Uint32(buf)
	sizes := probeSizes(int64(len(buf)), configured)
	var best []probeMatch
	rank := func(m probeMatch) int {
		r := 0
		if m.redundant != redundant {
			r++
		}
		if m.bigEndian {
			r += 2
		}
		return r
	}
	for _, red := range []bool{redundant, !redundant} {
		hdr := int64(headerSize(red))
		crc := uint32(0)
		prev := hdr
		for _, size := range sizes {
			if size <= hdr {
				continue
			}
			crc = crc32.Update(crc, crc32.IEEETable, buf[prev:size])
			prev = size
			for _, be := range []bool{false, true} {
				want := stored
				if be {
					want = storedBE
				}
				if crc != want || (red == redundant && size == configured && !be) {
					continue
				}
				best = append(best, probeMatch{size: size, redundant: red, bigEndian: be})
			}
		}
	}
	if len(best) == 0 {
		return probeMatch{}, false
	}
	slices.SortStableFunc(best, func(x, y probeMatch) int { return rank(x) - rank(y) })
	return best[0], true
}

func (m probeMatch) hint(configured int64, redundant bool) string {
	layout := func(red bool) string {
		if red {
			return "a redundant env (CRC + flag byte)"
		}
		return "a single-copy env (CRC only, no flag byte)"
	}
	var msg string
	switch {
	case m.redundant == redundant && !m.bigEndian:
		msg = fmt.Sprintf("the CRC matches at size 0x%x, not the configured 0x%x — fix the size in fw_env.config (sizes there are hexadecimal)", m.size, configured)
	case m.redundant != redundant:
		msg = fmt.Sprintf("the data is %s", layout(m.redundant))
		if m.size != configured {
			msg += fmt.Sprintf(" of size 0x%x", m.size)
		}
		if m.redundant {
			msg += ", but fw_env.config has one line (single copy) — add the second copy's line"
		} else {
			msg += ", but fw_env.config has two lines (redundant) — use one line"
		}
		if m.size != configured {
			msg += fmt.Sprintf(" with size 0x%x", m.size)
		}
		msg += ", or rewrite the env in the configured layout"
		if m.bigEndian {
			msg += "; and its CRC is big-endian (mkenvimage -b), which U-Boot on a little-endian board rejects"
		}
	default:
		msg = "the CRC matches only read as big-endian (an image made with mkenvimage -b?)"
		if m.size != configured {
			msg += fmt.Sprintf(" at size 0x%x", m.size)
		}
		msg += "; U-Boot and libubootenv read it little-endian — rebuild the image without -b"
	}
	return msg
}
