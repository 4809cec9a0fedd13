package tcglog

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/secureboot"
)

// PCRSecureBoot is PCR 7, the Secure Boot policy PCR (PFP §3.3.4.8).
const PCRSecureBoot = 7

// SecureBootState is what UEFI firmware measures into PCR 7 (PFP
// §3.3.4.8), in the order EDK2's Tcg2Dxe and DxeImageVerificationLib
// measure it (OVMF; checked against the log of Debian's OVMF 2022.11
// secboot build, testdata/):
//
//  1. five EV_EFI_VARIABLE_DRIVER_CONFIG events, each a UEFI_VARIABLE_DATA
//     (PFP §10.4.4) of one variable, digest = H(the whole structure):
//     SecureBoot (EFI_GLOBAL_VARIABLE, one byte: 1 when the firmware
//     enforces Secure Boot), PK, KEK (EFI_GLOBAL_VARIABLE), db, dbx
//     (EFI_IMAGE_SECURITY_DATABASE_GUID), their data the variable's
//     EFI_SIGNATURE_LISTs; a variable that does not exist is measured
//     with no data (VariableDataLength 0);
//  2. EV_SEPARATOR, four zero bytes (PFP §3.3.2.2), at ReadyToBoot;
//  3. for every image the firmware verified against db (keel's UKI), an
//     EV_EFI_VARIABLE_AUTHORITY event: a UEFI_VARIABLE_DATA of "db"
//     whose data is the EFI_SIGNATURE_DATA (owner GUID and certificate)
//     of the db entry that verified it; EDK2 measures each distinct
//     entry once per boot, however many images it verified.
type SecureBootState struct {
	// SecureBoot is the SecureBoot variable's value: the firmware
	// enforces Secure Boot (keys enrolled, not in setup mode).
	SecureBoot bool
	// PK, KEK, DB and DBX are the variables' data (EFI_SIGNATURE_LISTs,
	// UEFI 2.10 §32.4.1) as the firmware holds them; nil: not set.
	PK, KEK, DB, DBX []byte
	// Authorities are the EFI_SIGNATURE_DATA of the db entries that
	// verified images this boot, in the order of first use (Authority).
	Authorities [][]byte
}

// Authority is the EFI_SIGNATURE_DATA (UEFI 2.10 §32.4.1) of a db entry:
// its owner GUID followed by the DER certificate, what an
// EV_EFI_VARIABLE_AUTHORITY event holds.
func Authority(owner uefi.GUID, cert *x509.Certificate) []byte {
	return append(append([]byte(nil), owner[:]...), cert.Raw...)
}

// separatorData is the EV_SEPARATOR event of a normal boot (PFP §3.3.2.2:
// 0x00000000; 0x00000001 signals an error).
var separatorData = []byte{0, 0, 0, 0}

// Events returns the PCR 7 events the firmware logs for s, with digests in
// banks.
func (s SecureBootState) Events(banks []crypto.Hash) ([]Event, error) {
	sb := byte(0)
	if s.SecureBoot {
		sb = 1
	}
	type ev struct {
		typ  EventType
		data []byte
	}
	evs := []ev{
		{EvEFIVariableDriverConfig, VariableData{uefi.GlobalVariableGUID(), uefi.SecureBoot, []byte{sb}}.Marshal()},
		{EvEFIVariableDriverConfig, VariableData{uefi.GlobalVariableGUID(), uefi.PK, s.PK}.Marshal()},
		{EvEFIVariableDriverConfig, VariableData{uefi.GlobalVariableGUID(), uefi.KEK, s.KEK}.Marshal()},
		{EvEFIVariableDriverConfig, VariableData{uefi.ImageSecurityDatabaseGUID(), uefi.DB, s.DB}.Marshal()},
		{EvEFIVariableDriverConfig, VariableData{uefi.ImageSecurityDatabaseGUID(), uefi.DBX, s.DBX}.Marshal()},
		{EvSeparator, separatorData},
	}
	seen := map[string]bool{}
	for _, a := range s.Authorities {
		if seen[string(a)] {
			continue
		}
		seen[string(a)] = true
		evs = append(evs, ev{EvEFIVariableAuthority, VariableData{uefi.ImageSecurityDatabaseGUID(), uefi.DB, a}.Marshal()})
	}
	var out []Event
	for i, e := range evs {
		x := Event{Seq: i + 1, PCR: PCRSecureBoot, Type: e.typ, Data: e.data}
		for _, h := range banks {
			alg, ok := AlgOf(h)
			if !ok || !h.Available() {
				return nil, fmt.Errorf("tcglog: bank %v is not supported", h)
			}
			d := h.New()
			d.Write(e.data)
			x.Digests = append(x.Digests, Digest{Alg: alg, Value: d.Sum(nil)})
		}
		out = append(out, x)
	}
	return out, nil
}

// PCR7 predicts PCR 7 in each of banks after the firmware measured s (and
// before the OS measures anything into it: keel's chain does not).
func (s SecureBootState) PCR7(banks []crypto.Hash) (map[crypto.Hash][]byte, error) {
	evs, err := s.Events(banks)
	if err != nil {
		return nil, err
	}
	l := Log{Events: evs}
	out := map[crypto.Hash][]byte{}
	for _, h := range banks {
		v, err := l.Replay(h)
		if err != nil {
			return nil, err
		}
		out[h] = v[PCRSecureBoot]
	}
	return out, nil
}

// EnrolledState is the PCR 7 state of a firmware with keel's keys from dir
// enrolled (and nothing else: no dbx) and Secure Boot on, booting keel's
// UKI signed with the db key: the one authority is db's certificate
// entry. dir is an enrolment directory (db.auth, KEK.auth, PK.auth, from
// `keel secureboot enrolment`: the variables' data is what follows their
// EFI_VARIABLE_AUTHENTICATION_2 descriptors) or a key directory (PK.crt,
// KEK.crt, db.crt, from `keel secureboot keygen`: each variable a
// secureboot.SignatureList, as the enrolment files hold).
func EnrolledState(dir string) (SecureBootState, error) {
	st := SecureBootState{SecureBoot: true}
	dst := map[string]*[]byte{secureboot.PK: &st.PK, secureboot.KEK: &st.KEK, secureboot.DB: &st.DB}
	if _, err := os.Stat(filepath.Join(dir, secureboot.AuthFile(secureboot.PK))); err == nil {
		vars, err := secureboot.ReadEnrolment(dir) // checks them as the firmware will
		if err != nil {
			return st, err
		}
		for _, v := range vars {
			d, err := authData(v.Data)
			if err != nil {
				return st, fmt.Errorf("tcglog: %s: %w", filepath.Join(dir, secureboot.AuthFile(v.Name)), err)
			}
			*dst[v.Name] = d
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("tcglog: %w", err)
	} else {
		for _, name := range secureboot.KeyNames {
			c, err := secureboot.ReadCertificate(secureboot.CertPath(dir, name))
			if err != nil {
				return st, fmt.Errorf("tcglog: %s is neither an enrolment directory (PK.auth, KEK.auth, db.auth) nor a key directory (PK.crt, KEK.crt, db.crt): %w", dir, err)
			}
			*dst[name] = secureboot.SignatureList(c)
		}
	}
	a, err := firstCertEntry(st.DB)
	if err != nil {
		return st, fmt.Errorf("tcglog: %s: db: %w", dir, err)
	}
	st.Authorities = [][]byte{a}
	return st, nil
}

// authData returns the variable data of an authenticated write: what
// follows EFI_VARIABLE_AUTHENTICATION_2 (UEFI 2.10 §8.2.2: an EFI_TIME,
// 16 bytes, then a WIN_CERTIFICATE_UEFI_GUID of dwLength bytes).
func authData(b []byte) ([]byte, error) {
	if len(b) < 16+8 {
		return nil, errors.New("too short for an EFI_VARIABLE_AUTHENTICATION_2 descriptor")
	}
	n := binary.LittleEndian.Uint32(b[16:20])
	if int64(n) > int64(len(b)-16) {
		return nil, fmt.Errorf("WIN_CERTIFICATE of %d bytes in %d", n, len(b)-16)
	}
	return bytes.Clone(b[16+n:]), nil
}

// firstCertEntry is the EFI_SIGNATURE_DATA of the first X.509 entry of a
// signature database: keel's db holds one certificate, the UKI's signer.
func firstCertEntry(db []byte) ([]byte, error) {
	for b := db; len(b) >= 28; {
		var typ uefi.GUID
		copy(typ[:], b[:16])
		listSize := binary.LittleEndian.Uint32(b[16:20])
		hdrSize := binary.LittleEndian.Uint32(b[20:24])
		sigSize := binary.LittleEndian.Uint32(b[24:28])
		if listSize < 28 || int64(listSize) > int64(len(b)) || int64(hdrSize)+int64(sigSize) > int64(listSize)-28 || sigSize <= 16 {
			return nil, errors.New("a malformed EFI_SIGNATURE_LIST")
		}
		if typ == certX509GUID {
			return bytes.Clone(b[28+hdrSize : 28+hdrSize+sigSize]), nil
		}
		b = b[listSize:]
	}
	return nil, errors.New("no X.509 certificate")
}
