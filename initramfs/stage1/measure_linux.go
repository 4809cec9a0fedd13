//go:build linux

package stage1

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/tpm"
)

// tpmMeasurer is the Measurer over a TPM (package tpm): PCRs 8/9 with a
// JSON-lines event log, and the anti-rollback NV counter.
type tpmMeasurer struct {
	t    transport.TPMCloser
	m    *tpm.Measurer
	logf Logf

	mu      sync.Mutex
	log     bytes.Buffer // every line so far: what the slot gets
	counter *uint64      // read once per boot
	locked  bool         // Lock ran
}

// openMeasurer opens the TPM (waiting a little for its device when the
// board requires one) and starts the event log at layout.EventLogPath.
func openMeasurer(b boards.Board, logf Logf) (*tpmMeasurer, error) {
	wait := 200 * time.Millisecond
	if b.TPMRequired {
		// The board has a TPM: give its driver time to probe.
		wait = 15 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Stat(tpm.DefaultDevice); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t, err := tpm.Open(tpm.DefaultDevice)
	if err != nil {
		return nil, err
	}
	tm := &tpmMeasurer{t: t, logf: logf}
	var w io.Writer = &tm.log
	if err := os.MkdirAll(filepath.Dir(layout.EventLogPath), 0o755); err == nil {
		if f, err := os.OpenFile(layout.EventLogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			w = io.MultiWriter(&tm.log, f) // stays open until kexec
		} else {
			logf("warning: event log: %v", err)
		}
	}
	if tm.m, err = tpm.NewMeasurer(t, w); err != nil {
		t.Close()
		return nil, err
	}
	names := ""
	for i, h := range tm.m.Banks() {
		if i > 0 {
			names += ","
		}
		names += tpm.BankName(h)
	}
	logf("TPM %s: PCR banks %s, event log %s", tpm.DefaultDevice, names, layout.EventLogPath)
	// What ran before keel-init may have measured into PCR 8/9 (the Linux
	// EFI stub measures a UKI's initrd into PCR 9): say where they start.
	if v, err := tpm.ReadPCRs(t, []crypto.Hash{crypto.SHA256}, []int{tpm.PCRBoot, tpm.PCRImage}); err == nil {
		logf("PCRs at start (sha256): 8=%x 9=%x", v[crypto.SHA256][tpm.PCRBoot], v[crypto.SHA256][tpm.PCRImage])
	}
	return tm, nil
}

func (tm *tpmMeasurer) Measure(img *Image, d bootenv.Decision, cmdline string) error {
	in := tpm.BootMeasurement{ManifestBytes: img.ManifestBytes, Slot: img.Slot, Cmdline: cmdline, Mode: string(d.Mode)}
	var err error
	if in.KernelDigest, err = hex.DecodeString(img.Manifest.Kernel.SHA256); err != nil {
		return fmt.Errorf("kernel digest: %w", err)
	}
	if in.InitrdDigest, err = hex.DecodeString(img.Manifest.Initrd.SHA256); err != nil {
		return fmt.Errorf("initrd digest: %w", err)
	}
	if v := img.Manifest.Root.Verity; v != nil {
		if in.RootHash, err = hex.DecodeString(v.RootHash); err != nil {
			return fmt.Errorf("verity root hash: %w", err)
		}
	}
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tpm.MeasureBoot(tm.m, in)
}

func (tm *tpmMeasurer) Cap() error {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tpm.Cap(tm.m)
}

func (tm *tpmMeasurer) Separator() error {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tpm.Separator(tm.m)
}

// EventLog returns the log so far plus the line Separator will write: the
// slot's copy is taken before kexec_file_load, the separator is extended
// after it, right before the jump.
func (tm *tpmMeasurer) EventLog() []byte {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	e := tpm.LogEntry{PCR: tpm.PCRBoot, Type: tpm.EventSeparator, Description: "handoff to the slot kernel (kexec)",
		Digests: map[string]string{}}
	for _, h := range tm.m.Banks() {
		d := h.New()
		d.Write([]byte(tpm.SeparatorData))
		e.Digests[tpm.BankName(h)] = hex.EncodeToString(d.Sum(nil))
	}
	data := tpm.SeparatorData
	e.Data = &data
	line, _ := json.Marshal(e)
	out := append(bytes.Clone(tm.log.Bytes()), line...)
	return append(out, '\n')
}

// MinSecurityVersion is the anti-rollback floor (tpm.EnsureCounter:
// the counter and its floor record settled on first use, before anything
// is measured: created, migrated from an older keel's layout, or
// re-created if the OS deleted or replaced them, never below the floor
// keel-init set). Tampering is reported with a KEEL-TAMPER line on the
// console that says what was found and which floor keel-init chose;
// repairs that failed with a WARNING line.
func (tm *tpmMeasurer) MinSecurityVersion() (uint64, error) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.counter != nil {
		return *tm.counter, nil
	}
	st, err := tpm.EnsureCounter(tm.t, tpm.CounterIndex)
	if err != nil {
		return 0, err
	}
	switch {
	case st.Tampered != "":
		tm.logf("KEEL-TAMPER %s; the anti-rollback floor is %d", st.Tampered, st.Floor)
	case st.Migrated:
		tm.logf("anti-rollback counter migrated to keel's write policy in the %s hierarchy (only keel-init, before its first measurement, can raise it now)", st.Hierarchy)
	case st.Created:
		tm.logf("anti-rollback counter created in the %s hierarchy", st.Hierarchy)
	}
	for _, w := range st.Warnings {
		tm.logf("WARNING: anti-rollback counter: %s", w)
	}
	tm.counter = &st.Floor
	tm.logf("anti-rollback counter: %d (%s hierarchy)", st.Floor, st.Hierarchy)
	return st.Floor, nil
}

// Advance raises the counter to v (a normal boot of a committed slot).
func (tm *tpmMeasurer) Advance(v uint64) error {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.locked {
		return fmt.Errorf("the counter is already write-locked for this boot")
	}
	if tm.counter != nil && *tm.counter >= v {
		return nil
	}
	got, err := tpm.AdvanceTo(tm.t, tpm.CounterIndex, v)
	if err != nil {
		return err
	}
	tm.counter = &got
	tm.logf("anti-rollback counter advanced to %d", got)
	return nil
}

// Lock write-locks the counter and disables the platform hierarchy, once
// per boot.
func (tm *tpmMeasurer) Lock() error {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.locked {
		return nil
	}
	tm.locked = true
	err := tpm.LockCounter(tm.t, tpm.CounterIndex)
	if ok, perr := tpm.DisablePlatformHierarchy(tm.t); ok {
		tm.logf("platform hierarchy disabled until the next TPM reset")
	} else {
		// Firmware already disabled it, or set its authorization.
		tm.logf("platform hierarchy left as it is (the firmware holds it; the counter lives in the owner hierarchy): %v", perr)
	}
	return err
}
