package channel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/update/source"
)

// ReadHeader reads a bundle's signed header region (its first
// bundle.RegionSize bytes: preamble, header, signature, padding) and the
// header in it, without checking the signature (bundle.Open does).
func ReadHeader(ctx context.Context, src bundle.Source) ([]byte, *bundle.Header, error) {
	var pre []byte
	collect := func(_ int64, b []byte) error { pre = append(pre, b...); return nil }
	if err := src.Fetch(ctx, []bundle.Range{{Off: 0, Len: bundle.Align}}, collect); err != nil {
		return nil, nil, fmt.Errorf("reading the bundle: %w", err)
	}
	hl, sl, err := bundle.ParsePreamble(pre)
	if err != nil {
		return nil, nil, err
	}
	region := bundle.RegionSize(hl, sl)
	if region > bundle.Align {
		if err := src.Fetch(ctx, []bundle.Range{{Off: bundle.Align, Len: region - bundle.Align}}, collect); err != nil {
			return nil, nil, fmt.Errorf("reading the bundle's header: %w", err)
		}
	}
	h, err := bundle.DecodeHeader(pre[bundle.PreambleSize : bundle.PreambleSize+hl])
	if err != nil {
		return nil, nil, err
	}
	return pre, h, h.Validate(region)
}

// ErrMismatch: a target's file is not what the channel's signed metadata
// says it is.
var ErrMismatch = errors.New("channel: the file does not match the channel's metadata")

// Pin wraps the source of target t's file: the returned check, called
// with the bundle the install opened (before anything is written), fails
// with ErrMismatch unless the file's size is the target's length, the
// bytes of its header region read through the source hash to the
// target's header digest, and the header says the target's board,
// version, security version and delta. The header pins every part's
// SHA-256, and the install checks every part and block against it.
func Pin(src source.Source, t Target) (source.Source, func(*bundle.Bundle) error) {
	p := &pinned{Source: src, want: t.HeaderSize, h: sha256.New()}
	check := func(b *bundle.Bundle) error {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: %s: %s", ErrMismatch, t.Path, fmt.Sprintf(format, args...))
		}
		if n := src.Size(); n >= 0 && n != t.Length {
			return bad("the file is %d bytes, the channel says %d", n, t.Length)
		}
		if sum := p.sum(); sum != t.HeaderSHA256 {
			return bad("its header region hashes to %.16s…, the channel says %.16s…", sum, t.HeaderSHA256)
		}
		h := b.Header
		switch {
		case h.Compatible != t.Board, h.Version != t.Version, h.SecurityVersion != t.SecurityVersion:
			return bad("it is %s %s (security version %d), the channel says %s %s (%d)", h.Compatible, h.Version, h.SecurityVersion, t.Board, t.Version, t.SecurityVersion)
		case t.Kind == KindDelta && (h.Delta == nil || h.Delta.From != t.DeltaFrom), t.Kind == KindBundle && h.Delta != nil:
			return bad("its delta does not match the channel's (%s from %q)", t.Kind, t.DeltaFrom)
		}
		return nil
	}
	return p, check
}

// pinned hashes the first want bytes fetched through it, in order.
type pinned struct {
	source.Source
	mu   sync.Mutex
	want int64
	got  int64
	h    hash.Hash
	gap  bool // a piece came out of order: the digest cannot be trusted
}

func (p *pinned) Fetch(ctx context.Context, ranges []source.Range, fn func(off int64, b []byte) error) error {
	return p.Source.Fetch(ctx, ranges, func(off int64, b []byte) error {
		p.mu.Lock()
		if off <= p.got && off+int64(len(b)) > p.got && p.got < p.want {
			end := min(off+int64(len(b)), p.want)
			p.h.Write(b[p.got-off : end-off])
			p.got = end
		} else if off > p.got && p.got < p.want {
			p.gap = true
		}
		p.mu.Unlock()
		return fn(off, b)
	})
}

func (p *pinned) sum() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gap || p.got != p.want {
		return fmt.Sprintf("(the first %d bytes were not read in order)", p.want)
	}
	return hex.EncodeToString(p.h.Sum(nil))
}
