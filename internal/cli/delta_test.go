package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

// TestBundleDeltaChecksOld: keel bundle delta checks every data block of
// the old bundle against the old tree (whose root hash is in the old
// bundle's signed manifest) before it trusts what the old version holds:
// from a damaged old bundle it fails naming the block and writes nothing,
// where it used to write a delta that leaves out blocks the devices do
// not have (or carries blocks they have).
func TestBundleDeltaChecksOld(t *testing.T) {
	f := newUpdateFixture(t)
	// The old bundle in format 1 (a format-2 one damaged fails its
	// chunk's decompression first; TestBundleCommands has that): its
	// data part is the bundle's last, 200 blocks uncompressed.
	plain := filepath.Join(f.dir, "v1-plain.bundle")
	old := bundletest.PlainBundle(t, f.v1, f.key)
	mustWrite(t, plain, old, 0o644)
	bad := filepath.Join(f.dir, "v1-damaged.bundle")
	// Data block 42 of v1.
	b := append([]byte(nil), old...)
	b[len(b)-(200-42)*bundle.Align+100] ^= 0x40
	mustWrite(t, bad, b, 0o644)
	out := filepath.Join(f.dir, "delta.bundle")
	r := keel(t, "bundle", "delta", "--from", bad, f.b2, "-o", out, "--key", f.keyFile)
	r.fails(t, ExitStorage, "data block 42 does not match its dm-verity leaf (in the old root)")
	if !strings.Contains(r.stderr, "v1-damaged.bundle") {
		t.Errorf("the error does not name the old bundle: %s", r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a delta was written from a damaged old bundle: %v", err)
	}
	// The old tree itself damaged: its root hash is in the signed manifest.
	b = append([]byte(nil), old...)
	ob := openBundleFile(t, plain, f)
	tp, _ := ob.Header.Part(bundle.PartTree)
	b[tp.Offset+5] ^= 1
	mustWrite(t, bad, b, 0o644)
	keel(t, "bundle", "delta", "--from", bad, f.b2, "-o", out, "--key", f.keyFile).fails(t, ExitStorage, "v1-damaged.bundle")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a delta was written from an old bundle with a damaged tree: %v", err)
	}
	keel(t, "bundle", "delta", "--from", plain, f.b2, "-o", out, "--key", f.keyFile).ok(t)
	keel(t, "bundle", "delta", "--from", f.b1, f.b2, "-o", out, "--key", f.keyFile).ok(t)
}

func openBundleFile(t *testing.T, path string, f *updateFixture) *bundle.Bundle {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	b, err := bundle.Open(context.Background(), source.NewReaderAt(fh, st.Size(), path), []manifest.PublicKey{f.key.Public()}, manifest.AnyBoard)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
