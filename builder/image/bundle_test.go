package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/source"
)

// TestBuildBundle: the bundle of a spec's slot is the slot Build writes
// (the same bytes as the bundle taken from the built image), the same
// inputs give the same bundle, and changing one file of the root changes
// few blocks.
func TestBuildBundle(t *testing.T) {
	fx := newFixture(t)
	f, _ := fx.build(t)
	var fromSpec, fromImage, again bytes.Buffer
	h, err := BuildBundle(context.Background(), fx.spec, "a", &fromSpec)
	if err != nil {
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
	if _, err := BuildBundle(context.Background(), fx.spec, "a", &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromSpec.Bytes(), again.Bytes()) {
		t.Error("two bundles of the same spec differ")
	}
	b := fromSpec.Bytes()
	bb, err := bundle.Verify(context.Background(), source.NewReaderAt(bytes.NewReader(b), int64(len(b)), "bundle"), fx.trusted, fx.spec.Board.Name)
	if err != nil {
		t.Fatal(err)
	}
	if bb.Header.Version != h.Version || h.Compatible != fx.spec.Board.Name {
		t.Errorf("header %+v", h)
	}

	// One changed file: the new root shares all but a few blocks.
	sl := fx.spec.Slots["a"]
	if err := os.WriteFile(filepath.Join(sl.RootDir, "etc/os-release"), []byte("ID=keel-test\nVERSION_ID=a2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sl.Version = "2.a"
	fx.spec.Slots["a"] = sl
	var next bytes.Buffer
	if _, err := BuildBundle(context.Background(), fx.spec, "a", &next); err != nil {
		t.Fatal(err)
	}
	nb := next.Bytes()
	src := source.NewReaderAt(bytes.NewReader(nb), int64(len(nb)), "next")
	n2, err := bundle.Open(context.Background(), src, fx.trusted, manifest.AnyBoard)
	if err != nil {
		t.Fatal(err)
	}
	tree, _, err := n2.ReadTree(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	oldTree, _, err := bb.ReadTree(context.Background(), source.NewReaderAt(bytes.NewReader(b), int64(len(b)), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	oldRoot, err := bb.RootReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.DeltaMap(tree, oldRoot, oldTree)
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Count(tree.Blocks()); n > 3 {
		t.Errorf("one changed file changes %d of %d root blocks", n, tree.Blocks())
	}
}
