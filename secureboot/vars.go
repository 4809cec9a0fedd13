package secureboot

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/foxboron/go-uefi/efi/attributes"
	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/efi/util"
	"github.com/foxboron/go-uefi/pkcs7"

	"github.com/keelboot/keel/format/uefi"
)

// toEFIGUID and fromEFIGUID convert between uefi.GUID and go-uefi's
// EFI_GUID struct, which its signature lists take.
func toEFIGUID(g uefi.GUID) util.EFIGUID {
	var e util.EFIGUID
	binary.Read(bytes.NewReader(g[:]), binary.LittleEndian, &e) // cannot fail: 16 bytes
	return e
}

func fromEFIGUID(e util.EFIGUID) uefi.GUID {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, e) // cannot fail
	return uefi.GUID(b.Bytes())
}

// OwnerGUID owns keel's EFI_SIGNATURE_DATA entries (the SignatureOwner of
// UEFI 2.10 section 32.4.1): a random GUID made for keel, so that a
// listing of db shows keel's entries. The vendor GUIDs of the variables
// are package format/uefi's.
var OwnerGUID = uefi.MustParseGUID("51743a4b-2c12-487e-bd4e-b0105fdb8961")

// VariableAttributes are the attributes of PK, KEK and db, part of the
// signed data of AuthVariable: EFI_VARIABLE_NON_VOLATILE,
// EFI_VARIABLE_BOOTSERVICE_ACCESS, EFI_VARIABLE_RUNTIME_ACCESS and
// EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS (0x27): a write that
// replaces the variable.
const VariableAttributes = uint32(attributes.EFI_VARIABLE_NON_VOLATILE |
	attributes.EFI_VARIABLE_BOOTSERVICE_ACCESS |
	attributes.EFI_VARIABLE_RUNTIME_ACCESS |
	attributes.EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS)

// SignatureList returns an EFI_SIGNATURE_LIST (UEFI 2.10 section 32.4.1)
// with one EFI_CERT_X509_GUID entry: OwnerGUID and cert in DER. It is the
// Data of a PK, KEK or db variable.
func SignatureList(cert *x509.Certificate) []byte {
	l := signature.NewSignatureList(signature.CERT_X509_GUID)
	if err := l.AppendBytes(toEFIGUID(OwnerGUID), cert.Raw); err != nil {
		panic(err) // only for a duplicate entry: the list is new
	}
	return l.Bytes()
}

// AuthVariable returns what SetVariable (or efivarfs, after the 4-byte
// attributes) takes to write data into the time-based authenticated
// variable name of vendor guid with VariableAttributes: an
// EFI_VARIABLE_AUTHENTICATION_2 descriptor (UEFI 2.10 section 8.2.2)
// followed by data. The descriptor holds timestamp (as UTC, to the second:
// the EFI_TIME's Nanosecond, TimeZone and Daylight are zero, as 8.2.2
// requires) and a WIN_CERTIFICATE_UEFI_GUID of type
// EFI_CERT_TYPE_PKCS7_GUID whose CertData is a DER PKCS#7 SignedData (no
// ContentInfo around it) by key, with cert embedded, detached, over
// name (UTF-16LE, no terminating zero) || guid || VariableAttributes
// (UINT32 LE) || timestamp (EFI_TIME) || data. As 8.2.2 asks, the
// SignedData has no authenticated attributes: the RSA PKCS#1 v1.5
// signature is over the SHA-256 of that serialization, so the same inputs
// give the same bytes.
//
// Which key must sign is the firmware's rule: PK for PK and KEK, KEK (or
// PK) for db and dbx. A later update of a variable needs a later
// timestamp than the last one written.
func AuthVariable(name string, guid uefi.GUID, data []byte, cert *x509.Certificate, key crypto.Signer, timestamp time.Time) ([]byte, error) {
	if name == "" {
		return nil, errors.New("secureboot: auth variable: no name")
	}
	if err := checkPair(cert, key); err != nil {
		return nil, fmt.Errorf("secureboot: auth variable %s: %w", name, err)
	}
	t := timestamp.UTC()
	if t.Year() < 1900 || t.Year() > 9999 {
		return nil, fmt.Errorf("secureboot: auth variable %s: time stamp %v is outside EFI_TIME's years 1900 to 9999", name, timestamp)
	}
	et := util.EFITime{
		Year: uint16(t.Year()), Month: uint8(t.Month()), Day: uint8(t.Day()),
		Hour: uint8(t.Hour()), Minute: uint8(t.Minute()), Second: uint8(t.Second()),
	}
	var signed bytes.Buffer
	for _, u := range utf16.Encode([]rune(name)) {
		binary.Write(&signed, binary.LittleEndian, u)
	}
	signed.Write(guid[:])
	binary.Write(&signed, binary.LittleEndian, VariableAttributes)
	binary.Write(&signed, binary.LittleEndian, et)
	signed.Write(data)

	ci, err := pkcs7.SignPKCS7(key, cert, pkcs7.OIDData, signed.Bytes(), pkcs7.NoAttr())
	if err != nil {
		return nil, fmt.Errorf("secureboot: auth variable %s: %w", name, err)
	}
	// SignPKCS7 wraps the SignedData in a ContentInfo; the descriptor
	// holds the SignedData itself, as efitools' sign-efi-sig-list writes
	// it (the tests compare the two byte for byte).
	sd, err := unwrapContentInfo(ci)
	if err != nil {
		return nil, fmt.Errorf("secureboot: auth variable %s: %w", name, err)
	}
	auth := signature.NewEFIVariableAuthentication2()
	auth.Time = et
	auth.AuthInfo.Header.Length += uint32(len(sd))
	auth.AuthInfo.CertData = sd
	var out bytes.Buffer
	auth.Marshal(&out)
	out.Write(data)
	return out.Bytes(), nil
}

// unwrapContentInfo returns the content of a PKCS#7 ContentInfo that
// holds a SignedData: the SignedData's DER.
func unwrapContentInfo(ci []byte) ([]byte, error) {
	var v struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue // [0] EXPLICIT SignedData
	}
	rest, err := asn1.Unmarshal(ci, &v)
	if err != nil {
		return nil, fmt.Errorf("PKCS#7 ContentInfo: %w", err)
	}
	if len(rest) != 0 || !v.Type.Equal(pkcs7.OIDSignedData) {
		return nil, fmt.Errorf("PKCS#7 ContentInfo of type %v, want SignedData", v.Type)
	}
	var sd asn1.RawValue
	if v.Content.Class != asn1.ClassContextSpecific || v.Content.Tag != 0 || !v.Content.IsCompound {
		return nil, errors.New("PKCS#7 ContentInfo without [0] content")
	}
	if rest, err := asn1.Unmarshal(v.Content.Bytes, &sd); err != nil || len(rest) != 0 || sd.Tag != asn1.TagSequence {
		return nil, errors.New("PKCS#7 ContentInfo: the content is not one SignedData SEQUENCE")
	}
	return sd.FullBytes, nil
}

// Variable is one authenticated variable write of the enrolment.
type Variable struct {
	// Name and GUID name the variable: "db" in
	// uefi.ImageSecurityDatabaseGUID(), "KEK" and "PK" in uefi.GlobalVariableGUID().
	Name string
	GUID uefi.GUID
	// Attributes are VariableAttributes.
	Attributes uint32
	// Data is AuthVariable's result: what SetVariable takes.
	Data []byte
	// Signer is the key that signed it (PK or KEK).
	Signer string
}

// EfivarfsName is the variable's file name under efivarfs: NAME-GUID.
func (v Variable) EfivarfsName() string { return uefi.VarFile(v.Name, v.GUID) }

// EfivarfsData is what a write to the variable's efivarfs file takes: the
// attributes (UINT32 little-endian), then Data.
func (v Variable) EfivarfsData() []byte {
	b := binary.LittleEndian.AppendUint32(nil, v.Attributes)
	return append(b, v.Data...)
}

// Enrolment returns the writes that enrol the keys in dir (GenerateKeys)
// into a firmware in setup mode, in the order to make them: db (its
// certificate, signed by KEK), KEK (signed by PK), then PK (self-signed),
// whose write ends setup mode. Each holds the SignatureList of the key's
// certificate and timestamp.
func Enrolment(dir string, timestamp time.Time) ([]Variable, error) {
	type kp struct {
		cert *x509.Certificate
		key  crypto.Signer
	}
	keys := map[string]kp{}
	for _, n := range KeyNames {
		c, k, err := LoadKey(dir, n)
		if err != nil {
			return nil, err
		}
		keys[n] = kp{c, k}
	}
	var vars []Variable
	for _, w := range []struct {
		name   string
		guid   uefi.GUID
		signer string
	}{{DB, uefi.ImageSecurityDatabaseGUID(), KEK}, {KEK, uefi.GlobalVariableGUID(), PK}, {PK, uefi.GlobalVariableGUID(), PK}} {
		s := keys[w.signer]
		data, err := AuthVariable(w.name, w.guid, SignatureList(keys[w.name].cert), s.cert, s.key, timestamp)
		if err != nil {
			return nil, err
		}
		vars = append(vars, Variable{Name: w.name, GUID: w.guid, Attributes: VariableAttributes, Data: data, Signer: w.signer})
	}
	return vars, nil
}
