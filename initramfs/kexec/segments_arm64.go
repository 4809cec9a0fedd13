//go:build linux && arm64

package kexec

import (
	"os"

	"github.com/u-root/u-root/pkg/boot/linux"
)

// loadSegments loads an arm64 Image with kexec_load(2), for kernels without
// kexec_file_load: u-root's loader places the Image text_offset bytes after
// a 2 MiB boundary (Documentation/arm64/booting.rst), the initrd and a copy
// of the running device tree (/sys/firmware/fdt) with /chosen's bootargs
// and linux,initrd-start/-end set, and a trampoline that enters the kernel
// with x0 = the device tree, as booting.rst asks.
func loadSegments(kernel, initrd *os.File, cmdline string) error {
	return linux.KexecLoad(kernel, initrd, cmdline, nil, nil)
}
