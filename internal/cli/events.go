package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	kcmdline "github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/tpm"
)

// maxEventData is how much of an event's logged data a line of `keel
// events` shows.
const maxEventData = 160

// events runs `keel events`: the measurement event log keel-init wrote for
// this boot (stage 1, before the kexec; stage 2 left its copy in
// layout.RunDir), one line per event, or with --json the log as it is.
func (c *command) events(args []string) error {
	var asJSON bool
	set, err := c.flags("events", args, func(set *flag.FlagSet) {
		set.BoolVar(&asJSON, "json", false, "print the log as it is (JSON lines, what `keel pcr replay` reads)")
	})
	if err != nil {
		return err
	}
	file := filepath.Join(c.deps.RunDir, path.Base(layout.EventLogPath))
	switch set.NArg() {
	case 0:
	case 1:
		file = set.Arg(0)
	default:
		return usagef("usage: keel events [--json] [EVENTLOG]")
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) && set.NArg() == 0 {
		c.dataEvents(c.stdout)
		c.crashEvents(c.stdout)
		return fmt.Errorf("no event log at %s: %s (%w)", file, c.whyNoEventLog(), fs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	if asJSON {
		return printEventsJSON(c.stdout, file, b)
	}
	if err := printEvents(c.stdout, file, b); err != nil {
		return err
	}
	c.dataEvents(c.stdout)
	c.crashEvents(c.stdout)
	return nil
}

// printEventsJSON prints an event log as JSON lines, what `keel pcr
// replay` reads: each line compacted (whitespace between tokens, a
// carriage return among it, goes) and escaped (escapeJSON), so that it
// decodes to the same events and puts no terminal control on the screen.
// A line that is not JSON fails the whole log before anything is
// printed.
func printEventsJSON(w io.Writer, file string, b []byte) error {
	var out bytes.Buffer
	for n, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := json.Compact(&out, line); err != nil {
			return fmt.Errorf("%s line %d: %w", file, n+1, err)
		}
		out.WriteByte('\n')
	}
	_, err := w.Write(escapeJSON(out.Bytes()))
	return err
}

// whyNoEventLog says why the running system has no event log, from the
// kernel command line keel-init wrote.
func (c *command) whyNoEventLog() string {
	line, _ := c.deps.Cmdline()
	switch {
	case kcmdline.Value(line, kcmdline.KeySlot) == "":
		return "this system was not booted by keel (no keel.slot= on the kernel command line)"
	case kcmdline.Value(line, kcmdline.KeyTPM) == "unmeasured":
		return "keel-init did not measure this boot (keel.tpm=unmeasured on the kernel command line: no TPM, or it failed), so it wrote no event log"
	}
	return "not booted by keel, or " + layout.RunDir + " was removed"
}

// printEvents prints an event log one line per event: its number, the
// PCR, the event type and what was measured.
func printEvents(w0 io.Writer, file string, b []byte) error {
	var entries []tpm.LogEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e tpm.LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("%s line %d: %w", file, n, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(w0, "%s: %d events measured by keel-init (stage 1) before it handed over to the slot kernel\n", file, len(entries))
	w := tabwriter.NewWriter(w0, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "#\tPCR\tEVENT\tWHAT")
	for i, e := range entries {
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\n", i+1, e.PCR, printable(e.Type), eventWhat(e))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w0, "(check it against the TPM: keel pcr replay %s; keel pcr read)\n", file)
	return err
}

// eventWhat is what an event measured, for people: its description and,
// for keel's "keel:NAME=VALUE" data, the value (cut after maxEventData
// bytes, but for the command line); a manifest by its size.
func eventWhat(e tpm.LogEntry) string {
	what := printable(e.Description)
	switch {
	case e.Data == nil && e.DataHex != "":
		return fmt.Sprintf("%s (%d bytes of binary data)", what, len(e.DataHex)/2)
	case e.Data == nil:
		return what + " (data not logged)"
	case e.Type == tpm.EventManifest:
		return fmt.Sprintf("%s (%d bytes)", what, len(*e.Data))
	case e.Type == tpm.EventSeparator || e.Type == tpm.EventCap:
		return what
	}
	v := *e.Data
	if _, after, ok := strings.Cut(v, "="); ok && strings.HasPrefix(v, "keel:") {
		v = after
	}
	if len(v) > maxEventData && e.Type != tpm.EventCmdline { // the command line is shown whole
		cut := maxEventData
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut] + "…"
	}
	return what + ": " + printable(v)
}
