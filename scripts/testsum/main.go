// Command testsum reads `go test -json` events on stdin and prints what a
// person reads in `go test` without -v: each package's ok/FAIL line, the
// whole output of every failed test, and every skipped test with its
// reason. It ends with the line "N passed, N failed, N skipped" and exits
// non-zero when a test failed, a package failed to build, or a test was
// skipped (keel's rule: outside -short, a missing tool is an install bug,
// not a skip). -allow-skips lifts the last rule (for make unit's -short).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	allowSkips := flag.Bool("allow-skips", false, "skipped tests do not fail the run")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, *allowSkips))
}

func run(in io.Reader, out io.Writer, allowSkips bool) int {
	output := map[string]*strings.Builder{} // package/test -> output
	var passed, failed, skipped int
	var skips []string
	badPkg := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event: build errors and the like go through as is.
			fmt.Fprintln(out, string(line))
			if strings.Contains(string(line), "FAIL") || strings.Contains(string(line), "cannot") {
				badPkg = true
			}
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			badPkg = true
		case "output":
			b := output[key]
			if b == nil {
				b = &strings.Builder{}
				output[key] = b
			}
			b.WriteString(e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			} else {
				fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, key)
		case "skip":
			if e.Test != "" {
				skipped++
				reason := ""
				if b := output[key]; b != nil {
					for _, l := range strings.Split(b.String(), "\n") {
						if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- SKIP") {
							reason = t
						}
					}
				}
				skips = append(skips, fmt.Sprintf("--- SKIP: %s %s: %s", e.Package, e.Test, reason))
			} else {
				fmt.Fprintf(out, "?   \t%s\t[no test files]\n", e.Package)
			}
			delete(output, key)
		case "fail":
			if b := output[key]; b != nil {
				fmt.Fprint(out, b.String())
			}
			if e.Test != "" {
				failed++
			} else {
				badPkg = true
				fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, key)
		}
	}
	sort.Strings(skips)
	for _, s := range skips {
		fmt.Fprintln(out, s)
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	switch {
	case failed > 0 || badPkg:
		return 1
	case skipped > 0 && !allowSkips:
		fmt.Fprintf(out, "testsum: %d tests skipped: a skip outside -short is a missing install step or a test bug\n", skipped)
		return 1
	}
	return 0
}
