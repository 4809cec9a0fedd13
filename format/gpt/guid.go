package gpt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
)

// GUID is a globally unique identifier as stored on a GPT disk (UEFI 2.10
// appendix A, and the EFI_GUID fields of sections 5.3.2 and 5.3.3): the first
// three fields (4, 2 and 2 bytes) are little-endian, the last 8 bytes are
// stored in order. The zero GUID marks an unused partition entry.
type GUID [16]byte

// ParseGUID parses the canonical text form of a GUID,
// "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" (either case, optionally in braces).
func ParseGUID(s string) (GUID, error) {
	in := s
	if len(s) == 38 && s[0] == '{' && s[37] == '}' {
		s = s[1:37]
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return GUID{}, fmt.Errorf("gpt: invalid GUID %q: want the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", in)
	}
	var be [16]byte // RFC 4122 (big-endian) byte order, as the text reads
	hexDigits := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(be[:], []byte(hexDigits)); err != nil {
		return GUID{}, fmt.Errorf("gpt: invalid GUID %q: %w", in, err)
	}
	return GUIDFromRFC4122(be), nil
}

// MustParseGUID is ParseGUID for constants known to be valid; it panics on a
// malformed string.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// GUIDFromRFC4122 converts 16 bytes in RFC 4122 (big-endian, "as the text
// reads") order into a GUID. Use it for UUIDs taken from a hash, as the
// Discoverable Partitions Specification does with the dm-verity root hash
// (root partition UUID = its first 128 bits).
func GUIDFromRFC4122(b [16]byte) GUID {
	return GUID{
		b[3], b[2], b[1], b[0],
		b[5], b[4],
		b[7], b[6],
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
	}
}

// RFC4122 returns the GUID's bytes in RFC 4122 (big-endian) order, the order
// of its text form. It is the inverse of GUIDFromRFC4122.
func (g GUID) RFC4122() [16]byte {
	// The byte swaps are their own inverse.
	return [16]byte(GUIDFromRFC4122(g))
}

// String returns the canonical upper-case text form, as sgdisk prints it.
func (g GUID) String() string {
	b := g.RFC4122()
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// IsZero reports whether g is the all-zero GUID (an unused entry).
func (g GUID) IsZero() bool { return g == GUID{} }

// NewGUID returns a random (version 4, RFC 4122 variant) GUID read from r, or
// from crypto/rand when r is nil.
func NewGUID(r io.Reader) (GUID, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return GUID{}, fmt.Errorf("gpt: random GUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return GUIDFromRFC4122(b), nil
}

// Well-known partition type GUIDs. They are functions, not variables, so
// that no caller can change them (the package has no mutable state). Values checked against the Discoverable
// Partitions Specification (uapi-group specifications,
// discoverable_partitions_specification.md) and the UEFI specification; the
// comment gives the sgdisk type code.

// TypeEFISystem is the EFI System Partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B
// (UEFI 2.10 section 5.3.3 table 5.7; sgdisk ef00; DPS SD_GPT_ESP).
func TypeEFISystem() GUID { return MustParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") }

// TypeLinuxGeneric is "Linux filesystem data", 0FC63DAF-8483-4772-8E79-3D69D8477DE4
// (sgdisk 8300; DPS "Generic Linux Data Partition", SD_GPT_LINUX_GENERIC):
// a Linux partition that nothing mounts automatically.
func TypeLinuxGeneric() GUID { return MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4") }

// TypeRootAMD64 is the DPS root partition for x86-64,
// 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 (sgdisk 8304; SD_GPT_ROOT_X86_64).
func TypeRootAMD64() GUID { return MustParseGUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709") }

// TypeRootVerityAMD64 is the DPS root verity (dm-verity hash tree) partition
// for x86-64, 2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5 (sgdisk 830c;
// SD_GPT_ROOT_X86_64_VERITY).
func TypeRootVerityAMD64() GUID { return MustParseGUID("2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5") }

// TypeRootARM64 is the DPS root partition for 64-bit ARM,
// B921B045-1DF0-41C3-AF44-4C6F280D3FAE (sgdisk 8305; SD_GPT_ROOT_ARM64).
func TypeRootARM64() GUID { return MustParseGUID("B921B045-1DF0-41C3-AF44-4C6F280D3FAE") }

// TypeRootVerityARM64 is the DPS root verity partition for 64-bit ARM,
// DF3300CE-D69F-4C92-978C-9BFB0F38D820 (sgdisk 830e; SD_GPT_ROOT_ARM64_VERITY).
func TypeRootVerityARM64() GUID { return MustParseGUID("DF3300CE-D69F-4C92-978C-9BFB0F38D820") }

// TypeHome is the DPS home partition, 933AC7E1-2EB4-4F13-B844-0E14E2AEF915
// (sgdisk 8302; SD_GPT_HOME).
func TypeHome() GUID { return MustParseGUID("933AC7E1-2EB4-4F13-B844-0E14E2AEF915") }

// TypeXBOOTLDR is the Extended Boot Loader Partition of the Boot Loader
// Specification, BC13C2FF-59E6-4262-A352-B275FD6F7172 (sgdisk ea00;
// SD_GPT_XBOOTLDR). It is not a generic Linux data type: that is
// TypeLinuxGeneric.
func TypeXBOOTLDR() GUID { return MustParseGUID("BC13C2FF-59E6-4262-A352-B275FD6F7172") }
