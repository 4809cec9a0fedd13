package uefi

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// GUID is an EFI_GUID in its byte order in memory, in variable payloads
// and in the event log (UEFI 2.10 appendix A): the first three fields
// (Data1 UINT32, Data2 and Data3 UINT16) little-endian, Data4 (8 bytes)
// in order.
type GUID [16]byte

// String formats g as 8-4-4-4-12 lower-case hex digits, as efivarfs names
// variables.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(g[0:4]),
		binary.LittleEndian.Uint16(g[4:6]), binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

// ParseGUID parses the 8-4-4-4-12 hex form (either case).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("uefi: GUID %.40q: want 8-4-4-4-12 hex digits", s)
	}
	var b [16]byte // as the text reads
	if _, err := hex.Decode(b[:], []byte(s[0:8]+s[9:13]+s[14:18]+s[19:23]+s[24:36])); err != nil {
		return g, fmt.Errorf("uefi: GUID %q: %w", s, err)
	}
	binary.LittleEndian.PutUint32(g[0:4], binary.BigEndian.Uint32(b[0:4]))
	binary.LittleEndian.PutUint16(g[4:6], binary.BigEndian.Uint16(b[4:6]))
	binary.LittleEndian.PutUint16(g[6:8], binary.BigEndian.Uint16(b[6:8]))
	copy(g[8:], b[8:])
	return g, nil
}

// MustParseGUID is ParseGUID for constants known to be valid; it panics
// on a malformed string.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// Vendor GUIDs of the variables keel reads or writes. They are functions,
// not variables, so that no caller can change them.

// GlobalVariableGUID is EFI_GLOBAL_VARIABLE, the vendor of the globally
// defined variables (UEFI 2.10 section 3.3): PK, KEK, SecureBoot,
// SetupMode.
func GlobalVariableGUID() GUID { return MustParseGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c") }

// ImageSecurityDatabaseGUID is EFI_IMAGE_SECURITY_DATABASE_GUID, the
// vendor of db and dbx (UEFI 2.10 section 32.6.1).
func ImageSecurityDatabaseGUID() GUID { return MustParseGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f") }

// KeelVendorGUID is the vendor of keel's boot record variable (KeelState;
// package bootenv/efivars): a random version 4 GUID made for keel.
func KeelVendorGUID() GUID { return MustParseGUID("6b0af3e3-6409-4fc0-84fe-0076f65a1390") }

// LoaderGUID is the vendor of systemd's Boot Loader Interface variables,
// which its EFI stub (in keel's UKI) and systemd-boot set:
// LoaderDevicePartUUID among them.
func LoaderGUID() GUID { return MustParseGUID("4a67b082-0a4c-41cf-b6c7-440b29bb8c4f") }
