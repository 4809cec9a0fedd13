package tpm

import (
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DefaultDevice is the kernel's TPM resource manager device.
const DefaultDevice = "/dev/tpmrm0"

// Open opens a TPM: a character device such as /dev/tpmrm0 (linuxtpm) or a
// swtpm unix socket (linuxudstpm, one connection per command). An empty
// path means DefaultDevice.
func Open(path string) (transport.TPMCloser, error) {
	if path == "" {
		path = DefaultDevice
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("TPM: %w", err)
	}
	if fi.Mode()&os.ModeSocket != 0 {
		return OpenSocket(path)
	}
	return OpenDevice(path)
}

// OpenDevice opens a TPM character device (use /dev/tpmrm0, the resource
// manager, not /dev/tpm0, so handles do not leak between users).
func OpenDevice(path string) (transport.TPMCloser, error) {
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("TPM %s: %w", path, err)
	}
	return t, nil
}

// OpenSocket opens swtpm's unix socket (swtpm socket --server type=unixio,path=...).
func OpenSocket(path string) (transport.TPMCloser, error) {
	t, err := linuxudstpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("swtpm %s: %w", path, err)
	}
	return t, nil
}
