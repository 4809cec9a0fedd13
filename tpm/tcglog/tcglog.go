// Package tcglog reads the firmware's TCG event log: the crypto-agile log
// of the TCG PC Client Platform Firmware Profile (PFP, version 1.05) §10,
// which UEFI firmware hands to the OS (EFI_TCG2_PROTOCOL.GetEventLog,
// UEFI 2.10 §38 via the TCG EFI Protocol Specification) and Linux exposes
// at /sys/kernel/security/tpm0/binary_bios_measurements.
//
// # Format (PFP §10.2)
//
// The log is a sequence of little-endian structures. The first is a
// TCG_PCR_EVENT in the old SHA-1 format (PFP §10.2.1): PCRIndex (UINT32),
// EventType (UINT32, EV_NO_ACTION), a 20-byte zero digest, EventSize
// (UINT32) and the event, a TCG_EfiSpecIDEvent (PFP §10.4.5.1):
//
//	Signature          "Spec ID Event03\0" (16 bytes)
//	platformClass      UINT32
//	specVersionMinor   UINT8, specVersionMajor UINT8 (2), specErrata UINT8
//	uintnSize          UINT8 (1: UINT32, 2: UINT64)
//	numberOfAlgorithms UINT32
//	digestSizes        numberOfAlgorithms × {algorithmId UINT16 (TPM_ALG_ID), digestSize UINT16}
//	vendorInfoSize     UINT8, vendorInfo
//
// Every later event is a TCG_PCR_EVENT2 (PFP §10.2.2): PCRIndex, EventType,
// a TPML_DIGEST_VALUES (count UINT32, then count × {hashAlg UINT16,
// digest of the size the header gave for hashAlg}: TPM 2.0 Part 2 §10.9.7),
// EventSize and the event data. The log ends where the file ends.
//
// EV_NO_ACTION events are not extended (PFP §10.4.1). One of them, the
// StartupLocality event (PFP §10.4.5.3, "StartupLocality\0" and a locality
// byte), says PCR 0 started at that locality: its value after TPM2_Startup
// is the locality in the last byte (PFP §3.3.4.1). Replay honours it.
package tcglog

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // the sha1 bank
	_ "crypto/sha256"
	_ "crypto/sha3"
	_ "crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// DefaultPath is where Linux exposes the firmware's event log (securityfs).
const DefaultPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// Parse limits: far above what a firmware writes, low enough that a
// corrupt length cannot make Parse allocate much.
const (
	maxAlgorithms = 16
	maxDigestSize = 128
)

// EventType is a TCG event type (PFP §10.4.1, "Event Types").
type EventType uint32

// Event types of PFP §10.4.1.
const (
	EvPrebootCert                EventType = 0x00000000
	EvPostCode                   EventType = 0x00000001
	EvNoAction                   EventType = 0x00000003
	EvSeparator                  EventType = 0x00000004
	EvAction                     EventType = 0x00000005
	EvEventTag                   EventType = 0x00000006
	EvSCRTMContents              EventType = 0x00000007
	EvSCRTMVersion               EventType = 0x00000008
	EvCPUMicrocode               EventType = 0x00000009
	EvPlatformConfigFlags        EventType = 0x0000000A
	EvTableOfDevices             EventType = 0x0000000B
	EvCompactHash                EventType = 0x0000000C
	EvIPL                        EventType = 0x0000000D
	EvIPLPartitionData           EventType = 0x0000000E
	EvNonhostCode                EventType = 0x0000000F
	EvNonhostConfig              EventType = 0x00000010
	EvNonhostInfo                EventType = 0x00000011
	EvOmitBootDeviceEvents       EventType = 0x00000012
	EvEFIVariableDriverConfig    EventType = 0x80000001
	EvEFIVariableBoot            EventType = 0x80000002
	EvEFIBootServicesApplication EventType = 0x80000003
	EvEFIBootServicesDriver      EventType = 0x80000004
	EvEFIRuntimeServicesDriver   EventType = 0x80000005
	EvEFIGPTEvent                EventType = 0x80000006
	EvEFIAction                  EventType = 0x80000007
	EvEFIPlatformFirmwareBlob    EventType = 0x80000008
	EvEFIHandoffTables           EventType = 0x80000009
	EvEFIPlatformFirmwareBlob2   EventType = 0x8000000A
	EvEFIHandoffTables2          EventType = 0x8000000B
	EvEFIVariableBoot2           EventType = 0x8000000C
	EvEFIHCRTMEvent              EventType = 0x80000010
	EvEFIVariableAuthority       EventType = 0x800000E0
	EvEFISPDMFirmwareBlob        EventType = 0x800000E1
	EvEFISPDMFirmwareConfig      EventType = 0x800000E2
)

var eventNames = map[EventType]string{
	EvPrebootCert:                "EV_PREBOOT_CERT",
	EvPostCode:                   "EV_POST_CODE",
	EvNoAction:                   "EV_NO_ACTION",
	EvSeparator:                  "EV_SEPARATOR",
	EvAction:                     "EV_ACTION",
	EvEventTag:                   "EV_EVENT_TAG",
	EvSCRTMContents:              "EV_S_CRTM_CONTENTS",
	EvSCRTMVersion:               "EV_S_CRTM_VERSION",
	EvCPUMicrocode:               "EV_CPU_MICROCODE",
	EvPlatformConfigFlags:        "EV_PLATFORM_CONFIG_FLAGS",
	EvTableOfDevices:             "EV_TABLE_OF_DEVICES",
	EvCompactHash:                "EV_COMPACT_HASH",
	EvIPL:                        "EV_IPL",
	EvIPLPartitionData:           "EV_IPL_PARTITION_DATA",
	EvNonhostCode:                "EV_NONHOST_CODE",
	EvNonhostConfig:              "EV_NONHOST_CONFIG",
	EvNonhostInfo:                "EV_NONHOST_INFO",
	EvOmitBootDeviceEvents:       "EV_OMIT_BOOT_DEVICE_EVENTS",
	EvEFIVariableDriverConfig:    "EV_EFI_VARIABLE_DRIVER_CONFIG",
	EvEFIVariableBoot:            "EV_EFI_VARIABLE_BOOT",
	EvEFIBootServicesApplication: "EV_EFI_BOOT_SERVICES_APPLICATION",
	EvEFIBootServicesDriver:      "EV_EFI_BOOT_SERVICES_DRIVER",
	EvEFIRuntimeServicesDriver:   "EV_EFI_RUNTIME_SERVICES_DRIVER",
	EvEFIGPTEvent:                "EV_EFI_GPT_EVENT",
	EvEFIAction:                  "EV_EFI_ACTION",
	EvEFIPlatformFirmwareBlob:    "EV_EFI_PLATFORM_FIRMWARE_BLOB",
	EvEFIHandoffTables:           "EV_EFI_HANDOFF_TABLES",
	EvEFIPlatformFirmwareBlob2:   "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
	EvEFIHandoffTables2:          "EV_EFI_HANDOFF_TABLES2",
	EvEFIVariableBoot2:           "EV_EFI_VARIABLE_BOOT2",
	EvEFIHCRTMEvent:              "EV_EFI_HCRTM_EVENT",
	EvEFIVariableAuthority:       "EV_EFI_VARIABLE_AUTHORITY",
	EvEFISPDMFirmwareBlob:        "EV_EFI_SPDM_FIRMWARE_BLOB",
	EvEFISPDMFirmwareConfig:      "EV_EFI_SPDM_FIRMWARE_CONFIG",
}

// String is the PFP name of t ("EV_SEPARATOR"), or its value in hex.
func (t EventType) String() string {
	if n, ok := eventNames[t]; ok {
		return n
	}
	return fmt.Sprintf("EV_%#08x", uint32(t))
}

// TPM_ALG_ID values of the hash algorithms (TPM 2.0 Part 2 §6.3).
const (
	AlgSHA1     uint16 = 0x0004
	AlgSHA256   uint16 = 0x000B
	AlgSHA384   uint16 = 0x000C
	AlgSHA512   uint16 = 0x000D
	AlgSM3_256  uint16 = 0x0012
	AlgSHA3_256 uint16 = 0x0027
	AlgSHA3_384 uint16 = 0x0028
	AlgSHA3_512 uint16 = 0x0029
)

var algHashes = map[uint16]crypto.Hash{
	AlgSHA1: crypto.SHA1, AlgSHA256: crypto.SHA256, AlgSHA384: crypto.SHA384, AlgSHA512: crypto.SHA512,
	AlgSHA3_256: crypto.SHA3_256, AlgSHA3_384: crypto.SHA3_384, AlgSHA3_512: crypto.SHA3_512,
}

// HashAlg returns the Go hash of a TPM_ALG_ID (false for one Go lacks,
// such as SM3).
func HashAlg(alg uint16) (crypto.Hash, bool) {
	h, ok := algHashes[alg]
	return h, ok
}

// AlgOf returns the TPM_ALG_ID of h.
func AlgOf(h crypto.Hash) (uint16, bool) {
	for a, x := range algHashes {
		if x == h {
			return a, true
		}
	}
	return 0, false
}

// Algorithm is one digestSizes entry of the Spec ID event.
type Algorithm struct {
	ID   uint16 // TPM_ALG_ID
	Size uint16 // digest size in bytes
}

// SpecID is the TCG_EfiSpecIDEvent that opens a crypto-agile log.
type SpecID struct {
	PlatformClass uint32
	VersionMinor  uint8
	VersionMajor  uint8
	Errata        uint8
	UintnSize     uint8
	Algorithms    []Algorithm
	VendorInfo    []byte
}

// specSignature opens the TCG_EfiSpecIDEvent of a crypto-agile log
// (PFP §10.4.5.1); "Spec ID Event00" is the SHA-1-only log of TPM 1.2.
var specSignature = []byte("Spec ID Event03\x00")

// Digest is one TPMT_HA of an event.
type Digest struct {
	Alg   uint16 // TPM_ALG_ID
	Value []byte
}

// Event is one TCG_PCR_EVENT2.
type Event struct {
	// Seq is the event's position in the log, from 1 (0 is the Spec ID
	// event, which Log keeps in Spec).
	Seq     int
	PCR     uint32
	Type    EventType
	Digests []Digest
	Data    []byte
}

// Digest returns the event's digest in bank h, or nil.
func (e Event) Digest(h crypto.Hash) []byte {
	for _, d := range e.Digests {
		if x, ok := HashAlg(d.Alg); ok && x == h {
			return d.Value
		}
	}
	return nil
}

// Log is a parsed crypto-agile event log.
type Log struct {
	Spec   SpecID
	Events []Event
}

// ReadFile reads and parses the log at path (DefaultPath on a device).
func ReadFile(path string) (*Log, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tcglog: %w", err)
	}
	l, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tcglog: %s: %w", path, err)
	}
	return l, nil
}

// ErrNotCryptoAgile says the log is a SHA-1-only log (TPM 1.2, or firmware
// that was asked for the old format): its first event is not the
// "Spec ID Event03" header.
var ErrNotCryptoAgile = errors.New("not a crypto-agile (TPM 2.0) event log: no \"Spec ID Event03\" header")

// reader is a bounds-checked little-endian cursor.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("offset %d: %s: %d bytes needed, %d left (truncated?)", r.off, what, n, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8(what string) uint8 {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// Parse parses a crypto-agile event log (PFP §10.2). Event data is copied
// out of b.
func Parse(b []byte) (*Log, error) {
	r := &reader{b: b}
	// The Spec ID event, a TCG_PCR_EVENT (PFP §10.2.1).
	pcr := r.u32("PCRIndex")
	typ := EventType(r.u32("EventType"))
	r.take(20, "SHA-1 digest")
	size := r.u32("EventSize")
	if r.err != nil {
		return nil, r.err
	}
	if pcr != 0 || typ != EvNoAction || int64(size) > int64(len(b)-r.off) || size < uint32(len(specSignature)) {
		return nil, ErrNotCryptoAgile
	}
	hdr := &reader{b: r.take(int(size), "Spec ID event")}
	if !bytes.Equal(hdr.take(len(specSignature), "signature"), specSignature) {
		return nil, ErrNotCryptoAgile
	}
	var l Log
	l.Spec.PlatformClass = hdr.u32("platformClass")
	l.Spec.VersionMinor = hdr.u8("specVersionMinor")
	l.Spec.VersionMajor = hdr.u8("specVersionMajor")
	l.Spec.Errata = hdr.u8("specErrata")
	l.Spec.UintnSize = hdr.u8("uintnSize")
	n := hdr.u32("numberOfAlgorithms")
	if hdr.err == nil && (n == 0 || n > maxAlgorithms) {
		return nil, fmt.Errorf("Spec ID event: %d algorithms, want 1..%d", n, maxAlgorithms)
	}
	sizes := map[uint16]int{}
	for i := uint32(0); i < n && hdr.err == nil; i++ {
		a := Algorithm{ID: hdr.u16("algorithmId"), Size: hdr.u16("digestSize")}
		if hdr.err != nil {
			break
		}
		if a.Size == 0 || a.Size > maxDigestSize {
			return nil, fmt.Errorf("Spec ID event: algorithm %#04x with digest size %d", a.ID, a.Size)
		}
		if h, ok := HashAlg(a.ID); ok && h.Size() != int(a.Size) {
			return nil, fmt.Errorf("Spec ID event: algorithm %#04x (%v) with digest size %d, want %d", a.ID, h, a.Size, h.Size())
		}
		if _, dup := sizes[a.ID]; dup {
			return nil, fmt.Errorf("Spec ID event: algorithm %#04x listed twice", a.ID)
		}
		sizes[a.ID] = int(a.Size)
		l.Spec.Algorithms = append(l.Spec.Algorithms, a)
	}
	vs := hdr.u8("vendorInfoSize")
	l.Spec.VendorInfo = bytes.Clone(hdr.take(int(vs), "vendorInfo"))
	if hdr.err != nil {
		return nil, fmt.Errorf("Spec ID event: %w", hdr.err)
	}

	// TCG_PCR_EVENT2s (PFP §10.2.2).
	for seq := 1; r.off < len(b); seq++ {
		start := r.off
		e := Event{Seq: seq, PCR: r.u32("PCRIndex"), Type: EventType(r.u32("EventType"))}
		count := r.u32("digest count")
		if r.err == nil && count > uint32(len(sizes)) {
			return nil, fmt.Errorf("event %d at offset %d: %d digests, the header names %d algorithms", seq, start, count, len(sizes))
		}
		for i := uint32(0); i < count && r.err == nil; i++ {
			alg := r.u16("hashAlg")
			sz, ok := sizes[alg]
			if r.err == nil && !ok {
				return nil, fmt.Errorf("event %d at offset %d: digest of algorithm %#04x, which the header does not list", seq, start, alg)
			}
			for _, d := range e.Digests {
				if d.Alg == alg {
					return nil, fmt.Errorf("event %d at offset %d: two digests of algorithm %#04x", seq, start, alg)
				}
			}
			e.Digests = append(e.Digests, Digest{Alg: alg, Value: bytes.Clone(r.take(sz, "digest"))})
		}
		size := r.u32("EventSize")
		if r.err == nil && int64(size) > int64(len(b)-r.off) {
			return nil, fmt.Errorf("event %d at offset %d: EventSize %d, %d bytes left (truncated?)", seq, start, size, len(b)-r.off)
		}
		e.Data = bytes.Clone(r.take(int(size), "event data"))
		if r.err != nil {
			return nil, fmt.Errorf("event %d: %w", seq, r.err)
		}
		l.Events = append(l.Events, e)
	}
	return &l, nil
}

// Marshal encodes l in the format Parse reads (a SHA-1 zero digest in the
// Spec ID event, as PFP §10.2.1 asks).
func (l *Log) Marshal() []byte {
	var spec bytes.Buffer
	spec.Write(specSignature)
	le := binary.LittleEndian
	spec.Write(le.AppendUint32(nil, l.Spec.PlatformClass))
	spec.Write([]byte{l.Spec.VersionMinor, l.Spec.VersionMajor, l.Spec.Errata, l.Spec.UintnSize})
	spec.Write(le.AppendUint32(nil, uint32(len(l.Spec.Algorithms))))
	for _, a := range l.Spec.Algorithms {
		spec.Write(le.AppendUint16(nil, a.ID))
		spec.Write(le.AppendUint16(nil, a.Size))
	}
	spec.WriteByte(uint8(len(l.Spec.VendorInfo)))
	spec.Write(l.Spec.VendorInfo)

	var out []byte
	out = le.AppendUint32(out, 0)
	out = le.AppendUint32(out, uint32(EvNoAction))
	out = append(out, make([]byte, 20)...)
	out = le.AppendUint32(out, uint32(spec.Len()))
	out = append(out, spec.Bytes()...)
	for _, e := range l.Events {
		out = le.AppendUint32(out, e.PCR)
		out = le.AppendUint32(out, uint32(e.Type))
		out = le.AppendUint32(out, uint32(len(e.Digests)))
		for _, d := range e.Digests {
			out = le.AppendUint16(out, d.Alg)
			out = append(out, d.Value...)
		}
		out = le.AppendUint32(out, uint32(len(e.Data)))
		out = append(out, e.Data...)
	}
	return out
}

// startupLocality is the signature of the StartupLocality event
// (PFP §10.4.5.3).
var startupLocality = []byte("StartupLocality\x00")

// Replay recomputes the PCRs of bank h from the log: every event but
// EV_NO_ACTION extends its PCR with its digest in h (TPM 2.0 Part 3
// §22.2), from all zero, or for PCR 0 from the StartupLocality event's
// locality. It returns the PCRs the log touches. An event without a
// digest in h is an error: the log does not cover the bank.
func (l *Log) Replay(h crypto.Hash) (map[int][]byte, error) {
	if !h.Available() {
		return nil, fmt.Errorf("tcglog: hash %v is not available", h)
	}
	out := map[int][]byte{}
	for _, e := range l.Events {
		if e.Type == EvNoAction {
			if e.PCR == 0 && len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality) {
				v := make([]byte, h.Size())
				v[len(v)-1] = e.Data[len(startupLocality)]
				out[0] = v
			}
			continue
		}
		d := e.Digest(h)
		if d == nil {
			return nil, fmt.Errorf("tcglog: event %d (PCR %d, %v) has no %v digest", e.Seq, e.PCR, e.Type, h)
		}
		if e.PCR > 23 {
			return nil, fmt.Errorf("tcglog: event %d: PCR %d out of range 0-23", e.Seq, e.PCR)
		}
		old := out[int(e.PCR)]
		if old == nil {
			old = make([]byte, h.Size())
		}
		x := h.New()
		x.Write(old)
		x.Write(d)
		out[int(e.PCR)] = x.Sum(nil)
	}
	return out, nil
}

// Banks returns the hashes of the header's algorithms Go implements, in
// the header's order.
func (l *Log) Banks() []crypto.Hash {
	var out []crypto.Hash
	for _, a := range l.Spec.Algorithms {
		if h, ok := HashAlg(a.ID); ok && h.Available() {
			out = append(out, h)
		}
	}
	return out
}

// Filter returns the events measured into pcr (with EV_NO_ACTION ones).
func (l *Log) Filter(pcr int) []Event {
	var out []Event
	for _, e := range l.Events {
		if int64(e.PCR) == int64(pcr) {
			out = append(out, e)
		}
	}
	return out
}
