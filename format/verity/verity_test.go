package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func veritysetup(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Fatal("veritysetup not installed (scripts/install-deps.sh installs cryptsetup-bin)")
	}
	return p
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildFile builds into the file at path (created if missing).
func buildFile(t *testing.T, data []byte, path string, p Params) ([]byte, int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root, size, err := Build(bytes.NewReader(data), int64(len(data)), f, p)
	if err != nil {
		t.Fatal(err)
	}
	if want, err := p.TreeSize(); err != nil || want != size {
		t.Fatalf("TreeSize() = %d, %v; Build wrote %d", want, err, size)
	}
	return root, size
}

var rootHashRE = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

func formatRoot(t *testing.T, out string) string {
	t.Helper()
	m := rootHashRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no root hash in veritysetup output:\n%s", out)
	}
	return m[1]
}

const mib = 1 << 20

// The tree and the root hash are those of `veritysetup format` for the same
// data and salt: byte for byte, with and without superblock.
func TestSameAsVeritysetupFormat(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	data := randomBytes(t, 8*mib)
	salt := randomBytes(t, 32)
	dataPath := filepath.Join(dir, "data")
	writeFile(t, dataPath, data)

	// No superblock.
	p := Params{HashAlgorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, Salt: salt, DataBlocks: 2048}
	root, _ := buildFile(t, data, filepath.Join(dir, "ours"), p)
	writeFile(t, filepath.Join(dir, "theirs"), nil)
	out := mustRun(t, vs, "format", "--no-superblock", "--salt="+hex.EncodeToString(salt), dataPath, filepath.Join(dir, "theirs"))
	if got, want := hex.EncodeToString(root), formatRoot(t, out); got != want {
		t.Fatalf("root hash %s, veritysetup format says %s", got, want)
	}
	sameFiles(t, filepath.Join(dir, "ours"), filepath.Join(dir, "theirs"))

	// Superblock (veritysetup's default), same UUID.
	p.Superblock = true
	p.UUID = [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 1, 2, 3, 4, 5, 6, 7}
	root2, size := buildFile(t, data, filepath.Join(dir, "ours-sb"), p)
	if !bytes.Equal(root, root2) {
		t.Fatal("the superblock changed the root hash")
	}
	if size != 4096+17*4096 {
		t.Fatalf("tree size with superblock %d, want %d", size, 18*4096)
	}
	writeFile(t, filepath.Join(dir, "theirs-sb"), nil)
	out = mustRun(t, vs, "format", "--salt="+hex.EncodeToString(salt), "--uuid=12345678-9abc-4def-8001-020304050607",
		dataPath, filepath.Join(dir, "theirs-sb"))
	if got, want := hex.EncodeToString(root2), formatRoot(t, out); got != want {
		t.Fatalf("root hash %s, veritysetup format says %s", got, want)
	}
	sameFiles(t, filepath.Join(dir, "ours-sb"), filepath.Join(dir, "theirs-sb"))
	dump := mustRun(t, vs, "dump", filepath.Join(dir, "ours-sb"))
	for _, want := range []string{"Data blocks:     \t2048", "Hash algorithm:  \tsha256", "12345678-9abc-4def-8001-020304050607", hex.EncodeToString(salt)} {
		if !strings.Contains(dump, want) {
			t.Errorf("veritysetup dump lacks %q:\n%s", want, dump)
		}
	}
}

func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("%s is %d bytes, %s %d", a, len(x), b, len(y))
	}
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("%s and %s differ first at byte %d (of %d)", a, b, i, len(x))
		}
	}
}

// Tree shapes: 1 to 3+ levels, partial blocks at each level, other
// algorithms (sha1's 20-byte digest is padded to 32), small blocks so that
// deep trees stay small.
func TestShapesAgainstVeritysetup(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	data := randomBytes(t, 600*512)
	dataPath := filepath.Join(dir, "data")
	writeFile(t, dataPath, data)
	algs := []string{"sha256", "sha512", "sha1"}
	if testing.Short() {
		algs = algs[:1]
	}
	for _, alg := range algs {
		for _, n := range []uint64{1, 2, 15, 16, 17, 255, 256, 257, 300, 600} {
			for _, salt := range [][]byte{nil, randomBytes(t, 7), randomBytes(t, 32)} {
				name := fmt.Sprintf("%s-%d-%d", alg, n, len(salt))
				p := Params{HashAlgorithm: alg, DataBlockSize: 512, HashBlockSize: 512, Salt: salt, DataBlocks: n}
				ours := filepath.Join(dir, name+".ours")
				root, _ := buildFile(t, data, ours, p)
				theirs := filepath.Join(dir, name+".theirs")
				writeFile(t, theirs, nil)
				saltArg := "-"
				if len(salt) > 0 {
					saltArg = hex.EncodeToString(salt)
				}
				args := []string{"--no-superblock", "--hash=" + alg, "--data-block-size=512", "--hash-block-size=512",
					fmt.Sprintf("--data-blocks=%d", n), "--salt=" + saltArg}
				out := mustRun(t, vs, append(append([]string{"format"}, args...), dataPath, theirs)...)
				if got, want := hex.EncodeToString(root), formatRoot(t, out); got != want {
					t.Fatalf("%s: root hash %s, veritysetup format says %s", name, got, want)
				}
				sameFiles(t, ours, theirs)
				mustRun(t, vs, append(append([]string{"verify"}, args...), dataPath, ours, hex.EncodeToString(root))...)
			}
		}
	}
}

// veritysetup verify accepts the tree at an offset of a separate hash file,
// without and with superblock; a flipped data byte makes it fail.
func TestVeritysetupVerify(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	data := randomBytes(t, 8*mib)
	salt := randomBytes(t, 32)
	dataPath := filepath.Join(dir, "data")
	writeFile(t, dataPath, data)
	const off = 3 * mib

	p := Params{HashAlgorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, Salt: salt, DataBlocks: 2048, HashOffset: off}
	hashPath := filepath.Join(dir, "hash")
	root, size := buildFile(t, data, hashPath, p)
	if size != 17*4096 { // 16 leaf blocks + 1 root block
		t.Fatalf("tree size %d, want %d", size, 17*4096)
	}
	rootHex := hex.EncodeToString(root)
	noSB := []string{"verify", dataPath, hashPath, rootHex, "--no-superblock",
		fmt.Sprintf("--hash-offset=%d", off), "--data-blocks=2048", "--salt=" + hex.EncodeToString(salt)}
	mustRun(t, vs, noSB...)

	p.Superblock = true
	sbPath := filepath.Join(dir, "hash-sb")
	rootSB, size := buildFile(t, data, sbPath, p)
	if !bytes.Equal(root, rootSB) || size != 18*4096 {
		t.Fatalf("with superblock: root %x size %d", rootSB, size)
	}
	withSB := []string{"verify", dataPath, sbPath, rootHex, fmt.Sprintf("--hash-offset=%d", off)}
	mustRun(t, vs, withSB...)

	// A wrong root hash is refused (the check is real).
	bad := []byte(rootHex)
	bad[0] ^= 1
	if out, err := run(t, vs, "verify", dataPath, sbPath, string(bad), fmt.Sprintf("--hash-offset=%d", off)); err == nil {
		t.Fatalf("veritysetup verify accepted a wrong root hash:\n%s", out)
	}

	// One flipped data byte: both trees are refused.
	data[5*4096+123] ^= 0x40
	writeFile(t, dataPath, data)
	if out, err := run(t, vs, noSB...); err == nil {
		t.Fatalf("veritysetup verify accepted corrupted data (no superblock):\n%s", out)
	}
	if out, err := run(t, vs, withSB...); err == nil {
		t.Fatalf("veritysetup verify accepted corrupted data (superblock):\n%s", out)
	}
}

// keel's root partition: the file system image, then the tree at the next
// 4 KiB boundary of the same file.
func TestSameFile(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	data := randomBytes(t, 8*mib)
	salt := randomBytes(t, 32)
	img := filepath.Join(dir, "img")
	writeFile(t, img, data)
	const blocks = 8 * mib / 4096
	for _, sb := range []bool{false, true} {
		p := Params{Salt: salt, DataBlocks: blocks, HashOffset: 8 * mib, Superblock: sb}
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		root, size, err := Build(f, 8*mib, f, p)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(img); err != nil || fi.Size() != 8*mib+size {
			t.Fatalf("image is %v bytes, want %d", fi.Size(), 8*mib+size)
		}
		args := []string{"verify", img, img, hex.EncodeToString(root), fmt.Sprintf("--hash-offset=%d", 8*mib)}
		if !sb {
			args = append(args, "--no-superblock", fmt.Sprintf("--data-blocks=%d", blocks), "--salt="+hex.EncodeToString(salt))
		}
		mustRun(t, vs, args...)
		if err := os.Truncate(img, 8*mib); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTable(t *testing.T) {
	p := Params{HashAlgorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096,
		Salt: []byte{0xaa, 0xbb}, DataBlocks: 2048, HashOffset: 8 * mib}
	root := bytes.Repeat([]byte{0x11}, 32)
	r := strings.Repeat("11", 32)
	if got, want := Table("/dev/vda3", "/dev/vda3", p, root), "0 16384 verity 1 /dev/vda3 /dev/vda3 4096 4096 2048 2048 sha256 "+r+" aabb"; got != want {
		t.Errorf("Table\n got %s\nwant %s", got, want)
	}
	p.Superblock = true // the tree is one block further
	p.Salt = nil
	if got, want := Table("8:3", "8:4", p, root, RestartOnCorruption), "0 16384 verity 1 8:3 8:4 4096 4096 2048 2049 sha256 "+r+" - 1 restart_on_corruption"; got != want {
		t.Errorf("Table\n got %s\nwant %s", got, want)
	}
	sectors, params := TargetParams("a", "b", Params{DataBlocks: 10}, root, PanicOnCorruption, IgnoreZeroBlocks)
	if sectors != 80 || params != "1 a b 4096 4096 10 0 sha256 "+r+" - 2 panic_on_corruption ignore_zero_blocks" {
		t.Errorf("TargetParams = %d, %q", sectors, params)
	}
}

func TestErrors(t *testing.T) {
	data := make([]byte, 3*4096)
	var sink discard
	for name, p := range map[string]Params{
		"algorithm":   {HashAlgorithm: "md5"},
		"block size":  {DataBlockSize: 1000},
		"salt":        {Salt: make([]byte, 257)},
		"offset":      {HashOffset: 512},
		"sb offset":   {HashOffset: 100, Superblock: true},
		"data blocks": {DataBlocks: 4},
	} {
		if _, _, err := Build(bytes.NewReader(data), int64(len(data)), sink, p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, _, err := Build(bytes.NewReader(data), 4097, sink, Params{}); err == nil {
		t.Error("partial block: no error")
	}
	// A short reader is an error, not zeros.
	if _, _, err := Build(bytes.NewReader(data[:4096]), int64(len(data)), sink, Params{}); err == nil {
		t.Error("short data: no error")
	}
}

type discard struct{}

func (discard) WriteAt(b []byte, _ int64) (int, error) { return len(b), nil }

func BenchmarkBuild(b *testing.B) {
	data := randomBytes(b, 64*mib)
	salt := randomBytes(b, 32)
	r := bytes.NewReader(data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		if _, _, err := Build(r, int64(len(data)), discard{}, Params{Salt: salt}); err != nil {
			b.Fatal(err)
		}
	}
}
