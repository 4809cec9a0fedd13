package vmkit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	expect "github.com/Netflix/go-expect"
)

// TimedLine is one console line (without its line end) and when the host
// read it. The console is read as the guest writes it, so At is close to
// when the guest printed the line.
type TimedLine struct {
	At   time.Time
	Text string
}

// Errors of LineReader.Until.
var (
	// ErrDeadline: the deadline passed before a line matched.
	ErrDeadline = errors.New("deadline passed")
	// ErrConsoleEnded: QEMU exited (or its console closed) before a line
	// matched.
	ErrConsoleEnded = errors.New("console ended (QEMU exited)")
)

// LineReader reads a run's console line by line with overall deadlines
// (Run.Expect's timeout is an idle timeout: a machine that keeps printing,
// rebooting in a loop for example, never times out there). It shares the
// console with Run.Expect: a line that matched was read to its end and
// nothing after it, so Expect calls may follow.
type LineReader struct {
	r       *Run
	partial string
}

// Lines returns a LineReader for the run's console.
func (r *Run) Lines() *LineReader { return &LineReader{r: r} }

// lineEnd matches a buffer that ends in a newline: Expect returns each line.
type lineEnd struct{}

func (lineEnd) Match(v any) bool {
	b, ok := v.(*bytes.Buffer)
	return ok && b.Len() > 0 && b.Bytes()[b.Len()-1] == '\n'
}

func (lineEnd) Criteria() any { return "\n" }

// poll bounds one read, so that the deadline is checked at least this often.
const poll = 100 * time.Millisecond

// Until reads lines until stop returns true for one (stop may be nil: read
// until the deadline), the deadline passes (ErrDeadline) or the console
// ends (ErrConsoleEnded). It returns every complete line it read, the
// matching one last.
func (l *LineReader) Until(deadline time.Time, stop func(line string) bool) ([]TimedLine, error) {
	var lines []TimedLine
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return lines, ErrDeadline
		}
		out, err := l.r.VM.Console.Expect(func(o *expect.ExpectOpts) error {
			o.Matchers = append(o.Matchers, lineEnd{})
			return nil
		}, expect.WithTimeout(min(left, poll)))
		l.partial += out
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if l.partial != "" {
				lines = append(lines, TimedLine{At: time.Now(), Text: strings.TrimRight(l.partial, "\r\n")})
				l.partial = ""
			}
			return lines, fmt.Errorf("%w: %v", ErrConsoleEnded, err)
		}
		if !strings.HasSuffix(l.partial, "\n") {
			continue
		}
		line := TimedLine{At: time.Now(), Text: strings.TrimRight(l.partial, "\r\n")}
		l.partial = ""
		lines = append(lines, line)
		if stop != nil && stop(line.Text) {
			return lines, nil
		}
	}
}

// For reads (and so drains: a console nobody reads stalls the guest once
// the pty's buffer is full) the console for d and returns the lines read.
func (l *LineReader) For(d time.Duration) ([]TimedLine, error) {
	lines, err := l.Until(time.Now().Add(d), nil)
	if errors.Is(err, ErrDeadline) {
		err = nil
	}
	return lines, err
}

var (
	reEFIVar    = regexp.MustCompile(`KEEL-EFIVAR ([0-9a-f]*)\r*\n`)
	reEFIVarErr = regexp.MustCompile(`KEEL-EFIVAR-ERROR ([^\r\n]*)\r*\n`)
)

// EFIVar reads the efivarfs file name (Name-GUID) in the booted slot with
// the test init's efivar command: the variable's 4 bytes of attributes
// (little-endian) followed by its data, as efivarfs gives them.
func (r *Run) EFIVar(name string) ([]byte, error) {
	if err := r.command("efivar " + name); err != nil {
		return nil, err
	}
	out, err := r.VM.Console.Expect(expect.Regexp(reEFIVar), expect.Regexp(reEFIVarErr), expect.WithTimeout(r.StepTimeout))
	if err != nil {
		return nil, fmt.Errorf("efivar %s: %w", name, err)
	}
	if m := reEFIVarErr.FindStringSubmatch(out); m != nil {
		return nil, fmt.Errorf("efivar %s: %s", name, m[1])
	}
	m := reEFIVar.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("efivar %s: no KEEL-EFIVAR line in %q", name, out)
	}
	return hex.DecodeString(m[1])
}

var (
	reTrustedKeys    = regexp.MustCompile(`KEEL-TRUSTEDKEYS ([0-7]+) ([0-9a-f]*)\r*\n`)
	reTrustedKeysErr = regexp.MustCompile(`KEEL-TRUSTEDKEYS-ERROR ([^\r\n]*)\r*\n`)
)

// TrustedKeys reads /run/keel/trusted-keys in the booted slot with the
// test init's trustedkeys command: the keys keel-init handed over, and the
// file's permission bits.
func (r *Run) TrustedKeys() ([]byte, os.FileMode, error) {
	if err := r.command("trustedkeys"); err != nil {
		return nil, 0, err
	}
	out, err := r.VM.Console.Expect(expect.Regexp(reTrustedKeys), expect.Regexp(reTrustedKeysErr), expect.WithTimeout(r.StepTimeout))
	if err != nil {
		return nil, 0, fmt.Errorf("trustedkeys: %w", err)
	}
	if m := reTrustedKeysErr.FindStringSubmatch(out); m != nil {
		return nil, 0, fmt.Errorf("trustedkeys: %s", m[1])
	}
	m := reTrustedKeys.FindStringSubmatch(out)
	if m == nil {
		return nil, 0, fmt.Errorf("trustedkeys: no KEEL-TRUSTEDKEYS line in %q", out)
	}
	mode, err := strconv.ParseUint(m[1], 8, 32)
	if err != nil {
		return nil, 0, fmt.Errorf("trustedkeys: mode %q: %w", m[1], err)
	}
	b, err := hex.DecodeString(m[2])
	return b, os.FileMode(mode), err
}
