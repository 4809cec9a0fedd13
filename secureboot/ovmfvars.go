package secureboot

// Enrolled OVMF variable stores: keel's keys written offline into an edk2
// variable store flash image (OVMF_VARS.fd), so that QEMU with OVMF's
// Secure Boot build enforces Secure Boot from the first power-on, without
// an enrolment boot.
//
// # The flash image
//
// OVMF's variable flash (OVMF_VARS_4M.fd: 528 KiB, of the 4 MiB flash the
// name refers to) is one firmware volume:
//
//	0x0      EFI_FIRMWARE_VOLUME_HEADER (PI 1.7 vol. 3 §3.2.1): ZeroVector,
//	         FileSystemGuid = gEfiSystemNvDataFvGuid, FvLength, "_FVH",
//	         Attributes, HeaderLength, Checksum (the header's UINT16s sum
//	         to 0), ExtHeaderOffset, Revision 2, the block map
//	HdrLen   VARIABLE_STORE_HEADER (edk2 MdeModulePkg
//	         Include/Guid/VariableFormat.h): Signature =
//	         gEfiAuthenticatedVariableGuid, Size (from this header),
//	         Format VARIABLE_STORE_FORMATTED 0x5A, State
//	         VARIABLE_STORE_HEALTHY 0xFE
//	         the variables, then 0xFF (erased flash) to HdrLen + Size
//	...      the fault-tolerant-write working block and spare area
//	         (edk2 FaultTolerantWriteDxe): left as they are
//
// Each variable is an AUTHENTICATED_VARIABLE_HEADER (StartId 0x55AA,
// State, Reserved, Attributes, MonotonicCount, TimeStamp (EFI_TIME),
// PubKeyIndex, NameSize, DataSize, VendorGuid: 60 bytes), the name in
// UTF-16LE with its terminating zero (NameSize bytes), the data (DataSize
// bytes), and erased padding to the next 4-byte boundary (HEADER_ALIGNMENT;
// on x86 ALIGNMENT is 1: no padding between name and data). The store is a
// log: a write appends a new copy, then clears State bits of the old one
// (flash bits only go from 1 to 0): VAR_ADDED 0x3F is live,
// VAR_ADDED & VAR_IN_DELETED_TRANSITION 0x3E is live while no VAR_ADDED
// copy exists, a copy with VAR_DELETED (0xFD) cleared is dead,
// VAR_HEADER_VALID_ONLY 0x7F is a write that never finished. The variable
// driver walks the headers while StartId is 0x55AA, and reclaims
// (rewrites) the store when the space after the last one is not erased.
//
// # What OVMF needs to enforce
//
// Nothing but PK: at every boot edk2's AuthVariableLibInitialize
// (SecurityPkg/Library/AuthVariableLib) sets SetupMode from PK's
// existence (user mode with a PK), creates SecureBootEnable
// (gEfiSecureBootEnableDisableGuid) as enabled when it is missing in user
// mode, sets SecureBoot = user mode && SecureBootEnable, rewrites
// CustomMode (gEfiCustomModeEnableGuid) as standard mode, and creates
// certdb and VendorKeysNv when missing. The firmware trusts its store: a
// stored PK is not verified again. EnrolVarStore writes what a firmware
// holds after `keel secureboot enroll` (and what Debian's enrolled
// OVMF_VARS_4M.ms.fd holds): db, KEK and PK as time-based authenticated
// variables, each the signature list without its
// EFI_VARIABLE_AUTHENTICATION_2 descriptor and the descriptor's TimeStamp
// (AuthVariableLib's AuthServiceInternalUpdateVariableWithTimeStamp),
// Attributes 0x27, MonotonicCount and PubKeyIndex 0; VendorKeysNv = 0
// (VENDOR_KEYS_MODIFIED: not the firmware vendor's keys; NV|BS|AT, as
// AuthVariableLib writes it); SecureBootEnable = 1 (a template that
// disabled it would otherwise boot unenforced) and CustomMode = 0 (NV|BS).
// dbx is not written (keel's enrolment has none: PCR 7 measures it absent
// either way), and a template's dbx is kept.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf16"

	"github.com/keelboot/keel/format/uefi"
)

// Firmware volume and variable store constants (PI 1.7 vol. 3 §3.2.1;
// edk2 MdeModulePkg/Include/Guid/VariableFormat.h).
const (
	fvHeaderFixedSize  = 56         // EFI_FIRMWARE_VOLUME_HEADER up to BlockMap
	fvSignature        = 0x4856465f // "_FVH"
	fvRevision         = 2          // EFI_FVH_REVISION
	varStoreHeaderSize = 28         // VARIABLE_STORE_HEADER
	varStoreFormatted  = 0x5a       // VARIABLE_STORE_FORMATTED
	varStoreHealthy    = 0xfe       // VARIABLE_STORE_HEALTHY
	authVarHeaderSize  = 60         // AUTHENTICATED_VARIABLE_HEADER
	varStartID         = 0x55aa     // VARIABLE_DATA
	varHeaderAlignment = 4          // HEADER_ALIGNMENT
)

// Variable states (VariableFormat.h): bits cleared one by one as a
// variable goes from written to deleted.
const (
	VarInDeletedTransition = 0xfe // VAR_IN_DELETED_TRANSITION
	VarDeleted             = 0xfd // VAR_DELETED
	VarHeaderValidOnly     = 0x7f // VAR_HEADER_VALID_ONLY
	VarAdded               = 0x3f // VAR_ADDED
)

var (
	// systemNvDataFvGUID is gEfiSystemNvDataFvGuid, the FileSystemGuid
	// of a firmware volume holding a variable store.
	systemNvDataFvGUID = uefi.MustParseGUID("fff12b8d-7696-4c8b-a985-2747075b4f50")
	// authenticatedVariableGUID is gEfiAuthenticatedVariableGuid: a
	// store of AUTHENTICATED_VARIABLE_HEADERs.
	authenticatedVariableGUID = uefi.MustParseGUID("aaf32c78-947b-439a-a180-2e144ec37792")
	// variableGUID is gEfiVariableGuid: a store of plain
	// VARIABLE_HEADERs, which cannot hold PK, KEK or db.
	variableGUID = uefi.MustParseGUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")

	// SecureBootEnableDisableGUID is gEfiSecureBootEnableDisableGuid,
	// the vendor GUID of edk2's SecureBootEnable.
	SecureBootEnableDisableGUID = uefi.MustParseGUID("f0a30bc7-af08-4556-99c4-001009c93a44")
	// CustomModeEnableGUID is gEfiCustomModeEnableGuid, of CustomMode.
	CustomModeEnableGUID = uefi.MustParseGUID("c076ec0c-7028-4399-a072-71ee5c448b9f")
	// VendorKeysNvGUID is gEfiVendorKeysNvGuid, of VendorKeysNv.
	VendorKeysNvGUID = uefi.MustParseGUID("9073e4e0-60ec-4b6e-9903-4c223c260f3c")
)

// ErrPKEnrolled says a variable store already holds a platform key.
var ErrPKEnrolled = errors.New("the variable store already holds a platform key (PK)")

// StoredVariable is one AUTHENTICATED_VARIABLE_HEADER of a variable
// store with its name and data.
type StoredVariable struct {
	// Offset is where its header starts in the flash image.
	Offset int
	// State is VarAdded for a live variable (see Live).
	State      uint8
	Attributes uint32
	// MonotonicCount and PubKeyIndex are those of the obsolete
	// count-based authentication: 0 for everything else.
	MonotonicCount uint64
	// TimeStamp is the EFI_TIME of a time-based authenticated
	// variable's last write, zero for others.
	TimeStamp   [16]byte
	PubKeyIndex uint32
	// Name is the variable's name without its terminating zero.
	Name string
	GUID uefi.GUID
	Data []byte
}

// Live reports whether the firmware sees this copy: VAR_ADDED, or
// VAR_ADDED & VAR_IN_DELETED_TRANSITION (a replacement that was cut short:
// live while no VAR_ADDED copy of the variable exists, as edk2's
// FindVariableEx decides).
func (v StoredVariable) Live() bool {
	return v.State == VarAdded || v.State == VarAdded&VarInDeletedTransition
}

// VarStore is a parsed edk2 variable store flash image (OVMF_VARS.fd).
type VarStore struct {
	image []byte
	store int // the VARIABLE_STORE_HEADER's offset
	end   int // the store's end: store + Size
	next  int // where the next variable goes: after the last, aligned
	// Variables are the store's variables in the order written, dead
	// copies included.
	Variables []StoredVariable
}

// ParseVarStore parses an edk2 variable store flash image: a firmware
// volume of gEfiSystemNvDataFvGuid whose header checks, holding an
// authenticated variable store, formatted and healthy, whose variables
// fit it and whose free space is erased. It keeps a copy of image.
func ParseVarStore(image []byte) (*VarStore, error) {
	s, err := parseVarStore(image)
	if err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	return s, nil
}

func parseVarStore(image []byte) (*VarStore, error) {
	b := image
	if len(b) < fvHeaderFixedSize+8 {
		return nil, fmt.Errorf("%d bytes: too short for an EFI_FIRMWARE_VOLUME_HEADER: not an edk2 variable store (OVMF_VARS.fd)", len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b[40:44]) != fvSignature {
		return nil, fmt.Errorf("no firmware volume signature \"_FVH\" at offset 40: not an edk2 variable store (OVMF_VARS.fd; OVMF_CODE.fd and a combined OVMF.fd are not)")
	}
	var fsGUID uefi.GUID
	copy(fsGUID[:], b[16:32])
	fvLength := le.Uint64(b[32:40])
	hdrLen := int(le.Uint16(b[48:50]))
	if rev := b[55]; rev != fvRevision {
		return nil, fmt.Errorf("firmware volume header revision %d, want %d (EFI_FVH_REVISION)", rev, fvRevision)
	}
	if hdrLen < fvHeaderFixedSize+8 || hdrLen%2 != 0 || hdrLen > len(b) {
		return nil, fmt.Errorf("firmware volume HeaderLength %d outside %d..%d: a damaged image", hdrLen, fvHeaderFixedSize+8, len(b))
	}
	if fvLength > uint64(len(b)) || fvLength < uint64(hdrLen) {
		return nil, fmt.Errorf("firmware volume FvLength %#x, the file has %#x bytes: a truncated image", fvLength, len(b))
	}
	var sum uint16
	for i := 0; i < hdrLen; i += 2 {
		sum += le.Uint16(b[i:])
	}
	if sum != 0 {
		return nil, fmt.Errorf("firmware volume header checksum wrong (its UINT16s sum to %#04x, not 0): a damaged image", sum)
	}
	if fsGUID != systemNvDataFvGUID {
		return nil, fmt.Errorf("firmware volume of file system %s, want gEfiSystemNvDataFvGuid %s: a firmware code volume, not a variable store (use OVMF_VARS.fd)", fsGUID, systemNvDataFvGUID)
	}

	s := &VarStore{image: bytes.Clone(b), store: hdrLen}
	b = s.image
	if uint64(hdrLen+varStoreHeaderSize) > fvLength {
		return nil, fmt.Errorf("no room for a VARIABLE_STORE_HEADER in the firmware volume of %#x bytes", fvLength)
	}
	h := b[hdrLen : hdrLen+varStoreHeaderSize]
	var sig uefi.GUID
	copy(sig[:], h[:16])
	size := le.Uint32(h[16:20])
	switch sig {
	case authenticatedVariableGUID:
	case variableGUID:
		return nil, fmt.Errorf("a variable store without authenticated variables (gEfiVariableGuid): it cannot hold PK, KEK and db; use the variable store of an OVMF built with Secure Boot (Debian: OVMF_VARS_4M.fd)")
	default:
		return nil, fmt.Errorf("variable store signature %s, want gEfiAuthenticatedVariableGuid %s: not an edk2 variable store", sig, authenticatedVariableGUID)
	}
	if h[20] != varStoreFormatted || h[21] != varStoreHealthy {
		return nil, fmt.Errorf("variable store Format %#02x State %#02x, want %#02x (formatted) %#02x (healthy): a damaged store; start from the firmware's template", h[20], h[21], varStoreFormatted, varStoreHealthy)
	}
	if size < varStoreHeaderSize || uint64(hdrLen)+uint64(size) > fvLength {
		return nil, fmt.Errorf("variable store Size %#x does not fit the firmware volume (%#x bytes from offset %#x)", size, fvLength, hdrLen)
	}
	s.end = hdrLen + int(size)

	off := hdrLen + varStoreHeaderSize
	for {
		off = alignUp(off, varHeaderAlignment)
		if off+2 > s.end || le.Uint16(b[off:]) != varStartID {
			break
		}
		if off+authVarHeaderSize > s.end {
			return nil, fmt.Errorf("the variable header at %#x runs past the store's end %#x: a damaged store", off, s.end)
		}
		v := StoredVariable{
			Offset:         off,
			State:          b[off+2],
			Attributes:     le.Uint32(b[off+4:]),
			MonotonicCount: le.Uint64(b[off+8:]),
			PubKeyIndex:    le.Uint32(b[off+32:]),
		}
		copy(v.TimeStamp[:], b[off+16:off+32])
		nameSize, dataSize := le.Uint32(b[off+36:]), le.Uint32(b[off+40:])
		copy(v.GUID[:], b[off+44:off+60])
		nameAt := off + authVarHeaderSize
		if uint64(nameAt)+uint64(nameSize)+uint64(dataSize) > uint64(s.end) {
			return nil, fmt.Errorf("the variable at %#x (NameSize %d, DataSize %d) runs past the store's end %#x: a damaged store", off, nameSize, dataSize, s.end)
		}
		dataAt := nameAt + int(nameSize)
		v.Name = decodeName(b[nameAt:dataAt])
		v.Data = b[dataAt : dataAt+int(dataSize) : dataAt+int(dataSize)]
		s.Variables = append(s.Variables, v)
		off = dataAt + int(dataSize)
	}
	s.next = min(off, s.end)
	for i := s.next; i < s.end; i++ {
		if b[i] != 0xff {
			return nil, fmt.Errorf("the store's free space is not erased (byte %#02x at %#x after the last variable): an interrupted write the firmware has yet to reclaim; boot the firmware on it once, or start from its template", b[i], i)
		}
	}
	return s, nil
}

// decodeName decodes a UTF-16LE variable name up to its terminating zero.
func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }

// Lookup returns the copy of a variable the firmware sees: the VAR_ADDED
// copy, else one in deleted transition.
func (s *VarStore) Lookup(name string, guid uefi.GUID) (StoredVariable, bool) {
	var found StoredVariable
	ok := false
	for _, v := range s.Variables {
		if v.Name != name || v.GUID != guid || !v.Live() {
			continue
		}
		if v.State == VarAdded {
			return v, true
		}
		found, ok = v, true
	}
	return found, ok
}

// Free is the number of erased bytes after the last variable.
func (s *VarStore) Free() int { return s.end - s.next }

// Bytes returns the flash image (the parsed copy: changing it changes the
// store).
func (s *VarStore) Bytes() []byte { return s.image }

// newVariable is one variable EnrolVarStore writes.
type newVariable struct {
	name       string
	guid       uefi.GUID
	attributes uint32
	timestamp  [16]byte
	data       []byte
}

// Attributes of edk2's Secure Boot control variables (AuthVariableLib).
const (
	attrNVBS   = 0x03 // EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS
	attrNVBSAT = 0x23 // ... | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS
)

// enrolledVariables turns the enrolment writes vars (db, KEK, PK) into the
// variables a firmware stores for them, and adds edk2's control
// variables: VendorKeysNv 0, SecureBootEnable 1, CustomMode 0.
func enrolledVariables(vars []Variable) ([]newVariable, error) {
	var out []newVariable
	seen := map[string]bool{}
	for _, v := range vars {
		var want uefi.GUID
		switch v.Name {
		case DB:
			want = uefi.ImageSecurityDatabaseGUID()
		case KEK, PK:
			want = uefi.GlobalVariableGUID()
		default:
			return nil, fmt.Errorf("variable %q: an enrolment holds db, KEK and PK only", v.Name)
		}
		if v.GUID != want || v.Attributes != VariableAttributes {
			return nil, fmt.Errorf("variable %s of vendor %s with attributes %#x, want %s and %#x", v.Name, v.GUID, v.Attributes, want, VariableAttributes)
		}
		if seen[v.Name] {
			return nil, fmt.Errorf("variable %s given twice", v.Name)
		}
		seen[v.Name] = true
		_, _, data, err := parseAuth2(v.Name, v.GUID, v.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.Name, err)
		}
		nv := newVariable{name: v.Name, guid: v.GUID, attributes: v.Attributes, data: data}
		copy(nv.timestamp[:], v.Data[:16]) // the descriptor's EFI_TIME
		out = append(out, nv)
	}
	for _, n := range []string{DB, KEK, PK} {
		if !seen[n] {
			return nil, fmt.Errorf("no %s among the enrolment's variables: it needs db, KEK and PK (ReadEnrolment)", n)
		}
	}
	return append(out,
		newVariable{name: "VendorKeysNv", guid: VendorKeysNvGUID, attributes: attrNVBSAT, data: []byte{0}},
		newVariable{name: "SecureBootEnable", guid: SecureBootEnableDisableGUID, attributes: attrNVBS, data: []byte{1}},
		newVariable{name: "CustomMode", guid: CustomModeEnableGUID, attributes: attrNVBS, data: []byte{0}},
	), nil
}

// encodeName is a variable name in UTF-16LE with its terminating zero.
func encodeName(name string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(name)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, 0, 0)
}

// EnrolVarStore returns a copy of the edk2 variable store flash image
// with the enrolment vars (ReadEnrolment's or Enrolment's: db, KEK and PK)
// enrolled, as the firmware would have stored them, and Secure Boot
// enabled (see the comment at the top of this file): a firmware booting
// from it is in user mode and enforces Secure Boot from its first boot.
//
// Every variable of image is kept byte for byte; the live copies of the
// variables written are marked deleted (State &= VAR_DELETED), as the
// firmware replaces a variable, and the new ones appended in the erased
// space; the firmware volume header and the fault-tolerant-write areas
// are not touched. The result depends on image and vars only.
//
// It refuses, returning no image, a file that is not an edk2
// authenticated variable store, a store without room for the variables,
// and, unless replace, a store that already holds a PK (ErrPKEnrolled):
// replace swaps the owner's keys for keel's, keeping dbx.
func EnrolVarStore(image []byte, vars []Variable, replace bool) ([]byte, error) {
	s, err := parseVarStore(image)
	if err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	nvs, err := enrolledVariables(vars)
	if err != nil {
		return nil, fmt.Errorf("secureboot: %w", err)
	}
	if _, ok := s.Lookup(PK, uefi.GlobalVariableGUID()); ok && !replace {
		return nil, fmt.Errorf("secureboot: %w: a firmware booting from it already enforces its owner's keys; replace them (keel secureboot ovmf-vars --replace) or start from the firmware's empty template (/usr/share/OVMF/OVMF_VARS_4M.fd)", ErrPKEnrolled)
	}
	off := s.next
	var recs [][]byte
	for _, nv := range nvs {
		name := encodeName(nv.name)
		r := make([]byte, authVarHeaderSize, authVarHeaderSize+len(name)+len(nv.data))
		le := binary.LittleEndian
		le.PutUint16(r[0:], varStartID)
		r[2] = VarAdded
		r[3] = 0 // Reserved
		le.PutUint32(r[4:], nv.attributes)
		// MonotonicCount (8:16) and PubKeyIndex (32:36) stay 0.
		copy(r[16:32], nv.timestamp[:])
		le.PutUint32(r[36:], uint32(len(name)))
		le.PutUint32(r[40:], uint32(len(nv.data)))
		copy(r[44:60], nv.guid[:])
		r = append(append(r, name...), nv.data...)
		off = alignUp(off, varHeaderAlignment) + len(r)
		recs = append(recs, r)
	}
	if off > s.end {
		return nil, fmt.Errorf("secureboot: the variable store is too full: %d bytes free after its last variable, the keys need %d; start from the firmware's empty template (/usr/share/OVMF/OVMF_VARS_4M.fd)", s.Free(), off-s.next)
	}
	b := s.image
	for _, nv := range nvs {
		for _, v := range s.Variables {
			if v.Name == nv.name && v.GUID == nv.guid && v.Live() {
				b[v.Offset+2] &= VarDeleted
			}
		}
	}
	off = s.next
	for _, r := range recs {
		off = alignUp(off, varHeaderAlignment)
		copy(b[off:], r)
		off += len(r)
	}
	return b, nil
}

// OVMFVars reads the variable store flash image template (OVMF_VARS.fd)
// and the enrolment files in enrolmentDir (ReadEnrolment, which checks
// them as the firmware would) and returns the template with them enrolled
// (EnrolVarStore).
func OVMFVars(template, enrolmentDir string, replace bool) ([]byte, error) {
	vars, err := ReadEnrolment(enrolmentDir)
	if err != nil {
		return nil, err
	}
	return OVMFVarsFrom(template, vars, replace)
}

// OVMFVarsFrom is OVMFVars with the enrolment writes at hand (Enrolment's,
// from a key directory).
func OVMFVarsFrom(template string, vars []Variable, replace bool) ([]byte, error) {
	image, err := os.ReadFile(template)
	if err != nil {
		return nil, fmt.Errorf("secureboot: the OVMF variable store template: %w (Debian's is /usr/share/OVMF/OVMF_VARS_4M.fd, package ovmf)", err)
	}
	out, err := EnrolVarStore(image, vars, replace)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, filepath.Clean(template))
	}
	return out, nil
}
