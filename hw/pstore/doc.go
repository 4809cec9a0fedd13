// Package pstore reads what Linux's persistent store (pstore: fs/pstore,
// Documentation/admin-guide/ramoops.rst, efi-pstore) kept of the last
// kernel across a reset: the kernel log at a panic or an oops, written
// by the dying kernel into a backend that survives the reset (UEFI
// variables with efi_pstore, a reserved RAM region with ramoops) and
// shown by the pstore file system, one file per record.
//
// keel-init reads the dmesg records at the start of a boot (Read), keeps
// the first lines of the crash report (Parse), and removes them (Clear:
// efi_pstore then deletes the variables), so that a panic is counted
// once: bootenv.Evidence's Panic, docs/DESIGN.md section 3.1. The records
// are unauthenticated (whoever can write UEFI variables can write them):
// they are read with bounds (MaxRecords, MaxRecordSize, MaxLines) and
// their text is made printable; they only decide whether a trial's try
// was used.
package pstore
