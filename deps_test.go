package keel

// The rules of the map in doc.go, checked with go list: the layers (every
// import points down), what the binaries and the lower layers link, and
// that the map names every folder and package. A failure names the
// offending import, or the chain of imports that links what a rule forbids.

import (
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

const module = "github.com/keelboot/keel"

// docMap is the map in doc.go: the paths its tree names (top-level
// folders, the packages and folders below them) and the layer of each
// top-level folder. The map is the source of the layers: TestLayers checks
// the imports against it.
type docMap struct {
	paths map[string]bool
	layer map[string]int
}

func readMap(t *testing.T) docMap {
	t.Helper()
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	mapEntry := regexp.MustCompile(`^//\t((?:[│ ]   )*)[├└]─ (\S+)`)
	mapLayer := regexp.MustCompile(`^//\t│  (\d+)  `)
	m := docMap{paths: map[string]bool{}, layer: map[string]int{}}
	layer := -1
	var stack []string
	for i, line := range strings.Split(string(doc), "\n") {
		if l := mapLayer.FindStringSubmatch(line); l != nil {
			layer, _ = strconv.Atoi(l[1])
			continue
		}
		e := mapEntry.FindStringSubmatch(line)
		if e == nil {
			continue
		}
		depth := utf8.RuneCountInString(e[1]) / 4
		if depth > len(stack) {
			t.Fatalf("doc.go:%d: %s is indented below nothing", i+1, e[2])
		}
		stack = append(stack[:depth], strings.TrimSuffix(e[2], "/"))
		m.paths[strings.Join(stack, "/")] = true
		if depth == 0 {
			if layer < 0 {
				t.Fatalf("doc.go:%d: %s is on no layer", i+1, e[2])
			}
			m.layer[stack[0]] = layer
		}
	}
	if len(m.layer) == 0 {
		t.Fatal("doc.go has no map")
	}
	return m
}

// A linkRule says what the packages at or under from must not link
// (import directly or through other packages): no package under a prefix
// in not, or, when only is set, none of keel's outside only.
type linkRule struct {
	from      string
	not, only []string
	why       string
}

func linkRules() []linkRule {
	return []linkRule{
		{from: "cmd/keel", not: []string{"initramfs/"},
			why: "the host tool is the CLI, the builder and the formats they share: no device-side boot code"},
		{from: "cmd/keel-init", not: []string{"builder/", "internal/cli/", "update/"},
			why: "keel-init carries what a boot runs: no image builder, no CLI, no OTA installer"},
		{from: "builder/", not: []string{"recovery/"},
			why: "the builder writes the seed in its format (format/seedimg); verifying and reinstalling it is the device's (recovery/)"},
		{from: "format/", only: []string{"format/", "manifest"},
			why: "the formats and protocols are the ground both sides stand on: they import no code above them"},
		{from: "manifest", only: []string{"manifest"},
			why: "the signed manifest is the ground floor: it imports nothing of keel's"},
		{from: "tpm/tcglog", not: []string{"bootenv/"},
			why: "the TCG log parser predicts PCR 7 from UEFI variables (format/uefi), not from keel's boot record"},
	}
}

// graph is keel's packages (paths relative to the module, "" for the
// root) with the keel packages each imports, test files left out: what
// the binaries link. It is read for Linux, keel-init's system and the one
// whose files import the most.
func graph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Env = append(os.Environ(), "GOOS=linux")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		p, ok := rel(f[0])
		if !ok {
			continue
		}
		g[p] = nil
		for _, imp := range f[1:] {
			if q, ok := rel(imp); ok {
				g[p] = append(g[p], q)
			}
		}
	}
	return g
}

// rel is path relative to the module, and whether it is keel's.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// under reports whether package p is at or under prefix (a folder with a
// trailing slash, or a package path).
func under(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func top(p string) string {
	f, _, _ := strings.Cut(p, "/")
	return f
}

// path returns the shortest chain of imports from p to a package that
// bad accepts, or nil.
func path(g map[string][]string, p string, bad func(string) bool) []string {
	prev := map[string]string{p: ""}
	queue := []string{p}
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		if q != p && bad(q) {
			chain := []string{q}
			for c := prev[q]; c != ""; c = prev[c] {
				chain = append(chain, c)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, imp := range g[q] {
			if _, seen := prev[imp]; !seen {
				prev[imp] = q
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

// TestLinkRules checks the rules of doc.go's map on what each binary and
// layer links; a failure names the chain of imports that breaks one.
func TestLinkRules(t *testing.T) {
	g := graph(t)
	for _, r := range linkRules() {
		bad := func(q string) bool {
			if r.only != nil {
				return !slices.ContainsFunc(r.only, func(o string) bool { return under(q, o) })
			}
			return slices.ContainsFunc(r.not, func(n string) bool { return under(q, n) })
		}
		n := 0
		for _, p := range slices.Sorted(maps.Keys(g)) {
			if !under(p, r.from) {
				continue
			}
			n++
			if chain := path(g, p, bad); chain != nil {
				t.Errorf("%s links %s: %s\n\trule: %s", p, chain[len(chain)-1], strings.Join(chain, " -> "), r.why)
			}
		}
		if n == 0 {
			t.Errorf("rule for %s: no such package (the rule is stale)", r.from)
		}
	}
}

// TestLayers checks that every import between top-level folders points
// down the layers of doc.go's map, and that every folder has a layer.
func TestLayers(t *testing.T) {
	g := graph(t)
	ls := readMap(t).layer
	for _, p := range slices.Sorted(maps.Keys(g)) {
		if p == "" {
			continue
		}
		lp, ok := ls[top(p)]
		if !ok {
			t.Errorf("%s: folder %s/ has no layer: place it in doc.go's map", p, top(p))
			continue
		}
		for _, q := range g[p] {
			if top(q) == top(p) {
				continue
			}
			if lq, ok := ls[top(q)]; ok && lq >= lp {
				t.Errorf("%s imports %s: %s/ (layer %d) may import only lower layers, %s/ is layer %d", p, q, top(p), lp, top(q), lq)
			}
		}
	}
}

// TestMapNamesEveryFolder: doc.go's map names every top-level folder and
// every package, and nothing that is not there.
func TestMapNamesEveryFolder(t *testing.T) {
	m := readMap(t)
	want := map[string]string{}
	for p := range graph(t) {
		if p != "" {
			want[p] = "package"
		}
	}
	ignored, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() && !strings.HasPrefix(n, ".") && !slices.Contains(strings.Fields(string(ignored)), "/"+n+"/") {
			want[n] = "folder"
		}
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if !m.paths[p] {
			t.Errorf("doc.go's map does not name the %s %s: place it on its layer", want[p], p)
		}
	}
	for p := range m.paths {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("doc.go's map names %s, which is no folder here", p)
		}
	}
}
