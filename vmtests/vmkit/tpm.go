package vmkit

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	expect "github.com/Netflix/go-expect"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
)

// SlotManifest reads a slot's manifest entry back from the machine's disk
// (GPT partition slot-<name>, slot container): the bytes keel-init
// measures.
func (m *Machine) SlotManifest(slot string) ([]byte, error) {
	f, err := os.Open(m.Disk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := gpt.ReadFile(f)
	if err != nil {
		return nil, err
	}
	p, err := t.Find(layout.SlotPartition(slot))
	if err != nil {
		return nil, err
	}
	sec := p.Section(f)
	h, err := slotimg.ReadHeader(sec, sec.Size())
	if err != nil {
		return nil, err
	}
	mb, _, err := h.ReadManifest(sec, slotimg.EntryManifest)
	return mb, err
}

// UKI copies keel's unified kernel image (\EFI\BOOT\BOOTX64.EFI on the
// ESP, GPT partition "esp") from the machine's disk to dst, with mcopy.
func (m *Machine) UKI(dst string) error {
	f, err := os.Open(m.Disk)
	if err != nil {
		return err
	}
	t, err := gpt.ReadFile(f)
	f.Close()
	if err != nil {
		return err
	}
	p, err := t.Find("esp")
	if err != nil {
		return err
	}
	out, err := exec.Command("mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", m.Disk, p.Offset()), "::/EFI/BOOT/BOOTX64.EFI", dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mcopy BOOTX64.EFI from the ESP: %w: %s", err, out)
	}
	return nil
}

var (
	rePCREnd      = regexp.MustCompile(`KEEL-PCR-END rc=(\d+)\r*\n`)
	reEventLogEnd = regexp.MustCompile(`KEEL-EVENTLOG-END lines=(-?\d+)\r*\n`)
)

// prefixed runs a test init command and returns the lines of its output
// that start with prefix (without it), up to the end marker.
func (r *Run) prefixed(cmd, prefix string, end *regexp.Regexp) ([]string, []string, error) {
	if err := r.command(cmd); err != nil {
		return nil, nil, err
	}
	out, err := r.VM.Console.Expect(expect.Regexp(end), expect.WithTimeout(r.StepTimeout))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: waiting for %s: %w", cmd, end, err)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			lines = append(lines, rest)
		}
	}
	return lines, end.FindStringSubmatch(out), nil
}

// PCRs runs `keel pcr read --banks BANKS` in the booted slot and returns
// its output (tpm2_pcrread's format).
func (r *Run) PCRs(banks string) (string, error) {
	lines, m, err := r.prefixed("pcrs "+banks, "KEEL-PCR ", rePCREnd)
	if err != nil {
		return "", err
	}
	out := strings.Join(lines, "\n") + "\n"
	if m[1] != "0" {
		return out, fmt.Errorf("keel pcr read: rc=%s: %s", m[1], out)
	}
	return out, nil
}

// EventLog returns /run/keel/eventlog.jsonl as the booted slot sees it.
func (r *Run) EventLog() ([]byte, error) {
	lines, m, err := r.prefixed("eventlog", "KEEL-EVENTLOG ", reEventLogEnd)
	if err != nil {
		return nil, err
	}
	if n, _ := strconv.Atoi(m[1]); n != len(lines) {
		return nil, fmt.Errorf("event log: read %d lines, the slot printed %d", len(lines), n)
	}
	return []byte(strings.Join(lines, "\n") + "\n"), nil
}
