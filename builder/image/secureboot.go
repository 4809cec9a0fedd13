package image

import (
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
