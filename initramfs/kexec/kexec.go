//go:build linux

// Package kexec hands the machine to a slot kernel: it copies kernel and
// initrd into memfds while checking them against the signed manifest's
// digests (what kexec loads is exactly what was hashed), appends files to
// the initrd for the slot, and loads and executes the kernel with
// kexec_file_load(2) (kexec_load(2) where the kernel lacks it: arm64) and
// reboot(LINUX_REBOOT_CMD_KEXEC).
package kexec

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/cpio"
	"github.com/keelboot/keel/manifest"
)

// VerifiedCopy copies r into a memfd while hashing it and checks the
// digest and size against want: what kexec loads is exactly what was
// hashed. It never reads more than want.Size bytes (plus one, to notice a
// longer input).
func VerifiedCopy(name string, r io.Reader, want manifest.Digest) (*os.File, error) {
	fd, err := unix.MemfdCreate("keel-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:keel-"+name)
	if err := manifest.Check(name, io.TeeReader(r, f), want); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// File is a file AppendFiles hands to the slot.
type File struct {
	// Name is the path in the archive, relative (keel/eventlog.jsonl).
	Name string
	// Perm is the permission bits the kernel gives the unpacked file.
	Perm uint32
	Data []byte
}

// AppendFiles appends an uncompressed newc archive holding files to the
// initrd in f: the kernel unpacks concatenated archives, each starting
// 4-byte aligned, and a later archive's file replaces an earlier one's.
func AppendFiles(f *os.File, files ...File) error {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	var a cpio.Archive
	for _, file := range files {
		if err := a.File(file.Name, file.Perm, file.Data); err != nil {
			return err
		}
	}
	seg, err := a.Bytes()
	if err != nil {
		return err
	}
	pad := make([]byte, (4-end%4)%4)
	_, err = f.Write(append(pad, seg...))
	return err
}

// Load loads kernel and initrd with the command line (kexec_file_load).
// A kernel built without kexec_file_load (ENOSYS: Debian's arm64 6.1 has
// CONFIG_KEXEC_FILE off) gets them through kexec_load instead, where the
// architecture has a loader for it (loadSegments).
func Load(kernel, initrd *os.File, cmdline string) error {
	if err := unix.KexecFileLoad(int(kernel.Fd()), int(initrd.Fd()), cmdline, 0); errors.Is(err, unix.ENOSYS) {
		if err := loadSegments(kernel, initrd, cmdline); err != nil {
			return fmt.Errorf("kexec_load (the running kernel has no kexec_file_load): %w", err)
		}
		loadedSegments = true
		return nil
	} else if err != nil {
		if errors.Is(err, unix.ENOKEY) || errors.Is(err, unix.EKEYREJECTED) || errors.Is(err, unix.EBADMSG) {
			// KEXEC_SIG (kernel/kexec_file.c): under lockdown the
			// kernel must be signed by a key of the running kernel's
			// keyrings (.builtin, .secondary, .platform = UEFI db).
			return fmt.Errorf("kexec_file_load: the running kernel refused the slot kernel's signature (Secure Boot lockdown: it takes kernels signed by a key of its keyrings, the firmware's db among them): %w", err)
		}
		return fmt.Errorf("kexec_file_load: %w", err)
	}
	return nil
}

// loadedSegments: Load used kexec_load, which Unload must undo.
var loadedSegments bool

// Unload drops a loaded kernel.
func Unload() error {
	if loadedSegments {
		// kexec_load(2) with no segments unloads.
		if _, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0); errno != 0 {
			return fmt.Errorf("kexec_load unload: %w", errno)
		}
		loadedSegments = false
		return nil
	}
	return unix.KexecFileLoad(-1, -1, "", unix.KEXEC_FILE_UNLOAD)
}

// Exec syncs and jumps to the loaded kernel. It returns only on failure,
// with an error that says it is environmental (the kernel was loaded and
// verified; the jump itself failed): the slot is not at fault.
func Exec() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		return execError{fmt.Errorf("reboot(KEXEC): %w", err)}
	}
	return execError{errors.New("reboot(KEXEC) returned")}
}

// execError is a failed jump: environmental (see stage1.IsEnvironmental).
type execError struct{ err error }

func (e execError) Error() string       { return e.err.Error() }
func (e execError) Unwrap() error       { return e.err }
func (e execError) Environmental() bool { return true }
