package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/update/channel"
)

// TestAddChannel: the channel's URL and root.json land in the root tree,
// replacing a file there that is a hard link to the caller's tree (which
// stays as it was).
func TestAddChannel(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := (&channel.Repo{Dir: repo, Keys: channel.Keys{Dir: filepath.Join(dir, "keys")}}).Init(nil); err != nil {
		t.Fatal(err)
	}
	src, tree := filepath.Join(dir, "src"), filepath.Join(dir, "tree")
	urlFile := filepath.Join(src, filepath.FromSlash(layout.ChannelURLPath))
	os.MkdirAll(filepath.Dir(urlFile), 0o755)
	os.WriteFile(urlFile, []byte("https://old.example\n"), 0o644)
	if err := copyRootTree(t.Context(), src, tree); err != nil {
		t.Fatal(err)
	}
	c := &Channel{URL: "https://updates.example/stable", Root: filepath.Join(repo, "root.json")}
	if err := addChannel(tree, c); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, filepath.FromSlash(layout.ChannelURLPath))); string(b) != c.URL+"\n" {
		t.Errorf("url: %q", b)
	}
	want, _ := os.ReadFile(c.Root)
	if b, _ := os.ReadFile(filepath.Join(tree, filepath.FromSlash(layout.ChannelRootPath))); string(b) != string(want) {
		t.Errorf("root.json: %q", b)
	}
	if b, _ := os.ReadFile(urlFile); string(b) != "https://old.example\n" {
		t.Errorf("the source tree changed: %q", b)
	}
	if err := channel.CheckRoot(want); err != nil {
		t.Error(err)
	}
}

// TestValidateChannel: a channel needs a URL on one line and a root.json
// signed by its root keys, and no slot with a prebuilt root.
func TestValidateChannel(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "root.erofs")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	bad := filepath.Join(dir, "root.json")
	os.WriteFile(bad, []byte(`{"signed":{"_type":"root"}}`), 0o644)
	b, err := boards.Get("qemu-x86_64-uefi")
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{Board: b, Out: filepath.Join(dir, "disk.img"), Slots: map[string]Slot{"a": {RootImage: img}},
		Channel: &Channel{URL: "a\nb", Root: bad}}
	err = s.Validate()
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("%v", err)
	}
	for _, want := range []string{"slots.a.root_image and channel", "channel.url", "channel.root: " + bad} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in %v", want, err)
		}
	}
}
