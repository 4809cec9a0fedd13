package source

// piece is one callback's worth of bytes: what Fetch hands to fn at once.
type piece struct {
	off, len int64
}

func (p piece) end() int64 { return p.off + p.len }

// pieces cuts r into pieces of max bytes counted from the range's start,
// the last one shorter. max must be a multiple of 4096, so every piece but
// the last is too.
func pieces(r Range, max int64) []piece {
	ps := make([]piece, 0, (r.Len+max-1)/max)
	for off := r.Off; off < r.End(); off += max {
		ps = append(ps, piece{off, min(max, r.End()-off)})
	}
	return ps
}
