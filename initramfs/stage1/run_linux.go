//go:build linux

package stage1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/initramfs/sysinit"
	"github.com/keelboot/keel/manifest"
	"golang.org/x/sys/unix"
)

// Run is stage 1 on a device: it loads the modules, reads the board and
// the trusted keys, opens the store, the TPM and the seed, and runs Boot
// with the device's loader and kexec. It returns only when nothing was
// handed over, with the reason.
func Run(ctx context.Context, logf Logf) error {
	logf("stage 1")
	// From here a hang in keel-init (or in a development build's debug
	// shell) is reset; the kexec arms the watchdog again for the slot.
	b, wd, err := sysinit.Start(logf)
	if err != nil {
		return err
	}
	disks := &bootDisks{board: b}
	store, storeArg, err := openStore(b, disks)
	if err != nil {
		return fmt.Errorf("opening the boot state store: %w", err)
	}
	logf("board %s, store %s", b.Name, storeArg)
	// The bytes are kept for the slot's OS (layout.TrustedKeysRunPath):
	// exactly the file of keel's initramfs, comments included.
	keys, err := os.ReadFile(layout.TrustedKeysPath)
	var trusted []manifest.PublicKey
	if err == nil {
		trusted, err = manifest.ParsePublicKeys(keys, layout.TrustedKeysPath)
	} else {
		err = fmt.Errorf("manifest: trusted keys: %w", err)
	}
	if err != nil {
		// Without trusted keys no slot can be verified: every slot fails
		// with this reason and the boot stops with it.
		logf("no trusted keys: %v", err)
		keys = nil
	} else {
		ids := make([]string, len(trusted))
		for i, k := range trusted {
			ids[i] = k.ID()
		}
		logf("trusted keys: %s", strings.Join(ids, ", "))
	}
	loader := deviceLoader{logf: logf, trusted: trusted, keysErr: err, board: b.Name, disks: disks}
	if storeArg.Kind == cmdline.StoreEFIVars {
		loader.kexec = readKexecTrust(efivarsDir, logf)
	}
	cfg := Config{Slots: b.Slots, Store: storeArg, TPMRequired: b.TPMRequired, TrustedKeys: keys, NewID: randomID,
		Policy: bootenv.Policy{MaxUncounted: b.UncountedEnds}, Ends: newDeviceEnds(b)}
	if m, err := openMeasurer(b, logf); err != nil && b.TPMRequired {
		logf("no TPM, and board %s requires one: no slot can boot: %v", b.Name, err)
	} else if err != nil {
		logf("no TPM (the boot is unmeasured, rollback not enforced): %v", err)
	} else {
		cfg.Measurer = m
	}
	cfg.Recoverer = &deviceRecoverer{logf: logf, trusted: trusted, board: b.Name, disks: disks, wd: wd}
	r, err := Boot(ctx, cfg, store, loader, kexecer{logf: logf, board: b}, logf)
	vars := map[string]string{}
	for _, v := range bootenv.Encode(r) {
		vars[v.Name] = v.Value
	}
	if state, jerr := json.Marshal(vars); jerr == nil && len(r.Slots) > 0 {
		logf("KEEL-STATE %s", state)
	}
	if err == nil {
		return errors.New("kexec returned")
	}
	if errors.Is(err, ErrRetry) {
		// Environmental (a slow disk, an I/O error, no memory for kexec,
		// a failing TPM): nothing was marked bad. Reboot to try again,
		// unless it keeps happening: then stop in a defined state.
		if r.Transient >= 4*bootenv.MaxTransient {
			return fmt.Errorf("ENVIRONMENTAL ERRORS in %d boots in a row, giving up until the next power-on: %w", r.Transient, err)
		}
		logf("%v", err)
		sysinit.Halt(logf, "rebooting to retry", unix.LINUX_REBOOT_CMD_RESTART)
	}
	if IsNoBootableSlot(err) {
		return fmt.Errorf("NO BOOTABLE SLOT: %s; the state is kept for service (keel status)", strings.TrimPrefix(err.Error(), "no bootable slot: "))
	}
	return err
}

// randomID draws a trial id in keel-init (Config.NewID) with getrandom(2)
// without blocking: PID 1 never hangs on an entropy pool that is not ready
// (crypto/rand would wait for it, and stop the program on an error). The
// pool's bytes when it is ready, else GRND_INSECURE's (Linux 5.6+): a
// trial id needs only to differ from every earlier one, it protects
// nothing.
func randomID() (string, error) {
	b := make([]byte, bootenv.IDBytes)
	n, err := unix.Getrandom(b, unix.GRND_NONBLOCK)
	if errors.Is(err, unix.EAGAIN) {
		n, err = unix.Getrandom(b, unix.GRND_INSECURE)
	}
	if err != nil {
		return "", fmt.Errorf("getrandom: %w", err)
	}
	if n != len(b) {
		return "", fmt.Errorf("getrandom: %d of %d bytes", n, len(b))
	}
	return bootenv.HexID(b), nil
}
