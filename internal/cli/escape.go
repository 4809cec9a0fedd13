package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Text that keel did not write itself — the boot record (the OS and
// anything with access to the U-Boot env or the EFI variable can write
// it), the event log in /run, the kernel command line, an unverified
// bundle header — is printed through printable (text) or printJSON
// (JSON), so that it cannot put terminal escapes (a CSI sequence that
// clears the screen, retitles the window or forges a line) into an
// admin's terminal.

// printable returns s unchanged when it is valid UTF-8 and every rune is
// printable (unicode.IsPrint: letters, marks, numbers, punctuation,
// symbols and the ASCII space), and otherwise s quoted as a Go string
// literal (strconv.Quote), in which the C0 controls (ESC, BEL, CR...),
// DEL, the C1 controls (U+0080-U+009F: U+009B is CSI), invalid bytes (a
// raw 0x9b is CSI to an 8-bit terminal) and format characters such as
// the bidirectional overrides (U+202E) are escapes: \x1b, \u009b, \u202e.
func printable(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
		i += n
	}
	return s
}

// printJSON writes v as indented JSON and a newline, with escapeJSON
// applied.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	return writeEscaped(w, b, err)
}

// printJSONLine is printJSON on one line.
func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	return writeEscaped(w, b, err)
}

func writeEscaped(w io.Writer, b []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = w.Write(append(escapeJSON(b), '\n'))
	return err
}

// escapeJSON rewrites JSON text so that no string in it holds a rune a
// terminal could act on: encoding/json escapes the C0 controls and makes
// invalid UTF-8 U+FFFD, but writes DEL, the C1 controls (U+009B is CSI to
// a terminal that reads UTF-8 C1 controls) and format characters (the
// bidirectional overrides) as they are. Every non-printable rune from
// U+007F up becomes its \uXXXX escape (a UTF-16 surrogate pair above
// U+FFFF), which any JSON reader decodes to the same string: the data is
// unchanged, only its spelling. Outside strings JSON text is ASCII, so
// the rewrite touches strings only. Invalid UTF-8 (which b, from a file,
// may hold) becomes \ufffd, as encoding/json would have written it.
func escapeJSON(b []byte) []byte {
	var out []byte // nil until something needs escaping
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		bad := r == utf8.RuneError && n <= 1
		if r < 0x7f || !bad && unicode.IsPrint(r) {
			if out != nil {
				out = append(out, b[i:i+n]...)
			}
			i += n
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(b)+16), b[:i]...)
		}
		if bad {
			r = utf8.RuneError
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	if out == nil {
		return b
	}
	return out
}
