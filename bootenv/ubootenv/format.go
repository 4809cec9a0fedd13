package ubootenv

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io/fs"
)

// Header sizes: a single copy is CRC32 (4 bytes) + data; a redundant copy is
// CRC32 + flag byte + data (libubootenv uboot_private.h struct
// uboot_env_noredund / uboot_env_redund; U-Boot include/env_internal.h
// env_t). The CRC is IEEE CRC-32, little-endian, over the whole data area
// (header excluded, padding included). The flag byte is not covered.
const (
	crcSize       = 4
	flagOffset    = 4
	hdrSingle     = 4
	hdrRedundant  = 5
	flagActive    = 1 // ENV_REDUND_ACTIVE (U-Boot env/flash.c)
	flagObsolete  = 0 // ENV_REDUND_OBSOLETE
	flagErasedNOR = 0xFF
)

func headerSize(redundant bool) int {
	if redundant {
		return hdrRedundant
	}
	return hdrSingle
}

// FlagKind is how the flag byte of a redundant env says which copy is
// current. A single-copy env has no flag.
type FlagKind int

const (
	// FlagCounter: the flag is a serial number; each write goes to the
	// other copy with the flag plus one, and the copy with the higher flag
	// is current, except that 0x00 beats 0xFF (the counter wrapped). This is
	// libubootenv's FLAGS_INCREMENTAL and U-Boot's env_check_redund
	// (env/common.c), used for files, block devices, NAND and UBI.
	FlagCounter FlagKind = iota
	// FlagBoolean: NOR flash, where a byte can be cleared in place without
	// an erase. The new copy is written with flag 1 (ACTIVE), then the old
	// copy's flag is cleared to 0 (OBSOLETE) in place. libubootenv's
	// FLAGS_BOOLEAN (uboot_env.c libuboot_env_store, set_obsolete_flag) and
	// U-Boot env/flash.c env_flash_save / env_flash_init.
	FlagBoolean
)

func (k FlagKind) String() string {
	switch k {
	case FlagCounter:
		return "counter"
	case FlagBoolean:
		return "boolean"
	}
	return fmt.Sprintf("FlagKind(%d)", int(k))
}

// Errors. They are constants: no package state.
const (
	// ErrBlank: no env was ever written; every copy is erased (all 0xFF)
	// or all zeros. errors.Is(err, fs.ErrNotExist) holds for it.
	ErrBlank = sentinel("no U-Boot env stored (storage is blank)")
	// ErrCorrupt: every copy fails its CRC (or holds no valid entries) and
	// not all of them are blank.
	ErrCorrupt = sentinel("U-Boot env corrupt")
	// ErrTooLarge: the env does not fit in the configured data area.
	ErrTooLarge = sentinel("U-Boot env too large")
)

type sentinel string

func (e sentinel) Error() string { return string(e) }

// Is makes ErrBlank match fs.ErrNotExist.
func (e sentinel) Is(target error) bool {
	return e == ErrBlank && target == fs.ErrNotExist
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// encodeImage builds one copy: header then data area, size bytes in all.
func encodeImage(e *Env, size int64, redundant bool, flag byte) ([]byte, error) {
	hdr := headerSize(redundant)
	data, err := encodeData(e, int(size)-hdr)
	if err != nil {
		return nil, err
	}
	img := make([]byte, hdr, size)
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(data))
	if redundant {
		img[flagOffset] = flag
	}
	return append(img, data...), nil
}

// copyState is what was found in one copy.
type copyState struct {
	raw     []byte
	readErr error
	crcOK   bool
	flag    byte
	env     *Env  // parsed, when crcOK
	bad     error // why the copy is not usable (CRC, parse)
}

func (c *copyState) valid() bool { return c.readErr == nil && c.crcOK && c.env != nil }

// decodeCopy checks and parses one copy.
func decodeCopy(raw []byte, redundant bool) copyState {
	st := copyState{raw: raw}
	hdr := headerSize(redundant)
	if len(raw) <= hdr {
		st.bad = fmt.Errorf("copy is %d bytes, too short for the header", len(raw))
		return st
	}
	if redundant {
		st.flag = raw[flagOffset]
	}
	stored, computed := le32(raw), crc32.ChecksumIEEE(raw[hdr:])
	if stored != computed {
		st.bad = fmt.Errorf("CRC mismatch (stored 0x%08x, computed 0x%08x)", stored, computed)
		return st
	}
	st.crcOK = true
	env, err := parseData(raw[hdr:])
	if err != nil {
		st.bad = fmt.Errorf("CRC matches but the data is not an env: %v", err)
		return st
	}
	st.env = env
	return st
}

// isBlank reports a copy that was never written: all 0xFF (erased flash,
// mkenvimage-style padding of nothing) or all zeros (a fresh file or
// partition).
func isBlank(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	b := raw[0]
	if b != 0x00 && b != 0xFF {
		return false
	}
	for _, c := range raw {
		if c != b {
			return false
		}
	}
	return true
}

// current picks the copy to use among those that are valid; -1 if none.
func current(kind FlagKind, st []copyState) int {
	if len(st) == 1 {
		if st[0].valid() {
			return 0
		}
		return -1
	}
	v0, v1 := st[0].valid(), st[1].valid()
	switch {
	case v0 && !v1:
		return 0
	case v1 && !v0:
		return 1
	case !v0 && !v1:
		return -1
	}
	f0, f1 := st[0].flag, st[1].flag
	switch kind {
	case FlagBoolean:
		// U-Boot env/flash.c env_flash_init. libubootenv's
		// libuboot_load agrees on every pair that U-Boot, libubootenv or
		// keel write; for an unrecognized pair (a bit flip) U-Boot takes
		// the first copy and libubootenv the higher flag. keel follows
		// U-Boot, as it is what boots.
		switch {
		case f0 == flagActive && f1 == flagObsolete:
			return 0
		case f0 == flagObsolete && f1 == flagActive:
			return 1
		case f0 == f1:
			return 0
		case f0 == flagErasedNOR:
			return 0
		case f1 == flagErasedNOR:
			return 1
		}
		return 0
	default:
		// U-Boot env/common.c env_check_redund; libubootenv
		// libuboot_load FLAGS_INCREMENTAL.
		switch {
		case f0 == 0xFF && f1 == 0:
			return 1
		case f1 == 0xFF && f0 == 0:
			return 0
		case f1 > f0:
			return 1
		}
		return 0 // f0 > f1, or equal ("almost impossible")
	}
}
