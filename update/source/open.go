package source

import (
	"context"
	"errors"
	"io"
	"strings"
)

// Open opens the bundle the user named: "-" is stdin (a Stream named
// "standard input"), a spec starting with http:// or https:// is a URL
// (HTTP, with o), anything else is a file or block device (File).
func Open(ctx context.Context, spec string, stdin io.Reader, o HTTPOptions) (Source, error) {
	switch {
	case spec == "":
		return nil, errors.New("no bundle given: give a file, a block device, an http(s):// URL or - for standard input")
	case spec == "-":
		return Stream(stdin, "standard input"), nil
	case hasPrefixFold(spec, "http://"), hasPrefixFold(spec, "https://"):
		return HTTP(ctx, spec, o)
	default:
		return File(spec)
	}
}

// hasPrefixFold is strings.HasPrefix ignoring case: URL schemes are
// case-insensitive.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
