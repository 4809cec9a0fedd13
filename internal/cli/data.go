package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/keelboot/keel/format/datareport"
	"github.com/keelboot/keel/format/layout"
)

// What stage 2 told the OS about the data partition (package
// format/datareport, layout.DataReportPath in Deps.RunDir): `keel status`
// shows it (text and --json "data"), `keel events` ends with it.

// dataJSON is status --json's "data": the report, or why there is none.
type dataJSON struct {
	*datareport.Report
	// Error says why the report could not be read.
	Error string `json:"error,omitempty"`
}

// readDataReport reads the report stage 2 left in Deps.RunDir: nil and
// no error when there is none (a stage 2 older than the report, or not a
// keel boot).
func (c *command) readDataReport() (*datareport.Report, error) {
	file := filepath.Join(c.deps.RunDir, path.Base(layout.DataReportPath))
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", file)
	}
	b, err := io.ReadAll(io.LimitReader(f, datareport.MaxSize+1))
	if err != nil {
		return nil, err
	}
	r, err := datareport.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &r, nil
}

// dataStatus is status --json's "data" for the running system (booted
// by keel: b is status's booted), nil otherwise.
func (c *command) dataStatus(b *bootedJSON) *dataJSON {
	if b == nil || !b.ByKeel {
		return nil
	}
	r, err := c.readDataReport()
	switch {
	case err != nil:
		return &dataJSON{Error: datareport.Printable(err.Error())}
	case r == nil:
		return nil
	}
	return &dataJSON{Report: r}
}

// dataText writes the text status's data lines (none without a report).
func dataText(w io.Writer, d *dataJSON) {
	if d == nil {
		return
	}
	if d.Report == nil {
		fmt.Fprintf(w, "data:\tunknown: %s\n", d.Error)
		return
	}
	for i, l := range d.Lines() {
		label := ""
		if i == 0 {
			label = "data:"
		}
		fmt.Fprintf(w, "%s\t%s\n", label, l)
	}
}

// dataEvents ends `keel events` with what stage 2 did on the data
// partition at this boot (nothing without a report).
func (c *command) dataEvents(w io.Writer) {
	r, err := c.readDataReport()
	switch {
	case err != nil:
		fmt.Fprintf(w, "data partition (stage 2): %s\n", datareport.Printable(err.Error()))
	case r != nil:
		fmt.Fprintf(w, "data partition (stage 2, %s):\n", layout.DataReportPath)
		for _, l := range r.Lines() {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}
