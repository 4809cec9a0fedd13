// Package efivars keeps keel's boot record in one UEFI variable, written
// through efivarfs with github.com/foxboron/go-uefi.
//
// The variable is KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390 with the
// attributes NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS (UEFI 2.10
// section 8.2, GetVariable/SetVariable). Its data is
//
//	"KEEL" | u32 LE length of payload | u32 LE CRC-32 (IEEE) of payload | payload
//
// where payload is the record's keel_* variables as name=value\0 pairs (the
// same encoding as a U-Boot environment's data area) ending in an empty
// entry. A variable write is one SetVariable call, which the firmware
// performs atomically, so the store is power-safe.
//
// Open takes the efivarfs mount point (/sys/firmware/efi/efivars) or any
// directory laid out like one (a file per variable named Name-GUID holding
// the 4-byte attributes and the data), for tests and for offline use. In a
// plain directory a write goes to a temporary file that is renamed over the
// variable, so it is atomic there too.
package efivars
