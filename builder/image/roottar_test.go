package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	data     string // content, or the link target
	uid, gid int
	pax      map[string]string
	major    int64
}

func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000+int64(i)*60, 0), PAXRecords: e.pax, Devmajor: e.major, Devminor: 3,
			Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = e.data
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rootTarEntries is a small root as mmdebstrap writes one: "./" first,
// set-user-ID, a read-only directory with files in it, links, a device
// node, an extended attribute, a directory the archive does not list.
var rootTarEntries = []tarEntry{
	{name: "./", typ: tar.TypeDir, mode: 0o755},
	{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
	{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755},
	{name: "./usr/bin/su", typ: tar.TypeReg, mode: 0o4755, data: "su\n"},
	{name: "./usr/bin/ping", typ: tar.TypeReg, mode: 0o755, data: "ping\n", pax: map[string]string{"SCHILY.xattr.user.keel": "cap"}},
	{name: "./usr/bin/ping4", typ: tar.TypeLink, data: "./usr/bin/ping"},
	{name: "./bin", typ: tar.TypeSymlink, data: "usr/bin"},
	{name: "./sbin/init", typ: tar.TypeSymlink, data: "/lib/systemd/systemd"},
	{name: "./proc/", typ: tar.TypeDir, mode: 0o555},
	{name: "./proc/.keep", typ: tar.TypeReg, mode: 0o444, data: ""},
	{name: "./var/log/journal/", typ: tar.TypeDir, mode: 0o2755, gid: 101},
	{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1},
	{name: "./run/initctl", typ: tar.TypeFifo, mode: 0o600},
	{name: "./etc/shadow", typ: tar.TypeReg, mode: 0o640, gid: 42, data: "root:*:19000:0:99999:7:::\n"},
	{name: "./usr/", typ: tar.TypeDir, mode: 0o755}, // a directory may come twice
}

// listTree lists a tree: type, mode, owner, time, size or target, name,
// and extended attributes; hard links by a shared inode number.
func listTree(t testing.TB, dir string) string {
	t.Helper()
	var sb strings.Builder
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		what := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			what = "-> " + target
		case fi.Mode()&fs.ModeDevice != 0:
			what = fmt.Sprintf("dev %d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case fi.Mode().IsRegular():
			what = fmt.Sprintf("%d bytes", fi.Size())
			if first, ok := inodes[st.Ino]; ok {
				what += ", hard link to " + first
			} else {
				inodes[st.Ino] = rel
			}
		}
		var attrs []string
		if fi.Mode()&fs.ModeSymlink == 0 {
			buf := make([]byte, 256)
			if n, err := unix.Llistxattr(p, buf); err == nil {
				for _, a := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
					if strings.HasPrefix(a, "user.") {
						v := make([]byte, 64)
						m, _ := unix.Lgetxattr(p, a, v)
						attrs = append(attrs, a+"="+string(v[:m]))
					}
				}
			}
		}
		owner := ""
		if os.Geteuid() == 0 {
			owner = fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
		}
		fmt.Fprintf(&sb, "%-11v %#o%s %s %s %s", fi.Mode().Type(), st.Mode&0o7777, owner, fi.ModTime().UTC().Format(time.RFC3339), rel, what)
		if len(attrs) > 0 {
			fmt.Fprintf(&sb, " %s", strings.Join(attrs, " "))
		}
		sb.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestUnpackTar: a root archive unpacks to the tree its golden listing
// shows (modes, set-user-ID, owners when root, times, links, device nodes,
// extended attributes, unlisted directories at SOURCE_DATE_EPOCH), the
// same from gzip and zstd, and the tree can be removed again.
func TestUnpackTar(t *testing.T) {
	raw := makeTar(t, rootTarEntries)
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	enc, _ := zstd.NewWriter(&zs)
	enc.Write(raw)
	enc.Close()

	dir := t.TempDir()
	var listings []string
	for _, c := range []struct {
		name string
		data []byte
	}{{"root.tar", raw}, {"root.tar.gz", gz.Bytes()}, {"root.tar.zst", zs.Bytes()}} {
		archive := filepath.Join(dir, c.name)
		writeFile(t, archive, c.data)
		tree := filepath.Join(dir, c.name+".tree")
		err := UnpackTar(context.Background(), archive, tree)
		if os.Geteuid() != 0 {
			// Without root no device node: the error says what to do.
			if err == nil || !strings.Contains(err.Error(), "CAP_MKNOD") || !strings.Contains(err.Error(), "--skip=output/dev") {
				t.Fatalf("UnpackTar as non-root = %v, want the device node refused with the fix", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("UnpackTar %s: %v", c.name, err)
		}
		listings = append(listings, listTree(t, tree))
		if err := removeTree(tree); err != nil {
			t.Fatalf("removeTree: %v", err)
		}
		if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("removeTree left %s: %v", tree, err)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	for i, l := range listings[1:] {
		if l != listings[0] {
			t.Errorf("compressed archive %d unpacks differently:\n%s\nwant\n%s", i+1, l, listings[0])
		}
	}
	golden := filepath.Join("testdata", "roottar.txt")
	if *updateGolden {
		writeFile(t, golden, []byte(listings[0]))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestUnpackTar -update writes it)", err)
	}
	if listings[0] != string(want) {
		t.Errorf("tree:\n%s\nwant (%s):\n%s", listings[0], golden, want)
	}
}

// TestUnpackTarRefuses: entries that would leave the tree, or that the
// tree cannot hold, are refused with the reason, and so are xz archives.
func TestUnpackTarRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"absolute", []tarEntry{{name: "/etc/passwd", typ: tar.TypeReg, mode: 0o644}}, `entry "/etc/passwd" has an absolute name`},
		{"dotdot", []tarEntry{{name: "./etc/../../x", typ: tar.TypeReg, mode: 0o644}}, `has a ".." in its name`},
		{"through symlink", []tarEntry{{name: "etc", typ: tar.TypeSymlink, data: "/etc"}, {name: "etc/passwd", typ: tar.TypeReg, mode: 0o644}},
			`entry "etc/passwd" is below "etc", a symbolic link of the archive`},
		{"hard link out", []tarEntry{{name: "x", typ: tar.TypeLink, data: "../../etc/shadow"}}, `hard link "x": entry "../../etc/shadow" has a ".."`},
		{"hard link absolute", []tarEntry{{name: "x", typ: tar.TypeLink, data: "/etc/shadow"}}, `hard link "x": entry "/etc/shadow" has an absolute name`},
		{"hard link to nothing", []tarEntry{{name: "x", typ: tar.TypeLink, data: "y"}}, `hard link "x" to "y": want a regular file unpacked before it`},
		{"hard link to symlink", []tarEntry{{name: "y", typ: tar.TypeSymlink, data: "/etc/shadow"}, {name: "x", typ: tar.TypeLink, data: "y"}}, `hard link "x" to "y": want a regular file`},
		{"twice", []tarEntry{{name: "a", typ: tar.TypeReg, mode: 0o644}, {name: "./a", typ: tar.TypeReg, mode: 0o644}}, `entry "./a" is in the archive twice`},
		{"below a file", []tarEntry{{name: "a", typ: tar.TypeReg, mode: 0o644}, {name: "a/b", typ: tar.TypeReg, mode: 0o644}}, `entry "a/b" is below "a", which is not a directory`},
		{"bsdtar xattrs", []tarEntry{{name: "a", typ: tar.TypeReg, mode: 0o644, pax: map[string]string{"LIBARCHIVE.xattr.user.x": "eA=="}}}, "GNU tar --xattrs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			archive := filepath.Join(dir, "root.tar")
			writeFile(t, archive, makeTar(t, tc.entries))
			err := UnpackTar(context.Background(), archive, filepath.Join(dir, "tree"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("UnpackTar = %v, want %q", err, tc.want)
			}
			if _, err := os.Lstat("/x"); err == nil && tc.name == "dotdot" {
				t.Error("wrote outside the tree")
			}
		})
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "root.tar.xz")
	writeFile(t, archive, []byte("\xfd7zXZ\x00rest"))
	if err := UnpackTar(context.Background(), archive, filepath.Join(dir, "tree")); err == nil || !strings.Contains(err.Error(), "xz or bzip2 compressed") {
		t.Errorf("UnpackTar of xz = %v", err)
	}
}
