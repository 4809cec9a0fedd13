package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// memSource is a random-access Source over b.
func memSource(b []byte) Source { return NewReaderAt(bytes.NewReader(b), int64(len(b)), "test") }

// oneChunkView is a view of one data part of n bytes stored as the given
// frames (one chunk each), as ParseIndex would make it.
func oneChunkView(t testing.TB, size int64, frames ...[]byte) (*chunkView, []byte) {
	t.Helper()
	var file, index []byte
	for _, f := range frames {
		index = binary.LittleEndian.AppendUint32(index, uint32(len(f)))
		file = append(file, f...)
	}
	s := sha256.Sum256(index)
	parts := []Part{{Name: PartData, Offset: Align, Size: size}}
	stored := alignUp(int64(len(index) + len(file)))
	file = append(file, make([]byte, stored-int64(len(index)+len(file)))...)
	h := &Header{Parts: parts, Chunks: &Chunks{Compression: Compression, ChunkSize: MinChunk,
		IndexSize: int64(len(index)), IndexSHA256: hex.EncodeToString(s[:]), StoredSize: stored}}
	x, err := ParseIndex(h, 0, index)
	if err != nil {
		return nil, nil
	}
	return &chunkView{src: memSource(append(index, file...)), ix: x}, index
}

func readAll(v *chunkView, size int64) ([]byte, error) {
	var out []byte
	err := v.Fetch(context.Background(), []Range{{Off: Align, Len: size}}, func(_ int64, b []byte) error {
		out = append(out, b...)
		return nil
	})
	return out, err
}

// TestChunkRefused: a chunk that decompresses to more or less than its
// size, or not at all, is refused naming it; the bytes it did decompress
// are never handed over.
func TestChunkRefused(t *testing.T) {
	enc, _ := zstd.NewWriter(nil)
	data := bytes.Repeat([]byte("keel "), 2*MinChunk/5+1)[:2*MinChunk]
	good := [][]byte{enc.EncodeAll(data[:MinChunk], nil), enc.EncodeAll(data[MinChunk:], nil)}
	v, _ := oneChunkView(t, 2*MinChunk, good...)
	if got, err := readAll(v, 2*MinChunk); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good chunks: %v", err)
	}
	big := append(append([]byte(nil), data[MinChunk:]...), 'x')
	for _, c := range []struct {
		name   string
		second []byte
		want   string
	}{
		{"more", enc.EncodeAll(big, nil), "chunk 1 (the data part's bytes 65536 to 131072) does not decompress to its 65536 bytes"},
		{"less", enc.EncodeAll(data[MinChunk:2*MinChunk-1], nil), "chunk 1 (the data part's bytes 65536 to 131072) decompresses to 65535 bytes, the signed index says 65536"},
		{"garbage", bytes.Repeat([]byte{0x28}, 100), "chunk 1 (the data part's bytes 65536 to 131072) does not decompress"},
		{"flipped", func() []byte { b := append([]byte(nil), good[1]...); b[len(b)/2] ^= 1; return b }(), "chunk 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, _ := oneChunkView(t, 2*MinChunk, good[0], c.second)
			if v == nil {
				t.Fatal("index refused")
			}
			var got []byte
			err := v.Fetch(context.Background(), []Range{{Off: Align + MinChunk, Len: MinChunk}}, func(_ int64, b []byte) error {
				got = append(got, b...)
				return nil
			})
			if err == nil || !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrTampered with %q", err, c.want)
			}
			if len(got) != 0 {
				t.Errorf("%d bytes of the bad chunk handed over", len(got))
			}
		})
	}
}

// TestIndexRefused: stored sizes out of bounds, or a sum that is not the
// file's size, are refused before any chunk is read.
func TestIndexRefused(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []uint32
		stored  int64
		want    string
	}{
		{"zero", []uint32{0, 10}, 4096, "stored in 0 bytes"},
		{"huge", []uint32{10, 1 << 31}, 4096 + 1<<31, "want 1 to"},
		{"sum", []uint32{10, 10}, 8192, "the chunks end at 28"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var index []byte
			for _, e := range c.entries {
				index = binary.LittleEndian.AppendUint32(index, e)
			}
			s := sha256.Sum256(index)
			h := &Header{Parts: []Part{{Name: PartData, Offset: Align, Size: 2 * MinChunk}}, Chunks: &Chunks{Compression: Compression,
				ChunkSize: MinChunk, IndexSize: 8, IndexSHA256: hex.EncodeToString(s[:]), StoredSize: c.stored}}
			_, err := ParseIndex(h, 0, index)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// FuzzChunk: whatever a chunk's stored bytes, the view hands over exactly
// the chunk's bytes or fails naming it; it never panics or hands over
// more.
func FuzzChunk(f *testing.F) {
	enc, _ := zstd.NewWriter(nil)
	data := bytes.Repeat([]byte("keel chunk "), MinChunk/11+1)[:MinChunk]
	f.Add(enc.EncodeAll(data, nil))
	f.Add(enc.EncodeAll(append(data, 1), nil))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, stored []byte) {
		if len(stored) == 0 || int64(len(stored)) > maxStored(MinChunk) {
			return
		}
		v, _ := oneChunkView(t, MinChunk, stored)
		if v == nil {
			t.Fatal("index refused")
		}
		got, err := readAll(v, MinChunk)
		if err == nil && len(got) != MinChunk {
			t.Fatalf("handed over %d bytes of a %d-byte chunk", len(got), MinChunk)
		}
		if err != nil && (!errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "chunk 0")) {
			t.Fatalf("error %v does not name the chunk", err)
		}
	})
}
