package slotwrite

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/keelboot/keel/format/verity"
)

// digest is a block's dm-verity leaf (SHA-256 of salt || block).
type digest [32]byte

// blockSize is the root file system block size of keel bundles.
const blockSize = 4096

// hashChunk is how many blocks one worker hashes at a time.
const hashChunk = 256

// hashDevice returns the leaf digests (with t's salt) of the first n
// blocks of r, hashing in parallel; progress gets the bytes read.
func hashDevice(r io.ReaderAt, n uint64, t *verity.Tree, progress func(int64)) ([]digest, error) {
	out := make([]digest, n)
	if n == 0 {
		return out, nil
	}
	chunks := (n + hashChunk - 1) / hashChunk
	workers := min(uint64(runtime.GOMAXPROCS(0)), chunks)
	next := make(chan uint64)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := uint64(0); w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := t.Hasher()
			buf := make([]byte, hashChunk*blockSize)
			zeroBlock := make([]byte, blockSize)
			var zero digest
			copy(zero[:], x.Sum(zeroBlock))
			for c := range next {
				first := c * hashChunk
				k := min(hashChunk, n-first)
				b := buf[:k*blockSize]
				if isHole(r, int64(first)*blockSize, int64(len(b))) {
					for i := uint64(0); i < k; i++ {
						out[first+i] = zero
					}
					if progress != nil {
						mu.Lock()
						progress(int64(len(b)))
						mu.Unlock()
					}
					continue
				}
				if err := readFull(r, b, int64(first*blockSize)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("block %d: %w", first, err)
					}
					mu.Unlock()
					continue
				}
				for i := uint64(0); i < k; i++ {
					blk := b[i*blockSize : (i+1)*blockSize]
					if bytes.Equal(blk, zeroBlock) { // an empty target: no hashing
						out[first+i] = zero
						continue
					}
					copy(out[first+i][:], x.Sum(blk))
				}
				if progress != nil {
					mu.Lock()
					progress(int64(len(b)))
					mu.Unlock()
				}
			}
		}()
	}
	for c := uint64(0); c < chunks; c++ {
		next <- c
	}
	close(next)
	wg.Wait()
	return out, firstErr
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// firstIndex maps each digest to its first block.
func firstIndex(ds []digest) map[digest]uint64 {
	m := make(map[digest]uint64, len(ds))
	for i, d := range ds {
		if _, ok := m[d]; !ok {
			m[d] = uint64(i)
		}
	}
	return m
}

// lastIndex maps each digest to its last block (the target's old contents:
// the later a copy, the longer it survives the in-order rewrite).
func lastIndex(ds []digest) map[digest]uint64 {
	m := make(map[digest]uint64, len(ds))
	for i, d := range ds {
		m[d] = uint64(i)
	}
	return m
}
