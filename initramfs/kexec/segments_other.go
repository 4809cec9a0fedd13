//go:build linux && !arm64

package kexec

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// loadSegments: keel has no kexec_load loader for this architecture; its
// kernels must have kexec_file_load (CONFIG_KEXEC_FILE).
func loadSegments(kernel, initrd *os.File, cmdline string) error {
	return fmt.Errorf("no kexec_load loader for %s: the kernel needs CONFIG_KEXEC_FILE: %w", runtime.GOARCH, unix.ENOSYS)
}
