package image

import (
	"bytes"
	"fmt"
	"os"

	"github.com/keelboot/keel/secureboot"
)

// signUKI Authenticode-signs the UKI at path in place with the db key of
// the Secure Boot key directory dir (package secureboot) and returns what
// signed it, for the log.
func signUKI(path, dir string) (string, error) {
	cert, key, err := secureboot.LoadKey(dir, secureboot.DB)
	if err != nil {
		return "", fmt.Errorf("image: secure_boot_keys: %w", err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("image: UKI: %w", err)
	}
	signed, err := secureboot.SignPE(img, cert, key)
	if err != nil {
		return "", fmt.Errorf("image: signing keel's UKI for Secure Boot: %w", err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		return "", fmt.Errorf("image: UKI: %w", err)
	}
	return fmt.Sprintf("signed by db %q", cert.Subject.CommonName), nil
}

// signKernel signs a slot kernel for kexec under Secure Boot with the db
// key of dir (secureboot.SignKernel) and says how, for the log.
func signKernel(kernel []byte, dir string) ([]byte, string, error) {
	cert, key, err := secureboot.LoadKey(dir, secureboot.DB)
	if err != nil {
		return nil, "", fmt.Errorf("secure_boot_keys: %w", err)
	}
	signed, err := secureboot.SignKernel(kernel, cert, key)
	if err != nil {
		return nil, "", fmt.Errorf("signing it with the db key for kexec under Secure Boot (a slot kernel must be an EFI-stub PE image; keep_kernel_signatures leaves kernels as given): %w", err)
	}
	if bytes.Equal(signed, kernel) {
		return signed, fmt.Sprintf("already signed by db %q", cert.Subject.CommonName), nil
	}
	return signed, fmt.Sprintf("signed by db %q", cert.Subject.CommonName), nil
}
