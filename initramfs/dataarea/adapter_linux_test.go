//go:build linux

package dataarea

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/datareport"
)

// testOptions are the bounds a test lowers; statfs: the free space is
// the file system's (else plenty).
type testOptions struct {
	entries, depth int
	statfs         bool
}

// outcome is what one Prepare did.
type outcome struct {
	area   string
	err    error
	log    logs
	report datareport.Report
}

// said is everything the boot printed and reported, a line each.
func (o outcome) said() string {
	return strings.Join(append(append([]string{}, o.log...), o.report.Lines()...), "\n")
}

func runPrepare(root string, s State, o testOptions) outcome {
	var out outcome
	opts := Options{Free: plenty, Logf: out.log.logf, Limits: Limits{Entries: o.entries, Depth: o.depth}}
	if o.statfs {
		opts.Free = nil
	}
	r, err := Prepare(root, s, opts)
	out.area, out.err, out.report = r.Area, err, r.Report
	return out
}

// checkQuarantined checks that from (a path on the partition) was set
// aside in quarantine/ and reported, with inside (a path under it, ""
// none) still in it, and that quarantine/ is listed.
func checkQuarantined(t *testing.T, root string, b boot, out outcome, from, inside string) {
	t.Helper()
	var to string
	for _, s := range out.report.SetAside {
		if s.From == datareport.Quote(from) {
			to = s.To
		}
	}
	if to == "" {
		t.Errorf("%s: %s not set aside:\n%s", b.name, from, out.said())
		return
	}
	if _, err := os.Lstat(filepath.Join(root, from)); err == nil {
		t.Errorf("%s: %s is still there after it was set aside", b.name, from)
	}
	if inside != "" {
		name := strings.Trim(to, `"`)
		if _, err := os.Lstat(filepath.Join(root, name, inside)); err != nil {
			t.Errorf("%s: %s/%s: %v", b.name, name, inside, err)
		}
	}
	if out.report.QuarantineCount < 1 || !strings.Contains(out.said(), "quarantine") {
		t.Errorf("%s: quarantine/ not reported: %+v", b.name, out.report)
	}
}
