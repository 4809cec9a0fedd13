package slotwrite

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
)

// TestHashDeviceSparse: holes of a sparse file are indexed as zero blocks
// without being read, and the data in between is hashed as read.
func TestHashDeviceSparse(t *testing.T) {
	f := newFixture(t, 7, 50, 0, false)
	tr, err := hasherTree(mustOpen(t, f).Params)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "root")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	const n = 3 * hashChunk
	if err := file.Truncate(n * blockSize); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, blockSize)
	rand.New(rand.NewSource(1)).Read(data)
	const at = hashChunk + 17 // in the middle chunk; the others are holes
	if _, err := file.WriteAt(data, at*blockSize); err != nil {
		t.Fatal(err)
	}
	got, err := hashDevice(file, n, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, n*blockSize)
	copy(img[at*blockSize:], data)
	want, err := hashDevice(bytes.NewReader(img), n, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("block %d: digest from the sparse file differs", i)
		}
	}
	if !isHole(file, 0, hashChunk*blockSize) || isHole(file, hashChunk*blockSize, hashChunk*blockSize) {
		t.Error("isHole does not tell the hole from the data")
	}
}

func mustOpen(t *testing.T, f *fixture) *bundle.Bundle {
	t.Helper()
	b, err := bundle.Open(context.Background(), mem(f.full1), f.trusted, bundletest.Board)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
