package kmod

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// CheckModulesDep cross-checks the tree against a modules.dep file as
// depmod writes it ("kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko ...",
// paths relative to the modules folder): every module must be listed and
// its listed dependencies must be exactly the closure of its depends=.
// keel does not need modules.dep (.modinfo is the source of truth); this
// catches a misreading of .modinfo. It returns an error naming up to 10
// disagreements.
func (t *Tree) CheckModulesDep(r io.Reader) error {
	byPath := map[string]*Module{}
	for _, m := range t.Modules {
		byPath[m.Path] = m
	}
	var problems []string
	seen := map[string]bool{}
	s := bufio.NewScanner(r)
	s.Buffer(nil, 1<<20)
	for line := 1; s.Scan(); line++ {
		text := strings.TrimSpace(s.Text())
		if text == "" {
			continue
		}
		path, deps, ok := strings.Cut(text, ":")
		if !ok {
			return fmt.Errorf("kmod: modules.dep line %d: no ':' in %q", line, truncate(text))
		}
		m, ok := byPath[path]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is in modules.dep but not in the tree", path))
			continue
		}
		seen[path] = true
		want := strings.Fields(deps)
		sort.Strings(want)
		order, err := t.Resolve([]string{m.Name}, Options{})
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		var got []string
		for _, d := range order {
			if d != m {
				got = append(got, d.Path)
			}
		}
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			problems = append(problems, fmt.Sprintf("%s: modules.dep says [%s], .modinfo closure is [%s]", path, strings.Join(want, " "), strings.Join(got, " ")))
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("kmod: reading modules.dep: %w", err)
	}
	var paths []string
	for p := range byPath {
		if !seen[p] {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		problems = append(problems, fmt.Sprintf("%s is in the tree but not in modules.dep", p))
	}
	if len(problems) == 0 {
		return nil
	}
	n := len(problems)
	if n > 10 {
		problems = append(problems[:10], fmt.Sprintf("... and %d more", n-10))
	}
	return fmt.Errorf("kmod: %s disagrees with modules.dep in %d places:\n  %s", t.Dir, n, strings.Join(problems, "\n  "))
}
