//go:build linux

package stage1

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/secureboot"
)

// kexecTrust is what a slot kernel must be signed by for keel-init to
// kexec it: under UEFI Secure Boot, the certificates of the firmware's db
// (the keys the running kernel's .platform keyring holds, the only ones a
// device keel enrolled trusts for kexec: package secureboot, "Slot kernels
// under Secure Boot"). nil when Secure Boot is off or there is no UEFI.
type kexecTrust struct {
	certs []*x509.Certificate
}

// readKexecTrust reads the firmware's Secure Boot state and db from
// efivarfs (mounted by openStore on UEFI boards). A db that cannot be read
// leaves the check to the kernel's own (logged).
func readKexecTrust(dir string, logf Logf) *kexecTrust {
	st, err := secureboot.ReadState(dir)
	if err != nil || !st.SecureBoot {
		if err == nil {
			why := "a development image (no_secure_boot), or Secure Boot disabled in the firmware"
			if st.SetupMode {
				why = "the firmware is in setup mode: no keys enrolled; keel secureboot enroll is the factory step"
			}
			logf("WARNING: UEFI Secure Boot is OFF (%s): the firmware starts any image from the ESP, so anyone who can write this disk can replace keel", why)
		}
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, uefi.VarFile(uefi.DB, uefi.ImageSecurityDatabaseGUID())))
	var certs []*x509.Certificate
	if err == nil && len(b) < 4 {
		err = errors.New("shorter than its attributes")
	}
	if err == nil {
		certs, err = secureboot.Certificates(b[4:])
	}
	if err != nil {
		logf("Secure Boot: on, but db cannot be read (%v): slot kernels are left to the kernel's own signature check", err)
		return nil
	}
	var names []string
	for _, c := range certs {
		names = append(names, fmt.Sprintf("%q", c.Subject.CommonName))
	}
	logf("Secure Boot: on; slot kernels must be signed by db: %s", strings.Join(names, ", "))
	return &kexecTrust{certs: certs}
}

// check refuses a kernel the running kernel would refuse to kexec, before
// anything is measured or handed over, with the reason and the fix.
func (k *kexecTrust) check(kernel io.ReaderAt, size int64) error {
	if k == nil {
		return nil
	}
	img := make([]byte, size)
	if _, err := kernel.ReadAt(img, 0); err != nil {
		return fmt.Errorf("reading the kernel back: %w", err)
	}
	if err := secureboot.VerifyKexec(img, k.certs); err != nil {
		return fmt.Errorf("Secure Boot is on, and the running kernel's lockdown would refuse to kexec this kernel (build the slot with secure_boot_keys: the image builder signs slot kernels with the db key): %w", err)
	}
	return nil
}
