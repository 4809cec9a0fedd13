package manifest

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkDigestFile compares keel's kernel/initrd hashing (DigestOf, Go's
// SHA-256) with `openssl dgst -sha256` on the same 64 MiB file, in one run:
// compare the MB/s of the two sub-benchmarks.
func BenchmarkDigestFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	const size = 64 << 20
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.Run("keel", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := DigestOf(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("openssl", func(b *testing.B) {
		if _, err := exec.LookPath("openssl"); err != nil {
			b.Fatal("openssl is missing: install openssl (make deps)")
		}
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			if out, err := exec.Command("openssl", "dgst", "-sha256", path).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}
