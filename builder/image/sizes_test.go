package image

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/update/source"
)

// TestSpecSizes: partition_mb sizes the board's partitions and disk_mb the
// disk. Without disk_mb the disk grows by what the partitions grew, so
// data keeps the board's size; with it, data takes what is left. The
// board itself is not changed.
func TestSpecSizes(t *testing.T) {
	fx := newFixture(t)
	board := fx.spec.Board
	boardSize := map[string]int{}
	for _, p := range board.Layout {
		boardSize[p.Name] = p.SizeMB
	}
	fx.spec.PartitionMB = map[string]int{"root-a": 40, "root-b": 40, "recovery": 100, "slot-b": 20}
	grow := 2*(40-boardSize["root-a"]) + 100 - boardSize["recovery"] + 20 - boardSize["slot-b"]
	disk, tab := fx.build(t)
	st, err := disk.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(board.DiskMB+grow) << 20; st.Size() != want {
		t.Errorf("disk is %d bytes, want the board's %d MiB grown by %d MiB", st.Size(), board.DiskMB, grow)
	}
	for _, p := range tab.Partitions {
		want, ok := fx.spec.PartitionMB[p.Name]
		if !ok {
			want = boardSize[p.Name]
		}
		if p.Name == "data" {
			// The rest of the disk: as large as on the board's own disk
			// (the backup GPT at the end takes its 33 sectors there too).
			if d := p.Size() >> 20; d != int64(board.DiskMB-2-sumMB(boardSize)) && d != int64(board.DiskMB-1-sumMB(boardSize)) {
				t.Errorf("data is %d MiB, want the board's own (%d MiB disk, %d MiB of partitions)", d, board.DiskMB, sumMB(boardSize))
			}
			continue
		}
		if p.Size() != int64(want)<<20 {
			t.Errorf("partition %s is %d bytes, want %d MiB", p.Name, p.Size(), want)
		}
	}
	for _, p := range fx.spec.Board.Layout {
		if p.SizeMB != boardSize[p.Name] {
			t.Errorf("Build changed the Spec's board: %s is %d MiB", p.Name, p.SizeMB)
		}
	}

	fx.spec.DiskMB = 512
	fx.spec.Out = filepath.Join(fx.dir, "out", "disk-512.img")
	disk, tab = fx.build(t)
	if st, _ := disk.Stat(); st.Size() != 512<<20 {
		t.Errorf("disk is %d bytes, want disk_mb 512 MiB", st.Size())
	}
	data := find(t, tab, "data")
	if end := data.Offset() + data.Size(); end < 511<<20 || end > 512<<20 {
		t.Errorf("data ends at %d, want it to take the rest of the 512 MiB disk", end)
	}
}

func sumMB(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestSpecSizeErrors: every sizing problem at once, each naming its field:
// an unknown partition (the error lists the ones that can be sized), the
// partition that takes the rest of the disk, a size that is not positive,
// a disk too small for the partitions. ReadSpec reads both fields.
func TestSpecSizeErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spec.json")
	writeFile(t, path, []byte(`{"slots": {}, "disk_mb": 300, "partition_mb": {"root-c": 10, "data": 100, "esp": 0, "root-a": 200}}`))
	s, err := ReadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.DiskMB != 300 || len(s.PartitionMB) != 4 || s.PartitionMB["root-a"] != 200 {
		t.Fatalf("ReadSpec: disk_mb %d, partition_mb %v", s.DiskMB, s.PartitionMB)
	}
	fx := newFixture(t)
	fx.spec.DiskMB, fx.spec.PartitionMB = s.DiskMB, s.PartitionMB
	err = fx.spec.Validate()
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("Validate = %v, want a SpecError", err)
	}
	for _, want := range []string{
		`partition_mb.root-c: board qemu-x86_64-uefi has no partition "root-c": partition_mb sizes esp, slot-a, root-a, slot-b, root-b, recovery`,
		"partition_mb.data: partition data takes the rest of the disk: size it with disk_mb",
		"partition_mb.esp: 0 MiB: want the partition's size in MiB (board qemu-x86_64-uefi has 64)",
		// 64+48+200+48+24+80 + 2 for the GPT
		"disk_mb: 300 MiB is too small: the partitions take 466 MiB with the GPT's 2 MiB, and data (the rest of the disk) at least 1 MiB: set disk_mb to 467 or more",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "layout needs") {
		t.Errorf("Validate reports the disk twice (the board's check too):\n%v", err)
	}
	if err := Build(context.Background(), fx.spec); !errors.As(err, &se) {
		t.Errorf("Build = %v, want the SpecError", err)
	}
	if _, err := os.Stat(fx.spec.Out); err == nil {
		t.Error("a refused spec wrote an image")
	}

	fx.spec.PartitionMB, fx.spec.DiskMB = nil, -1
	if err := fx.spec.Validate(); err == nil || !strings.Contains(err.Error(), "disk_mb: -1 MiB: want the disk's size in MiB (board qemu-x86_64-uefi has 320)") {
		t.Errorf("Validate with disk_mb -1 = %v", err)
	}
	fx.spec.DiskMB = 0
	if err := fx.spec.Validate(); err != nil {
		t.Errorf("Validate without sizes = %v", err)
	}
}

// reHint is sizeHint's advice: the partition_mb entries and their size.
var reHint = regexp.MustCompile(`set "partition_mb": \{((?:"[^"]+": \d+(?:, )?)+)\} in the spec`)

// hintSizes returns the partition_mb entries an error advises; it fails
// the test if there are none.
func hintSizes(t *testing.T, err error) map[string]int {
	t.Helper()
	m := reHint.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("the error names no partition_mb entry to set: %v", err)
	}
	sizes := map[string]int{}
	for _, kv := range strings.Split(m[1], ", ") {
		k, v, _ := strings.Cut(kv, ": ")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		sizes[strings.Trim(k, `"`)] = n
	}
	return sizes
}

// TestSpecTooLargeHints: a root (with its verity tree), a slot's kernel
// and the recovery seed that do not fit their partitions: the error says
// how large each is, how large the partition is, and which partition_mb
// entries to set (a slot's partition for every slot); with those sizes the
// build succeeds.
func TestSpecTooLargeHints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, fx *fixture)
		want  []string // in the error
		hint  []string // the partitions the error names in partition_mb
	}{{
		name: "root",
		setup: func(t *testing.T, fx *fixture) {
			// 3 MiB of random data: erofs does not compress it.
			randomFile(t, filepath.Join(fx.spec.Slots["a"].RootDir, "big"), 3<<20)
			fx.spec.PartitionMB = map[string]int{"root-a": 2, "root-b": 2}
		},
		want: []string{"image: slot a: the root file system (3.", "and its verity tree", "partition root-a has 2 MiB (2097152 bytes)", "or make the root smaller"},
		hint: []string{"root-a", "root-b"},
	}, {
		name: "kernel",
		setup: func(t *testing.T, fx *fixture) {
			randomFile(t, fx.spec.Slots["b"].Kernel, 3<<20)
			fx.spec.PartitionMB = map[string]int{"slot-b": 2}
		},
		want: []string{"partition slot-b: the slot container (kernel ", " 3 MiB (3145728 bytes), initrd", "but the partition is 2 MiB (2097152 bytes)"},
		hint: []string{"slot-a", "slot-b"},
	}, {
		name: "seed",
		setup: func(t *testing.T, fx *fixture) {
			ra := fx.spec.Slots["a"]
			randomFile(t, filepath.Join(fx.dir, "big-kernel"), 3<<20)
			ra.Kernel = filepath.Join(fx.dir, "big-kernel")
			fx.spec.Recovery = &ra
			fx.spec.PartitionMB = map[string]int{"recovery": 3}
		},
		want: []string{"partition recovery: the recovery seed (kernel", "but the partition is 3 MiB (3145728 bytes)"},
		hint: []string{"recovery"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			tc.setup(t, fx)
			err := Build(context.Background(), fx.spec)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Build = %v, want ErrTooLarge", err)
			}
			t.Log(err)
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q: %v", want, err)
				}
			}
			sizes := hintSizes(t, err)
			if len(sizes) != len(tc.hint) {
				t.Errorf("the error advises %v, want sizes for %v", sizes, tc.hint)
			}
			for _, p := range tc.hint {
				if sizes[p] <= fx.spec.PartitionMB[p] {
					t.Errorf("the error advises %s: %d MiB, not more than its %d MiB: %v", p, sizes[p], fx.spec.PartitionMB[p], err)
				}
				fx.spec.PartitionMB[p] = sizes[p]
			}
			// The advice is enough.
			fx.build(t)
		})
	}
}

// TestSpecSizesBundle: keel bundle build sizes a slot's root for the
// spec's root-<slot>, as the image does: with an ext4 root (as large as
// its partition) the bundle of the spec is the bundle of the built image's
// slot, and its root has the spec's size, not the board's.
func TestSpecSizesBundle(t *testing.T) {
	fx := newFixture(t)
	sa := fx.spec.Slots["a"]
	sa.RootFSType = FSExt4
	fx.spec.Slots["a"] = sa
	fx.spec.PartitionMB = map[string]int{"root-a": 40, "root-b": 40}
	// mkfs.ext4 -d copies access times, which reading the tree (the
	// image's build) may change: access times after the modification
	// times (and less than a day old) stay as they are (relatime).
	now := time.Now()
	err := filepath.WalkDir(sa.RootDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, now, now.Add(-time.Hour))
	})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := fx.build(t)
	var fromSpec, fromImage bytes.Buffer
	if _, err := BuildBundle(context.Background(), fx.spec, "a", &fromSpec); err != nil {
		t.Fatal(err)
	}
	keys, err := (&builder{s: &fx.spec}).signers("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BundleFromImage(f.Name(), "a", keys, &fromImage); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromSpec.Bytes(), fromImage.Bytes()) {
		t.Error("the spec's bundle of slot a differs from the bundle of the built image's slot a")
	}
	b := fromSpec.Bytes()
	bb, err := bundle.Open(context.Background(), source.NewReaderAt(bytes.NewReader(b), int64(len(b)), "bundle"), fx.trusted, fx.spec.Board.Name)
	if err != nil {
		t.Fatal(err)
	}
	if n := int64(bb.Manifest.Root.Verity.DataBlocks) * 4096; n <= 24<<20 || n > 40<<20 {
		t.Errorf("the bundle's root is %d bytes, want it sized for the spec's 40 MiB root-a", n)
	}

	fx.spec.PartitionMB = map[string]int{"root-z": 40}
	if _, err := BuildBundle(context.Background(), fx.spec, "a", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), `partition_mb.root-z: board qemu-x86_64-uefi has no partition "root-z"`) {
		t.Errorf("BuildBundle with an unknown partition = %v", err)
	}
}
