package vmkit

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/hugelgupf/vmtest/qemu"

	"github.com/keelboot/keel/format/datareport"
)

// Machine is one device: a disk and a UEFI variable store that persist
// across its power-ons (QEMU runs) and the reboots inside them.
type Machine struct {
	Art  *Artefacts
	Dir  string
	Disk string
	Vars string
	// Stick, if set, is a raw image attached as a second (read-only)
	// virtio disk, /dev/vdb in the guest: a USB stick with an update.
	Stick string
	// SecureBoot runs the board's Secure Boot firmware (enforcing once
	// keys are enrolled: Artefacts.Enrolment) instead of its plain one.
	SecureBoot bool
}

// NewMachine builds a disk with the given slots in dir and gives the
// machine its own copy of the UEFI variable store.
func NewMachine(ctx context.Context, art *Artefacts, dir string, slots map[string]SlotSpec) (*Machine, error) {
	m := &Machine{Art: art, Dir: dir, Disk: filepath.Join(dir, "disk.img"), Vars: filepath.Join(dir, "OVMF_VARS.fd")}
	if err := art.Disk(ctx, m.Disk, slots, nil); err != nil {
		return nil, fmt.Errorf("building the disk: %w", err)
	}
	if err := CopyVars(art.Board, m.Vars); err != nil {
		return nil, err
	}
	return m, nil
}

// Run is one power-on: QEMU runs until the guest powers off (reboots stay
// inside the run, as on a device) or the timeout.
type Run struct {
	VM *qemu.VM
	// StepTimeout bounds each wait for console output.
	StepTimeout time.Duration
	stop        func()
}

// PowerOn starts the machine with a fresh swtpm (its state persists in
// Dir), or none when the board has no TPM. fns add QEMU options (serial
// loggers, for example).
func (m *Machine) PowerOn(ctx context.Context, timeout time.Duration, fns ...qemu.Fn) (*Run, error) {
	sock, stop := "", func() {}
	if m.Art.Board.QEMU.TPM != "" {
		var err error
		if sock, stop, err = StartTPM(ctx, m.Dir); err != nil {
			return nil, err
		}
	}
	fns = append([]qemu.Fn{
		qemu.WithQEMUCommand(m.Art.Board.QEMU.Binary),
		// vmtest picks up VMTEST_KERNEL: this machine boots from its disk.
		qemu.WithKernel(""), qemu.WithInitramfs(""),
		qemu.WithQEMUArgs(QEMUArgs(m.Art.Board, m.Disk, m.Vars, sock, m.SecureBoot)...),
		qemu.WithQEMUArgs(m.stickArgs()...),
		qemu.WithVMTimeout(timeout),
	}, fns...)
	vm, err := qemu.StartContext(ctx, qemu.ArchUseEnvv, fns...)
	if err != nil {
		stop()
		return nil, err
	}
	return &Run{VM: vm, StepTimeout: 3 * time.Minute, stop: stop}, nil
}

// stickArgs attach the Stick, if any.
func (m *Machine) stickArgs() []string {
	if m.Stick == "" {
		return nil
	}
	return []string{"-drive", "file=" + m.Stick + ",format=raw,if=none,id=stick,readonly=on",
		"-device", "virtio-blk-pci,drive=stick"}
}

// Expect waits for s on the serial console and returns what it read.
func (r *Run) Expect(s string) (string, error) {
	out, err := r.VM.Console.Expect(expect.String(s), expect.WithTimeout(r.StepTimeout))
	if err != nil {
		return out, fmt.Errorf("waiting for %q: %w", s, err)
	}
	return out, nil
}

// ExpectRe waits for re and returns its submatches.
func (r *Run) ExpectRe(re *regexp.Regexp) ([]string, error) {
	out, err := r.VM.Console.Expect(expect.Regexp(re), expect.WithTimeout(r.StepTimeout))
	if err != nil {
		return nil, fmt.Errorf("waiting for %s: %w", re, err)
	}
	return re.FindStringSubmatch(out), nil
}

// Line matches the whole console line that contains s. Serial lines end
// in \r\r\n (the guest's and the host pty's newline translation).
func Line(s string) *regexp.Regexp {
	return regexp.MustCompile(`[^\r\n]*` + regexp.QuoteMeta(s) + `[^\r\n]*\r*\n`)
}

var (
	reSlot   = regexp.MustCompile(`KEEL-SLOT (\S+) (\S+) mode=(\S+)\r*\n`)
	reDone   = regexp.MustCompile(`KEEL-DONE rc=(\d+)\r*\n`)
	reStatus = regexp.MustCompile(`KEEL-STATUS (\{[^\r\n]*\})\r*\n`)
)

// Send types a line on the console.
func (r *Run) Send(line string) error {
	_, err := r.VM.Console.SendLine(line)
	return err
}

// Booted waits for a test slot to come up: its name, version and mode.
func (r *Run) Booted() (slot, version, mode string, err error) {
	m, err := r.ExpectRe(reSlot)
	if err != nil {
		return "", "", "", err
	}
	return m[1], m[2], m[3], nil
}

// command waits for the test init's prompt and sends a command.
func (r *Run) command(line string) error {
	if _, err := r.Expect("KEEL-READY"); err != nil {
		return err
	}
	return r.Send(line)
}

// Keel runs `keel ARGS` in the booted slot and returns its exit code.
func (r *Run) Keel(args string) (int, error) {
	if err := r.command("keel " + args); err != nil {
		return -1, err
	}
	m, err := r.ExpectRe(reDone)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(m[1])
}

// KeelOutput runs `keel ARGS` in the booted slot and returns its exit code
// and the console output up to its end (what the command printed).
func (r *Run) KeelOutput(args string) (int, string, error) {
	if err := r.command("keel " + args); err != nil {
		return -1, "", err
	}
	out, err := r.VM.Console.Expect(expect.Regexp(reDone), expect.WithTimeout(r.StepTimeout))
	if err != nil {
		return -1, out, fmt.Errorf("waiting for keel %s to finish: %w", args, err)
	}
	m := reDone.FindStringSubmatch(out)
	rc, err := strconv.Atoi(m[1])
	return rc, out, err
}

// SlotStatus and Status are `keel status --json`.
type SlotStatus struct {
	State     string `json:"state"`
	TriesLeft int    `json:"tries_left"`
	Version   string `json:"version"`
	Reason    string `json:"reason"`
	// UncountedEnds: boots of the trial in a row that ended without
	// using their try.
	UncountedEnds int `json:"uncounted_ends"`
}

// Status is the JSON form of `keel status --json`.
type Status struct {
	Active     *string               `json:"active"`
	Trial      *string               `json:"trial"`
	Installing *string               `json:"installing"`
	Generation uint64                `json:"generation"`
	Slots      map[string]SlotStatus `json:"slots"`
	LastBoot   struct {
		Slot   string `json:"slot"`
		Mode   string `json:"mode"`
		Reason string `json:"reason"`
	} `json:"last_boot"`
	// Booted is what the running system was booted as (keel status on a
	// live device), LastFallback the record's last fallback (nil: none).
	Booted *struct {
		ByKeel bool   `json:"by_keel"`
		Slot   string `json:"slot"`
		Mode   string `json:"mode"`
	} `json:"booted"`
	LastFallback *struct {
		FailedSlot string `json:"failed_slot"`
		BootedSlot string `json:"booted_slot"`
		Mode       string `json:"mode"`
		Reason     string `json:"reason"`
	} `json:"last_fallback"`
	// LastEnd is how the last boot keel-init handed over ended (nil:
	// not known).
	LastEnd *struct {
		How    string `json:"how"`
		Slot   string `json:"slot"`
		Mode   string `json:"mode"`
		Detail string `json:"detail"`
	} `json:"last_end"`
	// Data is what stage 2 told the OS about the data partition (nil:
	// no report: the root has no /data, or an older stage 2).
	Data *struct {
		datareport.Report
		Error string `json:"error"`
	} `json:"data"`
	// Raw is the JSON as the slot printed it.
	Raw string `json:"-"`
}

// Status runs `keel status --json` in the booted slot.
func (r *Run) Status() (Status, error) {
	var s Status
	if err := r.command("status"); err != nil {
		return s, err
	}
	m, err := r.ExpectRe(reStatus)
	if err != nil {
		return s, err
	}
	s.Raw = m[1]
	if err := json.Unmarshal([]byte(m[1]), &s); err != nil {
		return s, fmt.Errorf("status: %w in %q", err, m[1])
	}
	return s, nil
}

// Reboot reboots the slot (the firmware runs keel-init again).
func (r *Run) Reboot() error { return r.command("reboot") }

// PowerOff powers the slot off and waits for QEMU to exit.
func (r *Run) PowerOff() error {
	if err := r.command("poweroff"); err != nil {
		return err
	}
	return r.Wait()
}

// Wait waits for QEMU to exit and stops the TPM.
func (r *Run) Wait() error {
	err := r.VM.Wait()
	r.stop()
	return err
}

// Kill stops QEMU now (after a failure) and waits for it.
func (r *Run) Kill() {
	if !r.VM.Waited() {
		r.VM.Kill()
		r.VM.Wait()
	}
	r.stop()
}
