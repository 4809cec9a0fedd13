package uefi

// Variable names (UCS-2 in the firmware; efivarfs shows them as UTF-8).
const (
	// PK, KEK, SecureBoot and SetupMode are globally defined variables
	// (GlobalVariableGUID; UEFI 2.10 section 3.3, table 3-1): the
	// platform key, the key exchange keys, whether Secure Boot is
	// enforced, whether the firmware is in setup mode.
	PK         = "PK"
	KEK        = "KEK"
	SecureBoot = "SecureBoot"
	SetupMode  = "SetupMode"
	// DB and DBX are the allowed and forbidden signature databases
	// (ImageSecurityDatabaseGUID; UEFI 2.10 section 32.6.1).
	DB  = "db"
	DBX = "dbx"
	// KeelState holds keel's boot record (KeelVendorGUID; package
	// bootenv/efivars).
	KeelState = "KeelState"
	// LoaderDevicePartUUID is the unique GUID of the partition the
	// firmware loaded the running image from, as a UTF-16 string
	// (LoaderGUID; systemd's Boot Loader Interface).
	LoaderDevicePartUUID = "LoaderDevicePartUUID"
)

// EfivarfsDir is where Linux mounts efivarfs.
const EfivarfsDir = "/sys/firmware/efi/efivars"

// VarFile is the name of the efivarfs file of variable name of vendor g:
// Name-GUID, the GUID in lower case. The file holds the 4-byte attributes
// (UINT32 little-endian; UEFI 2.10 section 8.2) followed by the data.
func VarFile(name string, g GUID) string { return name + "-" + g.String() }
