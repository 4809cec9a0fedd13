package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The PCRs keel measures into.
const (
	PCRBoot  = 8 // slot id, cmdline, boot mode, handoff separator
	PCRImage = 9 // manifest, kernel, initrd, dm-verity root hash
)

// Event types in the event log.
const (
	EventManifest  = "keel.manifest"
	EventKernel    = "keel.kernel"
	EventInitrd    = "keel.initrd"
	EventRootHash  = "keel.roothash"
	EventSlot      = "keel.slot"
	EventCmdline   = "keel.cmdline"
	EventMode      = "keel.mode"
	EventSeparator = "keel.separator"
	EventCap       = "keel.cap"
)

// CapData is what Cap measures into PCR 8 and 9 when a measurement failed
// on a reachable TPM: the boot goes on unmeasured, and no later
// measurement can bring PCR 8/9 to the values of a measured boot (sealed
// secrets stay sealed).
const CapData = "keel:unmeasured-boot"

// SeparatorData is what Separator measures into PCR 8 just before kexec.
const SeparatorData = "keel:separator"

// Modes are the boot modes keel measures.
var Modes = []string{"normal", "trial", "fallback", "recovery", "unmeasured"}

// BootMeasurement is what keel-init measures for the slot it boots.
type BootMeasurement struct {
	ManifestBytes []byte // the manifest file exactly as read from the slot
	KernelDigest  []byte // SHA-256 of the kernel (32 bytes)
	InitrdDigest  []byte // SHA-256 of the initrd (32 bytes)
	RootHash      []byte // dm-verity root hash; empty: none
	Slot          string // slot id, e.g. "a"
	Cmdline       string // the exact command line handed to kexec
	Mode          string // normal, trial, fallback, recovery or unmeasured
}

type measurement struct {
	pcr  int
	data []byte
	ev   Event
}

// events is the ordered list MeasureBoot extends (without the separator).
func (in BootMeasurement) events() ([]measurement, error) {
	if len(in.ManifestBytes) == 0 {
		return nil, fmt.Errorf("measure: empty manifest")
	}
	for name, d := range map[string][]byte{"kernel": in.KernelDigest, "initrd": in.InitrdDigest} {
		if len(d) != sha256.Size {
			return nil, fmt.Errorf("measure: %s digest is %d bytes, want a %d-byte SHA-256", name, len(d), sha256.Size)
		}
	}
	if in.Slot == "" || strings.ContainsAny(in.Slot, " \x00\n") {
		return nil, fmt.Errorf("measure: bad slot id %q", in.Slot)
	}
	if strings.ContainsAny(in.Cmdline, "\x00\n") {
		return nil, fmt.Errorf("measure: cmdline must be one line")
	}
	ok := false
	for _, m := range Modes {
		ok = ok || in.Mode == m
	}
	if !ok {
		return nil, fmt.Errorf("measure: boot mode %q: want one of %s", in.Mode, strings.Join(Modes, ", "))
	}
	root := "none"
	if len(in.RootHash) > 0 {
		root = hex.EncodeToString(in.RootHash)
	}
	return []measurement{
		{PCRImage, in.ManifestBytes, Event{EventManifest, "slot manifest"}},
		{PCRImage, []byte("keel:kernel-sha256=" + hex.EncodeToString(in.KernelDigest)), Event{EventKernel, "kernel SHA-256"}},
		{PCRImage, []byte("keel:initrd-sha256=" + hex.EncodeToString(in.InitrdDigest)), Event{EventInitrd, "initrd SHA-256"}},
		{PCRImage, []byte("keel:verity-roothash=" + root), Event{EventRootHash, "dm-verity root hash"}},
		{PCRBoot, []byte("keel:slot=" + in.Slot), Event{EventSlot, "boot slot"}},
		{PCRBoot, []byte("keel:cmdline=" + in.Cmdline), Event{EventCmdline, "kernel command line"}},
		{PCRBoot, []byte("keel:mode=" + in.Mode), Event{EventMode, "boot mode"}},
	}, nil
}

var separator = measurement{PCRBoot, []byte(SeparatorData), Event{EventSeparator, "handoff to the slot kernel (kexec)"}}

// MeasureBoot extends, in this order, PCR 9 with the manifest, kernel,
// initrd and root hash events and PCR 8 with the slot, cmdline and mode
// events (see the package documentation for the exact bytes). The input is
// checked before anything is extended.
func MeasureBoot(m *Measurer, in BootMeasurement) error {
	evs, err := in.events()
	if err != nil {
		return err
	}
	for _, e := range evs {
		if err := m.Extend(e.pcr, e.data, e.ev); err != nil {
			return err
		}
	}
	return nil
}

// Cap extends PCR 9 and then PCR 8 with CapData (see CapData). It tries
// both and returns the first error.
func Cap(m *Measurer) error {
	err9 := m.Extend(PCRImage, []byte(CapData), Event{EventCap, "measurement failed: the boot is unmeasured"})
	err8 := m.Extend(PCRBoot, []byte(CapData), Event{EventCap, "measurement failed: the boot is unmeasured"})
	if err9 != nil {
		return err9
	}
	return err8
}

// Separator extends PCR 8 with SeparatorData: the last measurement before
// kexec. Nothing keel-init does after it can reproduce the PCR 8 value seen
// before it.
func Separator(m *Measurer) error {
	return m.Extend(separator.pcr, separator.data, separator.ev)
}

// Predict returns the PCR 8 and 9 values in each bank after MeasureBoot and
// Separator, starting from all-zero PCRs (bank -> PCR -> value).
func Predict(in BootMeasurement, banks []crypto.Hash) (map[crypto.Hash]map[int][]byte, error) {
	return predict(in, banks, true)
}

// PredictBeforeSeparator is Predict without the separator: the values while
// keel-init still runs.
func PredictBeforeSeparator(in BootMeasurement, banks []crypto.Hash) (map[crypto.Hash]map[int][]byte, error) {
	return predict(in, banks, false)
}

// Prior is a measurement into PCR 8 or 9 made before keel-init runs: on a
// UKI board the Linux EFI stub of keel's own kernel measures into PCR 9
// (see UKIPrior), so PCR 9 does not start from zero when keel-init
// measures. The firmware's TCG event log holds these events.
type Prior struct {
	PCR  int
	Data []byte
	Type string // event log type: EventLinuxLoadOptions, EventLinuxInitrd
}

// Event log types of the Linux EFI stub's measurements (PriorEntry).
const (
	EventLinuxLoadOptions = "linux.load_options"
	EventLinuxInitrd      = "linux.initrd"
)

// UKIPrior is what the Linux EFI stub (Linux 6.1 here) of keel's kernel
// measures into PCR 9 before keel-init runs, given the UKI's .cmdline and
// .initrd sections: first LOADED_IMAGE::LoadOptions (event tag 0x8F3B22ED),
// the command line the UEFI stub hands it in UTF-16LE with its terminating
// NUL (systemd-stub turns control characters into spaces and drops
// trailing whitespace first), then the initrd (event tag 0x8F3B22EC, "Linux
// initrd"). The order and encoding were checked against swtpm under OVMF
// with Debian's systemd-stub 252 and kernel 6.1 (vmtests).
func UKIPrior(cmdline, initrd []byte) []Prior {
	c := []rune(strings.TrimRight(string(bytes.TrimRight(cmdline, "\x00")), " \t\r\n"))
	var u []byte
	for _, r := range c {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		for _, v := range utf16.Encode([]rune{r}) {
			u = append(u, byte(v), byte(v>>8))
		}
	}
	u = append(u, 0, 0)
	return []Prior{
		{PCR: PCRImage, Data: u, Type: EventLinuxLoadOptions},
		{PCR: PCRImage, Data: initrd, Type: EventLinuxInitrd},
	}
}

// PredictAfter is Predict from the PCR values the prior measurements leave.
func PredictAfter(prior []Prior, in BootMeasurement, banks []crypto.Hash) (map[crypto.Hash]map[int][]byte, error) {
	var evs []measurement
	for _, p := range prior {
		if p.PCR != PCRBoot && p.PCR != PCRImage {
			return nil, fmt.Errorf("predict: prior measurement into PCR %d: only PCR %d and %d are predicted", p.PCR, PCRBoot, PCRImage)
		}
		evs = append(evs, measurement{pcr: p.PCR, data: p.Data})
	}
	return predictEvents(evs, in, banks, true)
}

// PriorEntry is the event log line of a prior measurement in the given
// banks (the data is left out when larger than MaxLogData, as Extend
// does): prepended to keel-init's log it replays to the PCRs the slot sees.
func PriorEntry(p Prior, banks []crypto.Hash) (LogEntry, error) {
	if err := checkPCR(p.PCR); err != nil {
		return LogEntry{}, err
	}
	e := LogEntry{PCR: p.PCR, Type: p.Type, Description: "measured before keel-init (firmware event log)", Digests: map[string]string{}}
	for _, h := range banks {
		if _, err := bankAlg(h); err != nil || !h.Available() {
			return LogEntry{}, fmt.Errorf("PCR bank %v is not supported", h)
		}
		e.Digests[BankName(h)] = hex.EncodeToString(digest(h, p.Data))
	}
	if len(p.Data) <= MaxLogData {
		if utf8.Valid(p.Data) && !bytes.ContainsRune(p.Data, 0) { // UTF-16 load options go in hex
			s := string(p.Data)
			e.Data = &s
		} else {
			e.DataHex = hex.EncodeToString(p.Data)
		}
	}
	return e, nil
}

func predict(in BootMeasurement, banks []crypto.Hash, sep bool) (map[crypto.Hash]map[int][]byte, error) {
	return predictEvents(nil, in, banks, sep)
}

func predictEvents(prior []measurement, in BootMeasurement, banks []crypto.Hash, sep bool) (map[crypto.Hash]map[int][]byte, error) {
	evs, err := in.events()
	if err != nil {
		return nil, err
	}
	evs = append(prior, evs...)
	if sep {
		evs = append(evs, separator)
	}
	out := map[crypto.Hash]map[int][]byte{}
	for _, h := range banks {
		if _, err := bankAlg(h); err != nil || !h.Available() {
			return nil, fmt.Errorf("predict: PCR bank %v is not supported", h)
		}
		v := map[int][]byte{PCRBoot: make([]byte, h.Size()), PCRImage: make([]byte, h.Size())}
		for _, e := range evs {
			v[e.pcr] = extendValue(h, v[e.pcr], digest(h, e.data))
		}
		out[h] = v
	}
	return out, nil
}
