//go:build linux

package ubootenv

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mtdDevice is a Linux MTD character device (/dev/mtdN). Like libubootenv
// (uboot_env.c mtdread/mtdwrite; uboot_mtd.c in later versions) it reads
// and writes with pread/pwrite, erases with MEMERASE, asks MEMGETBADBLOCK on
// NAND, and unlocks (MEMUNLOCK, failure ignored) before erasing or writing.
// It does not lock again afterwards: libubootenv >= 0.3.3 made re-locking
// optional because it breaks some SPI NOR chips.
type mtdDevice struct {
	f    *os.File
	info unix.MtdInfo
}

var (
	_ Device     = (*mtdDevice)(nil)
	_ eraser     = (*mtdDevice)(nil)
	_ badBlocker = (*mtdDevice)(nil)
)

func ioctl(f *os.File, req uint, arg unsafe.Pointer) (uintptr, error) {
	ctl, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var r uintptr
	var errno unix.Errno
	if err := ctl.Control(func(fd uintptr) {
		r, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

func openMTD(f *os.File) (Device, devKind, int64, error) {
	d := &mtdDevice{f: f}
	if _, err := ioctl(f, unix.MEMGETINFO, unsafe.Pointer(&d.info)); err != nil {
		return nil, 0, 0, fmt.Errorf("MEMGETINFO: %w", err)
	}
	switch d.info.Type {
	case unix.MTD_NORFLASH:
		return d, kindNOR, int64(d.info.Writesize), nil
	case unix.MTD_NANDFLASH:
		return d, kindNAND, int64(d.info.Writesize), nil
	}
	return nil, 0, 0, fmt.Errorf("MTD type %d; libubootenv and keel support NOR (%d) and NAND (%d)", d.info.Type, unix.MTD_NORFLASH, unix.MTD_NANDFLASH)
}

func (d *mtdDevice) unlock(off, n int64) {
	ei := unix.EraseInfo{Start: uint32(off), Length: uint32(n)}
	_, _ = ioctl(d.f, unix.MEMUNLOCK, unsafe.Pointer(&ei))
}

func (d *mtdDevice) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

func (d *mtdDevice) WriteAt(p []byte, off int64) (int, error) {
	es := int64(d.info.Erasesize)
	start := off / es * es
	end := (off + int64(len(p)) + es - 1) / es * es
	d.unlock(start, end-start)
	return d.f.WriteAt(p, off)
}

func (d *mtdDevice) Erase(off, n int64) error {
	if off < 0 || n < 0 || off+n > int64(d.info.Size) {
		return fmt.Errorf("%s: erase [0x%x, +0x%x) outside the 0x%x-byte MTD", d.f.Name(), off, n, d.info.Size)
	}
	d.unlock(off, n)
	ei := unix.EraseInfo{Start: uint32(off), Length: uint32(n)}
	if _, err := ioctl(d.f, unix.MEMERASE, unsafe.Pointer(&ei)); err != nil {
		return fmt.Errorf("%s: MEMERASE [0x%x, +0x%x): %w", d.f.Name(), off, n, err)
	}
	return nil
}

// Sync does nothing: MTD writes are synchronous (and mtdchar has no fsync).
func (d *mtdDevice) Sync() error { return nil }

func (d *mtdDevice) Size() (int64, error) { return int64(d.info.Size), nil }

func (d *mtdDevice) EraseSize() int64 { return int64(d.info.Erasesize) }

func (d *mtdDevice) IsBadBlock(off int64) (bool, error) {
	if d.info.Type != unix.MTD_NANDFLASH {
		return false, nil
	}
	o := off
	r, err := ioctl(d.f, unix.MEMGETBADBLOCK, unsafe.Pointer(&o))
	if err != nil {
		return false, fmt.Errorf("%s: MEMGETBADBLOCK 0x%x: %w", d.f.Name(), off, err)
	}
	return r > 0, nil
}

// lockFile is libubootenv's lock (uboot_env.c lockname), taken by
// fw_printenv and fw_setenv around their whole run; Storage takes it around
// each Read and Write of a Storage made by Open.
const lockFile = "/var/lock/fw_printenv.lock"

// lockEnv takes the libubootenv lock. If the lock file cannot be opened,
// it goes on without it, as libubootenv does.
func lockEnv(path string) (unlock func()) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return func() {}
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}
}
