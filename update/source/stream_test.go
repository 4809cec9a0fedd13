package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
)

func TestStreamConformance(t *testing.T) {
	testConformance(t, func(t *testing.T, payload []byte) func(t *testing.T) Source {
		return func(t *testing.T) Source {
			// HalfReader: short reads, as from a pipe; and no ReadAt or
			// Seek to lean on.
			return Stream(iotest.HalfReader(bytes.NewReader(payload)), "pipe")
		}
	})
}

func TestStreamOverRealPipe(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB, more than a pipe holds
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		w.Write(payload)
		w.Close()
	}()
	src := Stream(r, "pipe")
	if got := src.Size(); got != -1 {
		t.Errorf("Size() = %d, want -1", got)
	}
	ranges := []Range{{Off: 10, Len: 100}, {Off: 1 << 20, Len: 1<<20 + 5}, {Off: 3000000, Len: 200000}}
	if err := fetchAndCheck(context.Background(), src, payload, ranges); err != nil {
		t.Fatal(err)
	}
}

func TestStreamForwardOnly(t *testing.T) {
	src := Stream(bytes.NewReader(make([]byte, 5000)), "standard input")
	ctx := context.Background()
	nop := func(int64, []byte) error { return nil }
	if err := src.Fetch(ctx, []Range{{Off: 1000, Len: 10}}, nop); err != nil {
		t.Fatal(err)
	}
	err := src.Fetch(ctx, []Range{{Off: 500, Len: 10}}, nop)
	const want = "standard input: a pipe can only be read forward: range at 500, already at 1010"
	if err == nil || err.Error() != want {
		t.Errorf("Fetch backwards = %v, want %q", err, want)
	}
	// Right where the last call ended is fine.
	if err := src.Fetch(ctx, []Range{{Off: 1010, Len: 10}, {Off: 4000, Len: 1000}}, nop); err != nil {
		t.Errorf("Fetch from the current position: %v", err)
	}
}

func TestStreamEndsEarly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ranges  []Range
		wantMsg string
	}{
		{"inside a range", []Range{{Off: 9000, Len: 2000}}, "pipe ended at offset 10000, before the end of the range 9000-11000: unexpected EOF"},
		{"inside a gap", []Range{{Off: 20000, Len: 1}}, "pipe ended at offset 10000, before the end of the range 20000-20001: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := Stream(bytes.NewReader(make([]byte, 10000)), "pipe")
			err := src.Fetch(context.Background(), tc.ranges, func(int64, []byte) error { return nil })
			if !errors.Is(err, io.ErrUnexpectedEOF) || err.Error() != tc.wantMsg {
				t.Errorf("Fetch = %v, want %q", err, tc.wantMsg)
			}
		})
	}
}

func TestStreamReadError(t *testing.T) {
	broken := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(make([]byte, 6000)), iotest.ErrReader(broken))
	err := Stream(r, "pipe").Fetch(context.Background(), []Range{{Off: 0, Len: 4096}, {Off: 4096, Len: 8192}}, func(int64, []byte) error { return nil })
	if !errors.Is(err, broken) || err.Error() != "read pipe at offset 6000: connection reset" {
		t.Errorf("Fetch = %v", err)
	}
}

func TestStreamCloseLeavesReader(t *testing.T) {
	r := &closeRecorder{Reader: bytes.NewReader(nil)}
	if err := Stream(r, "r").Close(); err != nil || r.closed {
		t.Errorf("Close = %v, closed the caller's reader: %v", err, r.closed)
	}
}
