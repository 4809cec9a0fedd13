package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Tree is the set of modules found under one modules folder.
type Tree struct {
	// Dir is the folder that was scanned (lib/modules/<version>).
	Dir string
	// Modules maps each normalized module name to its module.
	Modules map[string]*Module
	// Builtin holds the normalized names in Dir/modules.builtin: modules
	// compiled into the kernel, which need no loading.
	Builtin map[string]bool

	aliases map[string][]string // alias (normalized) -> module names, sorted
}

// Scan walks dir (a lib/modules/<version> folder, or a symlink to one) for
// .ko files, reads the .modinfo of each and returns the Tree. It reads
// dir/modules.builtin when present. Two files with the same module name, a compressed module or a
// .ko without .modinfo are errors naming the files.
func Scan(dir string) (*Tree, error) {
	// WalkDir does not follow a symlinked root (fetch-kernel.sh's
	// OUTDIR/modules is one).
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("kmod: modules folder: %w", err)
	}
	var paths []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.Type().IsRegular() && (strings.HasSuffix(name, ".ko") || compressedSuffix(name) != "") {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kmod: scanning modules folder %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("kmod: no .ko files under %s: is it the kernel's lib/modules/<version> folder?", dir)
	}
	sort.Strings(paths)

	// Reading .modinfo is I/O bound on thousands of files: a few workers.
	mods := make([]*Module, len(paths))
	errs := make([]error, len(paths))
	workers := min(2*runtime.GOMAXPROCS(0), 16)
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(paths) {
					return
				}
				mods[i], errs[i] = ReadFile(paths[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	t := &Tree{Dir: dir, Modules: map[string]*Module{}, Builtin: map[string]bool{}, aliases: map[string][]string{}}
	for _, m := range mods {
		rel, err := filepath.Rel(root, m.Path)
		if err != nil {
			return nil, fmt.Errorf("kmod: %w", err)
		}
		m.Path = filepath.ToSlash(rel)
		if old, dup := t.Modules[m.Name]; dup {
			return nil, fmt.Errorf("kmod: two modules named %s under %s: %s and %s; remove one", m.Name, dir, old.Path, m.Path)
		}
		t.Modules[m.Name] = m
		for _, a := range m.Aliases {
			a = Normalize(a)
			t.aliases[a] = appendUnique(t.aliases[a], m.Name)
		}
	}
	for _, names := range t.aliases {
		sort.Strings(names)
	}
	if err := t.readBuiltin(filepath.Join(dir, "modules.builtin")); err != nil {
		return nil, err
	}
	return t, nil
}

// readBuiltin reads modules.builtin (one kernel/.../name.ko per line).
func (t *Tree) readBuiltin(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t.Builtin[nameFromPath(line)] = true
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("kmod: reading %s: %w", path, err)
	}
	return nil
}

// Lookup finds the modules a name stands for: the module with that name
// ('-' and '_' equal), else every module with that alias (sorted by name).
// It returns nil for a name that is built in or unknown; builtin reports
// which.
func (t *Tree) Lookup(name string) (mods []*Module, builtin bool) {
	n := Normalize(name)
	if m, ok := t.Modules[n]; ok {
		return []*Module{m}, false
	}
	if t.Builtin[n] {
		return nil, true
	}
	for _, a := range t.aliases[n] {
		mods = append(mods, t.Modules[a])
	}
	return mods, false
}

// Options tune Resolve.
type Options struct {
	// Softdeps makes Resolve honour softdep=: the pre: modules (when the
	// tree has them) are loaded before the module and the post: ones after
	// it. Soft dependencies that cannot be found are skipped, as modprobe
	// does.
	Softdeps bool
}

// MissingError is returned (wrapped) by Resolve when a wanted module, or a
// module one of them depends on, is in neither the tree nor
// modules.builtin.
type MissingError struct {
	Name  string   // the module that is missing
	Chain []string // who needs it: the wanted module first, Name's dependent last
	Dir   string   // the modules folder searched
}

func (e *MissingError) Error() string {
	need := "wanted"
	if len(e.Chain) > 0 {
		need = "needed by " + strings.Join(e.Chain, " -> ")
	}
	return fmt.Sprintf("kmod: module %s (%s) not found under %s nor in its modules.builtin: check the name (modinfo name= or alias=), or drop it from the board's module list if this kernel has no such driver", e.Name, need, e.Dir)
}

// CycleError is returned (wrapped) by Resolve when the depends= of some
// modules form a cycle, which no load order can satisfy.
type CycleError struct {
	Cycle []string // the modules on the cycle, the first repeated at the end
}

func (e *CycleError) Error() string {
	return fmt.Sprintf("kmod: dependency cycle %s: the kernel cannot load these modules; the modules folder is broken (rebuild or re-fetch the kernel)", strings.Join(e.Cycle, " -> "))
}

// Resolve returns the closure of the wanted modules in load order: every
// module comes after all its depends= (and, with opts.Softdeps, after its
// softdep pre: modules). The order is deterministic: a depth-first walk of
// wanted in the order given, and of each module's dependencies in the order
// its .modinfo lists them, so modules wanted first are loaded first. Each
// module appears once. Wanted names may be aliases (all modules with the
// alias are loaded) and built-in modules are skipped.
func (t *Tree) Resolve(wanted []string, opts Options) ([]*Module, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var order []*Module
	var stack []string // the current walk, for cycle and missing reports

	var visit func(m *Module) error
	visit = func(m *Module) error {
		switch state[m.Name] {
		case done:
			return nil
		case visiting:
			i := len(stack) - 1
			for i > 0 && stack[i] != m.Name {
				i--
			}
			cycle := append(append([]string(nil), stack[i:]...), m.Name)
			return &CycleError{Cycle: cycle}
		}
		state[m.Name] = visiting
		stack = append(stack, m.Name)
		for _, d := range m.Depends {
			dep, ok := t.Modules[d]
			if !ok {
				if t.Builtin[d] {
					continue
				}
				return &MissingError{Name: d, Chain: append([]string(nil), stack...), Dir: t.Dir}
			}
			if err := visit(dep); err != nil {
				return err
			}
		}
		if opts.Softdeps {
			for _, s := range m.SoftPre {
				mods, _ := t.Lookup(s)
				for _, dep := range mods {
					if state[dep.Name] == visiting {
						continue // soft: a cycle through it is not an error
					}
					if err := visit(dep); err != nil {
						return err
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[m.Name] = done
		order = append(order, m)
		if opts.Softdeps {
			for _, s := range m.SoftPost {
				mods, _ := t.Lookup(s)
				for _, post := range mods {
					if state[post.Name] != unvisited {
						continue // already loaded, or loading it led here
					}
					if err := visit(post); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}

	for _, w := range wanted {
		mods, builtin := t.Lookup(w)
		if builtin {
			continue
		}
		if len(mods) == 0 {
			return nil, &MissingError{Name: w, Dir: t.Dir}
		}
		for _, m := range mods {
			if err := visit(m); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

// CheckOrder reports the first module in order that comes before one of
// its depends= (or whose dependency is absent from order and not built
// in). Resolve's output always passes; it is here for callers that read an
// order back (from a load-order file, say) and for tests.
func (t *Tree) CheckOrder(order []*Module) error {
	pos := map[string]int{}
	for i, m := range order {
		if _, dup := pos[m.Name]; dup {
			return fmt.Errorf("kmod: module %s is listed twice in the load order", m.Name)
		}
		pos[m.Name] = i
	}
	for i, m := range order {
		for _, d := range m.Depends {
			j, ok := pos[d]
			switch {
			case !ok && t.Builtin[d]:
			case !ok:
				return fmt.Errorf("kmod: module %s depends on %s, which is not in the load order", m.Name, d)
			case j > i:
				return fmt.Errorf("kmod: module %s (position %d) is loaded before its dependency %s (position %d)", m.Name, i, d, j)
			}
		}
	}
	return nil
}
