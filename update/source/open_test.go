package source

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/update/source/sourcetest"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	payload := testPayload(100000)
	ranges := []Range{{Off: 10, Len: 5000}, {Off: 60000, Len: 40000}}

	t.Run("standard input", func(t *testing.T) {
		src, err := Open(ctx, "-", bytes.NewReader(payload), HTTPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if src.Size() != -1 {
			t.Errorf("Size() = %d, want -1", src.Size())
		}
		if err := fetchAndCheck(ctx, src, payload, ranges); err != nil {
			t.Fatal(err)
		}
		err = src.Fetch(ctx, []Range{{Off: 0, Len: 1}}, func(int64, []byte) error { return nil })
		if err == nil || !strings.HasPrefix(err.Error(), "standard input: a pipe can only be read forward") {
			t.Errorf("Fetch backwards = %v", err)
		}
	})
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bundle")
		if err := os.WriteFile(path, payload, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := Open(ctx, path, nil, HTTPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if src.Size() != int64(len(payload)) {
			t.Errorf("Size() = %d, want %d", src.Size(), len(payload))
		}
		if err := fetchAndCheck(ctx, src, payload, ranges); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("URL", func(t *testing.T) {
		s := sourcetest.NewServer(t, payload)
		// Schemes are case-insensitive.
		for _, url := range []string{s.URL, strings.Replace(s.URL, "http://", "HTTP://", 1)} {
			src, err := Open(ctx, url, nil, HTTPOptions{Parallel: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			h, ok := src.(*HTTPSource)
			if !ok || h.o.Parallel != 2 {
				t.Fatalf("Open(%s) = %T, want an *HTTPSource with the options", url, src)
			}
			if err := fetchAndCheck(ctx, src, payload, ranges); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "example.com", "bundle.raucb")
		_, err := Open(ctx, missing, nil, HTTPOptions{})
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "bundle "+missing+" does not exist") {
			t.Errorf("Open(missing) = %v, want it to say the file does not exist", err)
		}
	})
	t.Run("nothing", func(t *testing.T) {
		if _, err := Open(ctx, "", nil, HTTPOptions{}); err == nil {
			t.Error(`Open("") works`)
		}
	})
}
