package sysinit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// BootParamsPath is where x86 Linux shows the boot parameters ("zero
// page") its loader handed it (arch/x86/kernel/ksysfs.c).
const BootParamsPath = "/sys/kernel/boot_params/data"

// Offsets in struct boot_params (Documentation/arch/x86/boot.rst, "The
// real-mode kernel header": the setup header starts at 0x1f1).
const (
	offTypeOfLoader = 0x210
	// loaderKexec is type_of_loader's loader id for kexec-tools, which
	// the kernel's kexec_file_load sets too (arch/x86/kernel/kexec-bzimage64.c:
	// 0x0D << 4): the high nibble is the id, the low one a version.
	loaderKexec = 0xD
)

// KexecLoaded reports whether the boot parameters data (BootParamsPath's
// bytes) say the kernel was started by kexec, not by a firmware or boot
// loader: type_of_loader's id is 0xD. Only type_of_loader is read: the
// kernel's EFI stub, which starts keel's kernel from its UKI, fills in
// little else (no boot flag, no "HdrS"). It is an error when data is too
// short to hold it.
func KexecLoaded(data []byte) (bool, error) {
	if len(data) <= offTypeOfLoader {
		return false, fmt.Errorf("%s: %d bytes: too short for x86 boot parameters", BootParamsPath, len(data))
	}
	return data[offTypeOfLoader]>>4 == loaderKexec, nil
}

// StartedByKexec reports whether this kernel was started by kexec (the
// OS restarted into keel-init without a reset), read from the boot
// parameters at path (BootParamsPath). Only x86 says: elsewhere (no
// file) it returns false and an error wrapping fs.ErrNotExist.
func StartedByKexec(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4096)) // struct boot_params is one page
	if err != nil {
		return false, err
	}
	return KexecLoaded(data)
}

// NoBootParams reports whether err says the kernel shows no boot
// parameters (not x86).
func NoBootParams(err error) bool { return errors.Is(err, fs.ErrNotExist) }
