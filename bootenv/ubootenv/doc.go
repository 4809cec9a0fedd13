// Package ubootenv reads and writes U-Boot environments, byte-compatible
// with U-Boot itself and with libubootenv (fw_printenv / fw_setenv of the
// libubootenv-tool package) and mkenvimage (u-boot-tools).
//
// # Format
//
// A copy is a header and a data area; the configured size includes the
// header. A single copy is CRC32 (IEEE, little-endian, over the whole data
// area) followed by the data. A redundant env has two copies, each CRC32 +
// one flag byte + data. The data is a list of "name=value\0" entries ended
// by an empty entry ("\0"), then padding up to the size. Readers stop at the
// empty entry and never look at the padding: U-Boot pads with zeros,
// mkenvimage with 0xFF, libubootenv with whatever its buffer held (the
// bytes of the copy it had just read, in practice). keel pads with zeros.
//
// # Redundant copies
//
// A copy whose CRC fails is skipped and the other one used. When both are
// valid the flag byte decides (see FlagKind):
//
//   - counter flags (files, block devices, NAND): the higher flag wins,
//     except that 0x00 beats 0xFF; a write goes to the other copy with the
//     flag plus one;
//   - boolean flags (NOR flash): ACTIVE=1 beats OBSOLETE=0; equal flags pick
//     the first copy; an erased flag (0xFF) wins over anything else. A write
//     erases the other copy, writes it with flag 1, then clears the old
//     copy's flag to 0 in place.
//
// Either way the current copy is not touched until the new one is written,
// synced and read back, and the flag byte is outside the CRC, so a power
// cut at any point leaves the old env or the new one readable, never a mix
// and never nothing (see the power-cut tests). A single copy is rewritten in
// place and is not power-safe: a cut mid-write leaves ErrCorrupt.
//
// # Configuration
//
// Config is libubootenv's fw_env.config (see ParseConfig for the number
// syntax: sizes are hexadecimal even without 0x). Open opens the devices
// and picks the flag kind from them, as libubootenv does; OpenDevices takes
// any Device, for tests and for an env inside a disk image.
//
// # Differences from the other implementations worth knowing
//
//   - U-Boot's import (lib/hashtable.c himport_r) treats a backslash in a
//     value as an escape and deletes a variable whose value is empty, and
//     U-Boot's saveenv escapes backslashes; libubootenv and keel store
//     values as they are. Values meant for U-Boot should avoid backslashes
//     and empty values.
//   - A missing device is a configuration error, not a blank env: only
//     ErrBlank matches fs.ErrNotExist.
//   - When no copy is valid and one would be valid at another size or in
//     the other layout, Read says so (ErrCorrupt with the fix) and Write
//     refuses, instead of overwriting an env U-Boot can still read.
package ubootenv
