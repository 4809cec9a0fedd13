package cli

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// helpCommands are the commands in the order docs/commands.md gives
// their usage, with the subcommands of each group (a command with
// subcommands). TestHelpCoversEveryCommand holds it to the dispatch
// table.
var helpCommands = []struct {
	name string
	subs []string
}{
	{"help", nil},
	{"status", nil},
	{"events", nil},
	{"init", nil},
	{"try", nil},
	{"select", nil},
	{"mark-good", nil},
	{"boot-ok", nil},
	{"note-shutdown", nil},
	{"mark-bad", nil},
	{"set-active", nil},
	{"rollback", nil},
	{"recover", nil},
	{"secret", []string{"keygen", "sign-policy", "seal", "unseal"}},
	{"env", []string{"print", "set", "import", "export"}},
	{"image", []string{"build"}},
	{"initramfs", []string{"build"}},
	{"pcr", []string{"predict", "replay", "read", "log"}},
	{"keygen", nil},
	{"sign", nil},
	{"install", nil},
	{"bundle", []string{"build", "info", "verify", "delta"}},
	{"channel", []string{"init", "publish", "refresh", "rotate", "status"}},
	{"update", []string{"check", "apply"}},
	{"verify", nil},
	{"secureboot", []string{"keygen", "sign", "enrolment", "enroll", "status", "ovmf-vars"}},
	{"seed", []string{"verify"}},
}

// TestHelpCoversEveryCommand: `keel help` lists every command of the
// dispatch table, and the docs' list (helpCommands) has every one.
func TestHelpCoversEveryCommand(t *testing.T) {
	table := slices.Sorted(maps.Keys((&command{}).commands()))
	var listed []string
	for _, c := range helpCommands {
		listed = append(listed, c.name)
		if (len(c.subs) > 0) != groups[c.name] {
			t.Errorf("%s: subcommands %v, but groups[%q] = %v", c.name, c.subs, c.name, groups[c.name])
		}
	}
	if slices.Sort(listed); !slices.Equal(listed, table) {
		t.Errorf("helpCommands %v, the dispatch table %v", listed, table)
	}
	for _, name := range table {
		if name == "help" {
			continue
		}
		if !strings.Contains(usageText, "\n  "+name+" ") && !strings.Contains(usageText, "\n  "+name+"\n") {
			t.Errorf("keel help does not list %q", name)
		}
	}
	for _, c := range helpCommands {
		for _, sub := range c.subs {
			if !strings.Contains(usageText, c.name+" "+sub) && !strings.Contains(usageText, c.name+" ") {
				t.Errorf("keel help does not list %s %s", c.name, sub)
			}
		}
	}
}

// helpInvocations are the ways to ask for one command's usage.
func helpInvocations(name string, subs []string) [][]string {
	if name == "help" {
		return [][]string{{"help"}, {"--help"}, {"-h"}}
	}
	out := [][]string{{name, "--help"}, {name, "-h"}, {"help", name}}
	if len(subs) > 0 {
		out = append(out, []string{name, "help"})
		for _, s := range subs {
			out = append(out, []string{name, s, "--help"})
		}
	}
	return out
}

const (
	usageBegin = "<!-- usage: begin (internal/cli/help_test.go writes this part: go test ./internal/cli/ -run TestHelpDocs -update) -->"
	usageEnd   = "<!-- usage: end -->"
)

// TestHelpDocs: every way of asking for a command's usage prints it on
// standard output, nothing on standard error, and exits 0; and
// docs/commands.md holds each text exactly (-update rewrites that part
// of the page).
func TestHelpDocs(t *testing.T) {
	deps := Deps{Cmdline: func() (string, error) { return "", nil }, EFIVarsDir: t.TempDir(), FWEnvConfig: filepath.Join(t.TempDir(), "none")}
	var md strings.Builder
	for _, c := range helpCommands {
		type block struct {
			cmds []string
			text string
		}
		var blocks []block
		for _, args := range helpInvocations(c.name, c.subs) {
			var stdout, stderr bytes.Buffer
			rc := Main(context.Background(), args, &stdout, &stderr, deps)
			line := "keel " + strings.Join(args, " ")
			if rc != ExitOK || stderr.Len() != 0 || stdout.Len() == 0 {
				t.Errorf("%s: exit %d, %d bytes on standard output, standard error:\n%s", line, rc, stdout.Len(), stderr.String())
				continue
			}
			if strings.Contains(stdout.String(), "Usage of ") {
				t.Errorf("%s: the flag package's default usage, not keel's:\n%s", line, stdout.String())
			}
			i := slices.IndexFunc(blocks, func(b block) bool { return b.text == stdout.String() })
			if i < 0 {
				blocks = append(blocks, block{text: stdout.String()})
				i = len(blocks) - 1
			}
			blocks[i].cmds = append(blocks[i].cmds, line)
		}
		fmt.Fprintf(&md, "### keel %s\n\n", c.name)
		for _, b := range blocks {
			md.WriteString("```console\n")
			for _, cmd := range b.cmds {
				fmt.Fprintf(&md, "$ %s\n", cmd)
			}
			md.WriteString(strings.TrimRight(b.text, "\n") + "\n```\n\n")
		}
	}
	got := strings.TrimRight(md.String(), "\n") + "\n"
	page := filepath.Join("..", "..", "docs", "commands.md")
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, usageBegin), strings.Index(doc, usageEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q part", page, usageBegin, usageEnd)
	}
	have := doc[i+len(usageBegin)+1 : j]
	if have == got {
		return
	}
	if *updateGolden {
		if err := os.WriteFile(page, []byte(doc[:i+len(usageBegin)+1]+got+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s differs from what the commands print (go test ./cli/ -run TestHelpDocs -update rewrites it); first difference at byte %d:\nwant %q\nhave %q",
		page, firstDiff(got, have), snippet(got, firstDiff(got, have)), snippet(have, firstDiff(got, have)))
}

func firstDiff(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func snippet(s string, at int) string {
	return s[max(0, at-40):min(len(s), at+80)]
}
