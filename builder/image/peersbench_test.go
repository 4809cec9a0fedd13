//go:build linux

package image

// BenchmarkUpdatePeers (make bench-update): keel beside RAUC, Mender,
// casync, zstd --patch-from and xdelta3 on the update workloads W1-W5
// that scripts/update-workloads.sh makes from Debian's packages (see it
// for what each one is). The peers get the same parts as keel's bundle:
// the same root image (the erofs file system keel's bundle carries), the
// same kernel and initrd. Bytes over HTTP are counted from the access log
// of an nginx on 127.0.0.1. It prints a table and writes
// build/bench-update.json ($KEEL_BENCH_JSON).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/update/source"
	"github.com/keelboot/keel/update/source/sourcetest"
)

// workloadsDir is where scripts/update-workloads.sh cached the roots
// (names: the ones needed).
func workloadsDir(tb testing.TB, names []string) string {
	tb.Helper()
	dir := os.Getenv("KEEL_WORKLOADS")
	if dir == "" {
		dir = "../../build/workloads"
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n+".tar")); err != nil {
			tb.Fatalf("no workload root %s.tar in %s (%v): run scripts/update-workloads.sh %s (make bench-update does)", n, dir, err, dir)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return abs
}

// peerRow is one workload's bytes; nil: the tool cannot do it.
type peerRow struct {
	KeelFull           *int64 `json:"keel_full"`
	KeelAdaptive       *int64 `json:"keel_adaptive"`
	KeelStatic         *int64 `json:"keel_static"`
	RaucBundle         *int64 `json:"rauc_bundle"`
	RaucAdaptive       *int64 `json:"rauc_adaptive"`
	MenderArtifact     *int64 `json:"mender_artifact"`
	MenderArtifactLzma *int64 `json:"mender_artifact_lzma"`
	Casync             *int64 `json:"casync"`
	ZstdPatchFrom      *int64 `json:"zstd_patch_from"`
	Xdelta3            *int64 `json:"xdelta3"`
}

func ptr(n int64) *int64 { return &n }

// peerEnv holds the tools and the versions built so far.
type peerEnv struct {
	*benchEnv
	tools   map[string]string
	wl      string
	srv     string // nginx's directory
	base    string
	log     string
	bundles map[string]string // version -> keel bundle
	payload map[string]string // version -> root image + kernel + initrd
	rootImg map[string]string // version -> root image (file system only)
}

// unpack unpacks the workload root name into a new directory with the
// 1 MiB application file of seed app, and returns it.
func (p *peerEnv) unpack(tb testing.TB, name string, app uint64) string {
	tb.Helper()
	dir := filepath.Join(p.dir, fmt.Sprintf("%s-%d", name, app))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(p.tools["tar"], "-C", dir, "--numeric-owner", "-xpf", filepath.Join(p.wl, name+".tar"), "--exclude=./dev/*").CombinedOutput(); err != nil {
		tb.Fatalf("tar: %v\n%s", err, out)
	}
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(app, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	writeFile(tb, filepath.Join(dir, "opt/app/app.bin"), b)
	return dir
}

// version builds keel's bundle of version v (root directory, kernel,
// initrd) once, and the peers' payloads of it.
func (p *peerEnv) version(tb testing.TB, v, root, kernel, initrd string) {
	tb.Helper()
	if p.bundles[v] != "" {
		return
	}
	out := filepath.Join(p.srv, "keel-"+v+".bundle")
	p.build(tb, v, kernel, initrd, root, out)
	p.bundles[v] = out
	img := filepath.Join(p.dir, "root-"+v+".img")
	p.rootImage(tb, out, img)
	bb, _ := p.openBundle(tb, out)
	// The file system alone (peers make their own verity or none).
	if err := os.Truncate(img, int64(bb.Params.HashOffset)); err != nil {
		tb.Fatal(err)
	}
	p.rootImg[v] = img
	pay := filepath.Join(p.dir, "payload-"+v+".img")
	f, err := os.Create(pay)
	if err != nil {
		tb.Fatal(err)
	}
	for _, part := range []string{img, kernel, initrd} {
		in, err := os.Open(part)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.Copy(f, in); err != nil {
			tb.Fatal(err)
		}
		in.Close()
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	p.payload[v] = pay
}

func (p *peerEnv) run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(p.tools[name], args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func size(tb testing.TB, path string) int64 {
	tb.Helper()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

// served runs fn and returns the body bytes nginx logged meanwhile.
func (p *peerEnv) served(tb testing.TB, fn func()) int64 {
	tb.Helper()
	before := size(tb, p.log)
	fn()
	f, err := os.Open(p.log)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(before, io.SeekStart); err != nil {
		tb.Fatal(err)
	}
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... "GET /x HTTP/1.1" 206 12345 "-" "ua"
		l := sc.Text()
		i := strings.Index(l, `" `)
		if i < 0 {
			continue
		}
		f := strings.Fields(l[i+2:])
		if len(f) < 2 {
			continue
		}
		if b, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			n += b
		}
	}
	return n
}

// BenchmarkUpdatePeers: see the file's comment. Not timed.
func BenchmarkUpdatePeers(b *testing.B) {
	e := newBenchEnv(b)
	p := &peerEnv{benchEnv: e, tools: map[string]string{}, bundles: map[string]string{},
		payload: map[string]string{}, rootImg: map[string]string{}}
	for _, t := range []string{"tar", "rauc", "mender-artifact", "casync", "zstd", "xdelta3", "openssl", "mksquashfs"} {
		p.tools[t] = tool(b, t)
	}
	p.srv = filepath.Join(e.dir, "srv")
	if err := os.MkdirAll(p.srv, 0o755); err != nil {
		b.Fatal(err)
	}
	p.base, p.log = sourcetest.NginxLogged(b, p.srv)
	key, cert := filepath.Join(e.dir, "rauc.key.pem"), filepath.Join(e.dir, "rauc.cert.pem")
	p.run(b, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=keel-bench", "-days", "2")

	kernel1, kernel2 := filepath.Join(e.dir, "vmlinuz-1"), filepath.Join(e.dir, "vmlinuz-2")
	initrd1, initrd2 := filepath.Join(e.dir, "initrd-1"), filepath.Join(e.dir, "initrd-2")
	randomFile(b, kernel1, benchKernelSize)
	randomFile(b, kernel2, benchKernelSize)
	randomFile(b, initrd1, benchInitrdSize)
	randomFile(b, initrd2, benchInitrdSize)
	type ver struct {
		name, root string
		app        uint64
		kernel     string
		initrd     string
	}
	bookworm := ver{"bookworm", "bookworm", 1, kernel1, initrd1}
	workloads := []struct {
		name     string
		what     string
		old, new ver
	}{
		{"W1", "one 1 MiB application file changed", bookworm, ver{"bookworm-app2", "bookworm", 2, kernel1, initrd1}},
		{"W2", "kernel and initrd changed, same root", bookworm, ver{"bookworm-kernel2", "bookworm", 1, kernel2, initrd2}},
		{"W3", "bookworm -> bookworm + updates + security", bookworm, ver{"security", "security", 1, kernel1, initrd1}},
		{"W4", "security -> the same plus new packages", ver{"security", "security", 1, kernel1, initrd1}, ver{"feature", "feature", 1, kernel1, initrd1}},
		{"W5", "bullseye -> bookworm (a new root)", ver{"bullseye", "bullseye", 1, kernel1, initrd1}, bookworm},
	}
	// KEEL_WORKLOADS_ONLY=W1,W2 runs only those (while developing: the
	// JSON then lacks the others).
	if only := os.Getenv("KEEL_WORKLOADS_ONLY"); only != "" {
		keep := workloads[:0]
		for _, w := range workloads {
			if strings.Contains(","+only+",", ","+w.name+",") {
				keep = append(keep, w)
			}
		}
		workloads = keep
	}
	need := map[string]bool{}
	var roots []string
	for _, w := range workloads {
		for _, r := range []string{w.old.root, w.new.root} {
			if !need[r] {
				need[r] = true
				roots = append(roots, r)
			}
		}
	}
	p.wl = workloadsDir(b, roots)
	rows := map[string]*peerRow{}
	var names []string
	for i := 0; i < b.N; i++ {
		for _, w := range workloads {
			for _, v := range []ver{w.old, w.new} {
				if p.bundles[v.name] == "" {
					dir := p.unpack(b, v.root, v.app)
					p.version(b, v.name, dir, v.kernel, v.initrd)
					os.RemoveAll(dir)
				}
			}
			r := &peerRow{}
			rows[w.name] = r
			names = append(names, w.name)
			newB := p.bundles[w.new.name]
			r.KeelFull = ptr(size(b, newB))
			// Adaptive delta over HTTP: the old version installed and
			// active, the new bundle from nginx.
			active := p.installActive(b, p.bundles[w.old.name], e.dir)
			r.KeelAdaptive = ptr(p.served(b, func() {
				p.install(b, func() (source.Source, error) {
					return source.Open(e.ctx, p.base+"/"+filepath.Base(newB), nil, source.HTTPOptions{})
				}, e.dir, active, false)
			}))
			// The static delta bundle.
			r.KeelStatic = ptr(p.staticDelta(b, p.bundles[w.old.name], newB))
			r.RaucBundle = ptr(p.rauc(b, w.new.name, w.new.kernel, w.new.initrd, key, cert))
			// RAUC's adaptive install needs a running rauc service on a
			// configured system (system.conf, slots on block devices,
			// D-Bus): not measured here.
			r.RaucAdaptive = nil
			r.MenderArtifact = ptr(p.mender(b, w.new.name, ""))
			r.MenderArtifactLzma = ptr(p.mender(b, w.new.name, "lzma"))
			r.Casync = ptr(p.casync(b, w.name, p.payload[w.old.name], p.payload[w.new.name]))
			patch := filepath.Join(e.dir, w.name+".zst")
			p.run(b, "zstd", "-q", "-f", "--long=31", "--patch-from="+p.payload[w.old.name], p.payload[w.new.name], "-o", patch)
			r.ZstdPatchFrom = ptr(size(b, patch))
			xd := filepath.Join(e.dir, w.name+".xd3")
			p.run(b, "xdelta3", "-e", "-f", "-B", strconv.FormatInt(1<<30, 10), "-s", p.payload[w.old.name], p.payload[w.new.name], xd)
			r.Xdelta3 = ptr(size(b, xd))
			os.Remove(patch)
			os.Remove(xd)
			// As it goes (a run takes long): the row on stderr.
			fmt.Fprintf(os.Stderr, "BenchmarkUpdatePeers: %s (%s): %s\n", w.name, w.what, rowText(r))
		}
	}
	ratio := p.installRatio(b, p.bundles["bookworm"])
	out := map[string]any{"install_ratio_compressed": ratio}
	t := [][]string{{"", "keel full", "keel adaptive", "keel static", "rauc bundle", "rauc adaptive", "mender", "mender lzma", "casync", "zstd --patch-from", "xdelta3"}}
	for _, n := range names[:len(workloads)] {
		r := rows[n]
		out[n] = r
		row := []string{n}
		for _, v := range []*int64{r.KeelFull, r.KeelAdaptive, r.KeelStatic, r.RaucBundle, r.RaucAdaptive, r.MenderArtifact, r.MenderArtifactLzma, r.Casync, r.ZstdPatchFrom, r.Xdelta3} {
			if v == nil {
				row = append(row, "-")
			} else {
				row = append(row, fmt.Sprintf("%.2f", mb(*v)))
			}
		}
		t = append(t, row)
	}
	js, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	path := os.Getenv("KEEL_BENCH_JSON")
	if path == "" {
		path = "../../build/bench-update.json"
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ratio, "install_ratio_compressed")
	summary(b, fmt.Sprintf("Bytes on the wire (MB; HTTP bodies from nginx's access log, else the artifact's size), wrote %s\n%sinstall_ratio_compressed = %.3f\n", path, table(t), ratio))
}

func rowText(r *peerRow) string {
	js, _ := json.Marshal(r)
	return string(js)
}

// staticDelta makes keel's static delta bundle from old to new (format 2)
// and returns its size.
func (p *peerEnv) staticDelta(tb testing.TB, oldPath, newPath string) int64 {
	tb.Helper()
	ob, osrc := p.openBundle(tb, oldPath)
	nb, nsrc := p.openBundle(tb, newPath)
	tree, _, err := nb.ReadTree(p.ctx, nsrc)
	if err != nil {
		tb.Fatal(err)
	}
	oldTree, _, err := ob.ReadTree(p.ctx, osrc)
	if err != nil {
		tb.Fatal(err)
	}
	of, err := os.Open(oldPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer of.Close()
	nf, err := os.Open(newPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer nf.Close()
	oldRoot, err := ob.RootReader(of)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := bundle.DeltaMap(tree, oldRoot, oldTree)
	if err != nil {
		tb.Fatal(err)
	}
	newRoot, err := nb.RootReader(nf)
	if err != nil {
		tb.Fatal(err)
	}
	kp, _ := nb.Header.Part(bundle.PartKernel)
	ip, _ := nb.Header.Part(bundle.PartInitrd)
	parts, err := bundle.ReadParts(p.ctx, nb.View(nsrc), kp, ip)
	if err != nil {
		tb.Fatal(err)
	}
	var w countWriter
	if m.Count(tree.Blocks()) == 0 {
		// Nothing in the root changed (W2): the delta carries one block
		// (keel refuses an empty one), as its header and parts need.
		m.Set(0)
	}
	_, err = bundle.Write(&w, bundle.Input{Manifest: nb.ManifestBytes, Sig: nb.Sig, Kernel: parts[0], Initrd: parts[1], Root: newRoot,
		Delta: &bundle.Delta{From: ob.Header.Version, FromRootHash: ob.Manifest.Root.Verity.RootHash}, Map: m}, p.key)
	if err != nil {
		tb.Fatal(err)
	}
	return int64(w)
}

type countWriter int64

func (c *countWriter) Write(b []byte) (int, error) { *c += countWriter(len(b)); return len(b), nil }

// rauc makes RAUC's verity bundle of version v (the root image, the kernel
// and the initrd as three images) and returns its size.
func (p *peerEnv) rauc(tb testing.TB, v, kernel, initrd, key, cert string) int64 {
	tb.Helper()
	dir := filepath.Join(p.dir, "rauc-"+v)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, src := range map[string]string{"root.img": p.rootImg[v], "kernel.img": kernel, "initrd.img": initrd} {
		if err := os.Link(src, filepath.Join(dir, name)); err != nil {
			tb.Fatal(err)
		}
	}
	manifest := fmt.Sprintf("[update]\ncompatible=keel-bench\nversion=%s\n\n[bundle]\nformat=verity\n\n"+
		"[image.rootfs]\nfilename=root.img\n\n[image.kernel]\nfilename=kernel.img\n\n[image.initrd]\nfilename=initrd.img\n", v)
	writeFile(tb, filepath.Join(dir, "manifest.raucm"), []byte(manifest))
	out := filepath.Join(p.dir, v+".raucb")
	os.Remove(out)
	p.run(tb, "rauc", "bundle", "--cert="+cert, "--key="+key, dir, out)
	n := size(tb, out)
	os.Remove(out)
	os.RemoveAll(dir)
	return n
}

// mender makes Mender's rootfs-image artifact of version v's payload
// (root image, kernel and initrd) with the given compression ("" for its
// default) and returns its size.
func (p *peerEnv) mender(tb testing.TB, v, compression string) int64 {
	tb.Helper()
	out := filepath.Join(p.dir, v+".mender")
	args := []string{"write", "rootfs-image", "-t", "keel-bench", "-n", "keel-" + v, "-f", p.payload[v], "-o", out}
	if compression != "" {
		args = append([]string{"--compression", compression}, args...)
	}
	p.run(tb, "mender-artifact", args...)
	n := size(tb, out)
	os.Remove(out)
	return n
}

// casync chunks the new payload into a store nginx serves, extracts it
// over HTTP with the old payload as seed and returns the bytes served.
func (p *peerEnv) casync(tb testing.TB, w, oldPay, newPay string) int64 {
	tb.Helper()
	store := filepath.Join(p.srv, w+".castr")
	index := filepath.Join(p.srv, w+".caibx")
	p.run(tb, "casync", "make", "--store="+store, index, newPay)
	out := filepath.Join(p.dir, w+"-casync.img")
	n := p.served(tb, func() {
		p.run(tb, "casync", "extract", "--seed="+oldPay, "--store="+p.base+"/"+w+".castr", p.base+"/"+w+".caibx", out)
	})
	a, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	want, err := os.ReadFile(newPay)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(a, want) {
		tb.Fatalf("casync extract of %s differs from the payload", w)
	}
	os.Remove(out)
	os.RemoveAll(store)
	return n
}

// installRatio is the full install time (from a file, nothing local) of
// the format-1 bundle of path over that of path itself (format 2):
// benchInstallRounds of each in turns, medians.
func (p *peerEnv) installRatio(tb testing.TB, path string) float64 {
	tb.Helper()
	plain := filepath.Join(p.dir, "plain.bundle")
	p.reencode(tb, path, plain, true, 0)
	defer os.Remove(plain)
	return installRatio(tb, p.benchEnv, path, plain)
}
