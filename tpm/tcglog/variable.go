package tcglog

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/keelboot/keel/format/uefi"
)

// VariableData is a UEFI_VARIABLE_DATA (PFP §10.4.4, the event of
// EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT and
// EV_EFI_VARIABLE_AUTHORITY):
//
//	VariableName       EFI_GUID (the vendor GUID)
//	UnicodeNameLength  UINT64, in CHAR16s, without a terminating zero
//	VariableDataLength UINT64
//	UnicodeName        CHAR16[UnicodeNameLength]
//	VariableData       UINT8[VariableDataLength]
type VariableData struct {
	GUID uefi.GUID
	Name string
	Data []byte
}

// ParseVariableData parses a UEFI_VARIABLE_DATA; it must fill b exactly.
func ParseVariableData(b []byte) (VariableData, error) {
	var v VariableData
	if len(b) < 32 {
		return v, fmt.Errorf("UEFI_VARIABLE_DATA: %d bytes, want at least 32", len(b))
	}
	copy(v.GUID[:], b[:16])
	nameLen := binary.LittleEndian.Uint64(b[16:24])
	dataLen := binary.LittleEndian.Uint64(b[24:32])
	rest := uint64(len(b) - 32)
	if nameLen > rest/2 || dataLen != rest-2*nameLen {
		return v, fmt.Errorf("UEFI_VARIABLE_DATA: name of %d CHAR16s and %d data bytes do not fill its %d bytes", nameLen, dataLen, rest)
	}
	u := make([]uint16, nameLen)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[32+2*i:])
	}
	v.Name = string(utf16.Decode(u))
	v.Data = append([]byte(nil), b[32+2*nameLen:]...)
	return v, nil
}

// Marshal encodes v as a UEFI_VARIABLE_DATA: the event data, and what the
// firmware hashes for the event's digests (PFP §10.4.4).
func (v VariableData) Marshal() []byte {
	name := utf16.Encode([]rune(v.Name))
	out := append([]byte(nil), v.GUID[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(name)))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(v.Data)))
	for _, c := range name {
		out = binary.LittleEndian.AppendUint16(out, c)
	}
	return append(out, v.Data...)
}

// certX509GUID is EFI_CERT_X509_GUID (UEFI 2.10 §32.4.1).
var certX509GUID = uefi.MustParseGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")

// sha256GUID is EFI_CERT_SHA256_GUID (UEFI 2.10 §32.4.1).
var sha256GUID = uefi.MustParseGUID("c1c41626-504c-4092-aca9-41f936934328")

// describeSignatureLists summarises a signature database (EFI_SIGNATURE_LISTs,
// UEFI 2.10 §32.4.1): its X.509 certificates by subject, other entries
// counted by type.
func describeSignatureLists(b []byte) string {
	var parts []string
	for len(b) > 0 {
		if len(b) < 28 {
			return strings.Join(append(parts, fmt.Sprintf("%d trailing bytes", len(b))), ", ")
		}
		var typ uefi.GUID
		copy(typ[:], b[:16])
		listSize := binary.LittleEndian.Uint32(b[16:20])
		hdrSize := binary.LittleEndian.Uint32(b[20:24])
		sigSize := binary.LittleEndian.Uint32(b[24:28])
		if listSize < 28 || int64(listSize) > int64(len(b)) || int64(hdrSize) > int64(listSize)-28 || sigSize <= 16 || (listSize-28-hdrSize)%sigSize != 0 {
			return strings.Join(append(parts, fmt.Sprintf("a malformed EFI_SIGNATURE_LIST (%d bytes)", len(b))), ", ")
		}
		entries := b[28+hdrSize : listSize]
		for ; len(entries) > 0; entries = entries[sigSize:] {
			var owner uefi.GUID
			copy(owner[:], entries[:16])
			parts = append(parts, describeSignature(typ, owner, entries[16:sigSize]))
		}
		b = b[listSize:]
	}
	return strings.Join(parts, ", ")
}

func describeSignature(typ, owner uefi.GUID, data []byte) string {
	switch typ {
	case certX509GUID:
		if c, err := x509.ParseCertificate(data); err == nil {
			return fmt.Sprintf("X.509 %q (owner %s)", c.Subject.String(), owner)
		}
		return fmt.Sprintf("X.509, unparsable (%d bytes, owner %s)", len(data), owner)
	case sha256GUID:
		return fmt.Sprintf("SHA-256 %s (owner %s)", hex.EncodeToString(data), owner)
	}
	return fmt.Sprintf("type %s, %d bytes (owner %s)", typ, len(data), owner)
}

// Describe is a one-line human description of an event's data: the
// variable, its size and its signature list or authority for the UEFI
// variable events, the text of string events, else the data in hex
// (shortened).
func Describe(e Event) string {
	switch e.Type {
	case EvEFIVariableDriverConfig, EvEFIVariableBoot, EvEFIVariableBoot2, EvEFIVariableAuthority:
		v, err := ParseVariableData(e.Data)
		if err != nil {
			return fmt.Sprintf("%v; data %s", err, shortHex(e.Data))
		}
		head := fmt.Sprintf("%s-%s", v.Name, v.GUID)
		switch {
		case e.Type == EvEFIVariableAuthority && len(v.Data) > 16:
			// An EFI_SIGNATURE_DATA (PFP §10.4.4, §3.3.4.8): the owner
			// GUID and the db certificate that verified an image.
			var owner uefi.GUID
			copy(owner[:], v.Data[:16])
			if c, err := x509.ParseCertificate(v.Data[16:]); err == nil {
				return fmt.Sprintf("%s: X.509 %q (owner %s)", head, c.Subject.String(), owner)
			}
			return head + ": " + shortHex(v.Data)
		case len(v.Data) == 0:
			return head + ": empty (absent)"
		case e.Type == EvEFIVariableDriverConfig && (v.Name == "PK" || v.Name == "KEK" || v.Name == "db" || v.Name == "dbx" || v.Name == "dbt" || v.Name == "dbr"):
			return fmt.Sprintf("%s: %d bytes: %s", head, len(v.Data), describeSignatureLists(v.Data))
		}
		return head + ": " + shortHex(v.Data)
	case EvSCRTMVersion:
		if s, ok := utf16String(e.Data); ok {
			return fmt.Sprintf("%q", s)
		}
	case EvNoAction:
		if n := len(e.Data); n >= 16 && e.Data[15] == 0 && printable(e.Data[:15]) {
			return fmt.Sprintf("%q %s", strings.TrimRight(string(e.Data[:15]), "\x00"), shortHex(e.Data[16:]))
		}
	}
	if printable(e.Data) && len(e.Data) > 0 {
		return fmt.Sprintf("%q", strings.TrimRight(string(e.Data), "\x00"))
	}
	return shortHex(e.Data)
}

// printable reports whether b is ASCII text (a trailing NUL allowed).
func printable(b []byte) bool {
	t := b
	for len(t) > 0 && t[len(t)-1] == 0 {
		t = t[:len(t)-1]
	}
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c >= 0x80 || !unicode.IsPrint(rune(c)) {
			return false
		}
	}
	return true
}

func utf16String(b []byte) (string, bool) {
	if len(b) < 2 || len(b)%2 != 0 {
		return "", false
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	s := string(utf16.Decode(u))
	return s, printable([]byte(s)) || s == ""
}

func shortHex(b []byte) string {
	const max = 32
	if len(b) <= max {
		return fmt.Sprintf("[%d] %s", len(b), hex.EncodeToString(b))
	}
	return fmt.Sprintf("[%d] %s…", len(b), hex.EncodeToString(b[:max]))
}
