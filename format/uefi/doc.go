// Package uefi holds the UEFI names keel's parts share, and nothing that
// reads or writes keel's own state: the EFI_GUID and its text form, the
// vendor GUIDs and names of the variables keel reads or writes (the
// globally defined ones, the image security database, keel's boot record,
// systemd's loader interface), how efivarfs names a variable's file, and
// the immutable flag efivarfs sets on it.
//
// It is the ground the boot record's UEFI store (bootenv/efivars), Secure
// Boot (secureboot), the TCG event log parser (tpm/tcglog) and the boot
// disk finder (hw/blockdev) stand on, so that none of them links another
// for a name: the TCG log parser does not link the boot record.
//
// References: UEFI Specification 2.10, appendix A (EFI_GUID), section 3.3
// (globally defined variables), section 8.2 (variable services),
// section 32.6.1 (the image security database); Linux's
// Documentation/filesystems/efivarfs.rst; systemd's Boot Loader Interface
// (LoaderDevicePartUUID).
package uefi
