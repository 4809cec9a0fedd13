package ubootenv

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// No MTD device can be had in CI (no mtdram/nandsim), so pin what the
// ioctls depend on: the structures must match the kernel's
// include/uapi/mtd/mtd-abi.h, and the request numbers encode their sizes.
func TestMTDABI(t *testing.T) {
	if got := unsafe.Sizeof(unix.MtdInfo{}); got != 32 {
		t.Errorf("sizeof(struct mtd_info_user) = %d, want 32", got)
	}
	if got := unsafe.Sizeof(unix.EraseInfo{}); got != 8 {
		t.Errorf("sizeof(struct erase_info_user) = %d, want 8", got)
	}
	size := func(req uint) uint { return (req >> 16) & 0x3FFF }
	for _, tc := range []struct {
		name string
		req  uint
		want uint
	}{
		{"MEMGETINFO", unix.MEMGETINFO, 32},
		{"MEMERASE", unix.MEMERASE, 8},
		{"MEMUNLOCK", unix.MEMUNLOCK, 8},
		{"MEMGETBADBLOCK", unix.MEMGETBADBLOCK, 8}, // __kernel_loff_t
	} {
		if got := size(tc.req); got != tc.want {
			t.Errorf("%s encodes a %d-byte argument, want %d", tc.name, got, tc.want)
		}
	}
	if unix.MTD_NORFLASH != 3 || unix.MTD_NANDFLASH != 4 {
		t.Errorf("MTD type constants changed")
	}
}
