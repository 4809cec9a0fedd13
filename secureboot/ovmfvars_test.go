package secureboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/foxboron/go-uefi/efi/signature"

	"github.com/keelboot/keel/format/uefi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Debian's OVMF variable stores (package ovmf, scripts/install-deps.sh):
// the empty template keel's boards copy, and the one Debian enrolled with
// Microsoft's and Red Hat's keys by booting OVMF (written by edk2 itself).
const (
	ovmfVarsTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfVarsEnrolled = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	ovmfVars2M       = "/usr/share/OVMF/OVMF_VARS.fd"
	ovmfCode         = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
)

func readOVMF(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (install the Debian package ovmf: scripts/install-deps.sh does)", err)
	}
	return b
}

// syntheticStore is a small variable store flash image as edk2 lays one
// out: an EFI_FIRMWARE_VOLUME_HEADER (one block map entry and its
// terminator: 72 bytes, checksummed), an empty authenticated
// VARIABLE_STORE_HEADER of storeSize bytes, and tail bytes standing for
// the fault-tolerant-write areas.
func syntheticStore(storeSize, tail int) []byte {
	const hdrLen = 72
	fvLen := hdrLen + storeSize + tail
	b := bytes.Repeat([]byte{0xff}, fvLen)
	le := binary.LittleEndian
	clear(b[:hdrLen])
	copy(b[16:32], systemNvDataFvGUID[:])
	le.PutUint64(b[32:], uint64(fvLen))
	le.PutUint32(b[40:], fvSignature)
	le.PutUint32(b[44:], 0x4feff) // EFI_FVB_ATTRIBUTES_2, as OVMF's
	le.PutUint16(b[48:], hdrLen)
	b[55] = fvRevision
	le.PutUint32(b[56:], 1)
	le.PutUint32(b[60:], uint32(fvLen))
	var sum uint16
	for i := 0; i < hdrLen; i += 2 {
		sum += le.Uint16(b[i:])
	}
	le.PutUint16(b[50:], -sum)
	h := b[hdrLen:]
	copy(h[:16], authenticatedVariableGUID[:])
	le.PutUint32(h[16:], uint32(storeSize))
	h[20], h[21] = varStoreFormatted, varStoreHealthy
	clear(h[22:28])
	for i := range tail {
		b[hdrLen+storeSize+i] = byte(i) // not erased: must survive as it is
	}
	return b
}

// fakeAuth is an enrolment write of data with a well-formed
// EFI_VARIABLE_AUTHENTICATION_2 descriptor (time stamp ts, year 2024)
// whose signature is not one: EnrolVarStore does not verify signatures
// (ReadEnrolment does), so these make deterministic enrolments.
func fakeAuth(name string, guid uefi.GUID, second byte, data []byte) Variable {
	b := []byte{0xe8, 0x07, 3, 14, 15, 9, second, 0, 0, 0, 0, 0, 0, 0, 0, 0} // EFI_TIME 2024-03-14 15:09
	sig := []byte("not a PKCS#7 SignedData")
	b = binary.LittleEndian.AppendUint32(b, uint32(24+len(sig)))
	b = binary.LittleEndian.AppendUint16(b, signature.WIN_CERTIFICATE_REVISION)
	b = binary.LittleEndian.AppendUint16(b, uint16(signature.WIN_CERT_TYPE_EFI_GUID))
	pkcs7 := fromEFIGUID(signature.EFI_CERT_TYPE_PKCS7_GUID)
	b = append(append(append(b, pkcs7[:]...), sig...), data...)
	return Variable{Name: name, GUID: guid, Attributes: VariableAttributes, Data: b}
}

func fakeEnrolment() []Variable {
	return []Variable{
		fakeAuth(DB, uefi.ImageSecurityDatabaseGUID(), 1, []byte("the db signature list")),
		fakeAuth(KEK, uefi.GlobalVariableGUID(), 2, []byte("the KEK signature list")),
		fakeAuth(PK, uefi.GlobalVariableGUID(), 3, []byte("the PK signature list")),
	}
}

// realEnrolment is the enrolment of a fresh key set, as ReadEnrolment
// reads it back.
func realEnrolment(t *testing.T) (keyDir string, vars []Variable) {
	t.Helper()
	keyDir, dir := enrolmentDir(t)
	vars, err := ReadEnrolment(dir)
	if err != nil {
		t.Fatal(err)
	}
	return keyDir, vars
}

func mustParse(t testing.TB, b []byte) *VarStore {
	t.Helper()
	s, err := ParseVarStore(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// listing describes a store's variables, one a line, for the golden
// files and failure messages.
func listing(s *VarStore) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "store %#x..%#x, %d bytes free\n", s.store, s.end, s.Free())
	for _, v := range s.Variables {
		sum := sha256.Sum256(v.Data)
		fmt.Fprintf(&sb, "%#06x state %#02x attr %#02x mc %d pki %d time %x %s-%s %d bytes sha256 %x\n",
			v.Offset, v.State, v.Attributes, v.MonotonicCount, v.PubKeyIndex, v.TimeStamp, v.Name, v.GUID, len(v.Data), sum[:8])
	}
	return sb.String()
}

// TestParseDebianTemplates: Debian's empty templates (4 MiB and 2 MiB
// flash) are authenticated stores with no variable and erased free space;
// its enrolled store, written by edk2 itself, parses into the variables
// an enrolled OVMF holds, dead copies (edk2's states 0x3C, 0x3D) among
// them.
func TestParseDebianTemplates(t *testing.T) {
	for _, c := range []struct {
		path        string
		store, size int
	}{{ovmfVarsTemplate, 0x48, 0x3ffb8}, {ovmfVars2M, 0x48, 0xdfb8}} {
		s := mustParse(t, readOVMF(t, c.path))
		if len(s.Variables) != 0 || s.store != c.store || s.end != c.store+c.size || s.Free() != c.size-varStoreHeaderSize {
			t.Errorf("%s:\n%s", c.path, listing(s))
		}
	}

	s := mustParse(t, readOVMF(t, ovmfVarsEnrolled))
	dead := 0
	for _, v := range s.Variables {
		if !v.Live() {
			dead++
		}
	}
	if dead == 0 {
		t.Errorf("no dead copy in %s:\n%s", ovmfVarsEnrolled, listing(s))
	}
	for _, w := range []struct {
		name string
		guid uefi.GUID
		attr uint32
		data string // hex, "" for any
	}{
		{PK, uefi.GlobalVariableGUID(), 0x27, ""},
		{KEK, uefi.GlobalVariableGUID(), 0x27, ""},
		{DB, uefi.ImageSecurityDatabaseGUID(), 0x27, ""},
		{"dbx", uefi.ImageSecurityDatabaseGUID(), 0x27, ""},
		{"SecureBootEnable", SecureBootEnableDisableGUID, attrNVBS, "01"},
		{"CustomMode", CustomModeEnableGUID, attrNVBS, "00"},
		{"VendorKeysNv", VendorKeysNvGUID, attrNVBSAT, "00"},
		{"Boot0002", uefi.GlobalVariableGUID(), 0x07, ""},
		{"MTC", uefi.MustParseGUID("eb704011-1402-11d3-8e77-00a0c969723b"), 0x07, "01000000"},
	} {
		v, ok := s.Lookup(w.name, w.guid)
		if !ok || v.Attributes != w.attr || (w.data != "" && hex.EncodeToString(v.Data) != w.data) {
			t.Errorf("%s in %s: %v %+v", w.name, ovmfVarsEnrolled, ok, v)
			continue
		}
		if w.attr == VariableAttributes && (v.TimeStamp == [16]byte{} || v.MonotonicCount != 0 || v.PubKeyIndex != 0) {
			t.Errorf("%s: time stamp %x, monotonic count %d, public key index %d", w.name, v.TimeStamp, v.MonotonicCount, v.PubKeyIndex)
		}
		if w.name == PK {
			if cs, err := listCertificates(v.Data, false); err != nil || len(cs) != 1 {
				t.Errorf("PK of %s: %d certificates, %v", ovmfVarsEnrolled, len(cs), err)
			}
		}
	}
}

// TestEnrolVarStore: keel's enrolment written into Debian's template
// parses back with PK, KEK and db holding the signature lists of the key
// directory's certificates and their files' time stamps, and edk2's
// control variables with the attributes and values of Debian's enrolled
// store; everything outside the store's erased space is as it was; the
// same inputs give the same bytes, and the input is not changed.
func TestEnrolVarStore(t *testing.T) {
	keyDir, vars := realEnrolment(t)
	tmpl := readOVMF(t, ovmfVarsTemplate)
	orig := bytes.Clone(tmpl)
	out, err := EnrolVarStore(tmpl, vars, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tmpl, orig) {
		t.Error("EnrolVarStore changed its input")
	}
	if len(out) != len(tmpl) {
		t.Fatalf("%d bytes out of %d", len(out), len(tmpl))
	}
	s0, s := mustParse(t, tmpl), mustParse(t, out)
	if !bytes.Equal(out[:s0.next], tmpl[:s0.next]) || !bytes.Equal(out[s.next:], tmpl[s.next:]) {
		t.Error("bytes outside the erased space changed (the firmware volume header, the store header or the fault-tolerant-write areas)")
	}
	if again, err := EnrolVarStore(tmpl, vars, false); err != nil || !bytes.Equal(again, out) {
		t.Errorf("a second EnrolVarStore differs (%v)", err)
	}

	for _, v := range vars {
		cert, _, err := LoadKey(keyDir, v.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := s.Lookup(v.Name, v.GUID)
		if !ok {
			t.Fatalf("no %s in the store:\n%s", v.Name, listing(s))
		}
		if got.State != VarAdded || got.Attributes != VariableAttributes || got.MonotonicCount != 0 || got.PubKeyIndex != 0 {
			t.Errorf("%s: %+v", v.Name, got)
		}
		if !bytes.Equal(got.Data, SignatureList(cert)) {
			t.Errorf("%s holds %d bytes, want the signature list of %s (%d bytes)", v.Name, len(got.Data), CertPath(keyDir, v.Name), len(SignatureList(cert)))
		}
		if !bytes.Equal(got.TimeStamp[:], v.Data[:16]) {
			t.Errorf("%s: time stamp %x, want the descriptor's %x", v.Name, got.TimeStamp, v.Data[:16])
		}
	}
	ms := mustParse(t, readOVMF(t, ovmfVarsEnrolled))
	for _, w := range []struct {
		name string
		guid uefi.GUID
	}{{"SecureBootEnable", SecureBootEnableDisableGUID}, {"CustomMode", CustomModeEnableGUID}, {"VendorKeysNv", VendorKeysNvGUID}} {
		got, ok := s.Lookup(w.name, w.guid)
		want, _ := ms.Lookup(w.name, w.guid)
		if !ok || got.Attributes != want.Attributes || !bytes.Equal(got.Data, want.Data) || got.TimeStamp != want.TimeStamp {
			t.Errorf("%s: %+v, want it as edk2 wrote it in %s: %+v", w.name, got, ovmfVarsEnrolled, want)
		}
	}
	if len(s.Variables) != 6 || s.Variables[0].Name != DB || s.Variables[2].Name != PK {
		t.Errorf("want db, KEK, PK, VendorKeysNv, SecureBootEnable, CustomMode:\n%s", listing(s))
	}
	for _, v := range s.Variables {
		if v.Offset%varHeaderAlignment != 0 {
			t.Errorf("%s at %#x: not 4-byte aligned", v.Name, v.Offset)
		}
	}
}

// TestEnrolVarStoreGolden pins the bytes EnrolVarStore writes (headers,
// names, alignment padding) for a fixed enrolment into a small store.
// go test -run TestEnrolVarStoreGolden -update rewrites the golden file.
func TestEnrolVarStoreGolden(t *testing.T) {
	in := syntheticStore(0x400, 16)
	out, err := EnrolVarStore(in, fakeEnrolment(), false)
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, out)
	got := listing(s) + "\n" + hex.Dump(out[72+varStoreHeaderSize:s.next+8])
	p := filepath.Join("testdata", "ovmfvars-enrolled.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test -run TestEnrolVarStoreGolden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("the enrolled store differs from %s (-update rewrites it):\n%s", p, got)
	}
}

// TestEnrolVarStoreReplace: a store with a PK is refused, unless
// replace: then the old PK, KEK, db and control variables are marked
// deleted as edk2 marks them (State & VAR_DELETED) and keel's are the live
// copies; a template's dbx and other variables stay.
func TestEnrolVarStoreReplace(t *testing.T) {
	_, vars := realEnrolment(t)
	once, err := EnrolVarStore(readOVMF(t, ovmfVarsTemplate), vars, false)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := EnrolVarStore(once, vars, false); !errors.Is(err, ErrPKEnrolled) || out != nil || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("enrolling twice: %v", err)
	}
	twice, err := EnrolVarStore(once, vars, true)
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, twice)
	if len(s.Variables) != 12 {
		t.Fatalf("want two copies of each:\n%s", listing(s))
	}
	for i, v := range s.Variables {
		if want := map[bool]uint8{true: VarAdded & VarDeleted, false: VarAdded}[i < 6]; v.State != want {
			t.Errorf("%s at %#x: state %#x, want %#x", v.Name, v.Offset, v.State, want)
		}
	}

	ms := readOVMF(t, ovmfVarsEnrolled)
	if _, err := EnrolVarStore(ms, vars, false); !errors.Is(err, ErrPKEnrolled) {
		t.Errorf("Debian's enrolled store: %v", err)
	}
	out, err := EnrolVarStore(ms, vars, true)
	if err != nil {
		t.Fatal(err)
	}
	s0, s := mustParse(t, ms), mustParse(t, out)
	for _, v := range vars {
		got, _ := s.Lookup(v.Name, v.GUID)
		old, _ := s0.Lookup(v.Name, v.GUID)
		if got.Offset < s0.next || out[old.Offset+2] != old.State&VarDeleted {
			t.Errorf("%s: the live copy at %#x, the old one's state %#x", v.Name, got.Offset, out[old.Offset+2])
		}
	}
	dbx0, _ := s0.Lookup("dbx", uefi.ImageSecurityDatabaseGUID())
	if dbx, ok := s.Lookup("dbx", uefi.ImageSecurityDatabaseGUID()); !ok || dbx.Offset != dbx0.Offset {
		t.Errorf("dbx not kept: %+v", dbx)
	}
	if n := len(s.Variables) - len(s0.Variables); n != 6 {
		t.Errorf("%d variables added, want 6", n)
	}
}

// TestParseVarStoreRefuses: files that are not an edk2 authenticated
// variable store, or a damaged one, are refused with what is wrong, and
// EnrolVarStore returns no image for them, nor for a full store or an
// incomplete enrolment.
func TestParseVarStoreRefuses(t *testing.T) {
	tmpl := readOVMF(t, ovmfVarsTemplate)
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(tmpl)
		f(b)
		return b
	}
	full := syntheticStore(0x200, 0)
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"text", bytes.Repeat([]byte("not a firmware volume "), 10), `no firmware volume signature "_FVH"`},
		{"code", readOVMF(t, ovmfCode), "not a variable store"},
		{"truncated", tmpl[:0x10000], "truncated"},
		{"checksum", mod(func(b []byte) { b[44]++ }), "checksum"},
		{"revision", mod(func(b []byte) { b[55] = 1 }), "revision 1"},
		{"no auth", mod(func(b []byte) { copy(b[0x48:], variableGUID[:]) }), "without authenticated variables"},
		{"store guid", mod(func(b []byte) { b[0x48] ^= 1 }), "not an edk2 variable store"},
		{"unformatted", mod(func(b []byte) { b[0x48+20] = 0xff }), "Format 0xff"},
		{"store size", mod(func(b []byte) { binary.LittleEndian.PutUint32(b[0x48+16:], 0x100000) }), "does not fit"},
		{"not erased", mod(func(b []byte) { b[0x3000] = 0 }), "not erased"},
		{"header past end", headerPastEnd(), "variable header at 0x144 runs past"},
		{"variable past end", mod(func(b []byte) {
			binary.LittleEndian.PutUint16(b[0x64:], varStartID)
			binary.LittleEndian.PutUint32(b[0x64+40:], 0x40000)
		}), "runs past the store's end"},
		{"full", full, "too full"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := EnrolVarStore(c.in, fakeEnrolment(), true)
			if err == nil || !strings.Contains(err.Error(), c.want) || out != nil {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}

	base := syntheticStore(0x1000, 0)
	for _, c := range []struct {
		name string
		vars []Variable
		want string
	}{
		{"no PK", fakeEnrolment()[:2], "no PK"},
		{"twice", append(fakeEnrolment(), fakeEnrolment()[0]), "db given twice"},
		{"dbx", append(fakeEnrolment(), fakeAuth("dbx", uefi.ImageSecurityDatabaseGUID(), 4, nil)), "db, KEK and PK only"},
		{"guid", []Variable{fakeAuth(PK, uefi.ImageSecurityDatabaseGUID(), 1, nil)}, "want 8be4df61"},
		{"not auth", []Variable{{Name: DB, GUID: uefi.ImageSecurityDatabaseGUID(), Attributes: VariableAttributes, Data: []byte("junk")}}, "too short"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := EnrolVarStore(base, c.vars, false)
			if err == nil || !strings.Contains(err.Error(), c.want) || out != nil {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// headerPastEnd is a store of 0x100 bytes whose one variable ends 4
// bytes before the store's end, followed by a StartId with no room for
// the rest of its header.
func headerPastEnd() []byte {
	b := syntheticStore(0x100, 0)
	le := binary.LittleEndian
	le.PutUint16(b[0x64:], varStartID)
	b[0x66] = VarAdded
	le.PutUint32(b[0x64+36:], 2)               // NameSize: the terminating zero
	le.PutUint32(b[0x64+40:], 0x144-0x64-60-2) // DataSize: up to 0x144
	clear(b[0x64+60 : 0x144])
	le.PutUint16(b[0x144:], varStartID)
	return b
}

// TestOVMFVars reads the template and the enrolment files as the CLI
// does, and names the template in its errors.
func TestOVMFVars(t *testing.T) {
	_, dir := enrolmentDir(t)
	out, err := OVMFVars(ovmfVarsTemplate, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mustParse(t, out).Lookup(PK, uefi.GlobalVariableGUID()); !ok {
		t.Error("no PK")
	}
	if _, err := OVMFVars(ovmfCode, dir, false); err == nil || !strings.Contains(err.Error(), ovmfCode) {
		t.Errorf("the code file: %v", err)
	}
	if _, err := OVMFVars(filepath.Join(t.TempDir(), "none.fd"), dir, false); err == nil || !strings.Contains(err.Error(), "OVMF_VARS_4M.fd") {
		t.Errorf("a missing template: %v", err)
	}
	if _, err := OVMFVars(ovmfVarsTemplate, t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "db.auth is missing") {
		t.Errorf("no enrolment: %v", err)
	}
}

// FuzzParseVarStore: ParseVarStore never panics; a store it accepts
// takes keel's enrolment (replace) or says it is too full, and the result
// parses back with PK live, holding the data written, and differs from
// the input only in the erased space and State bytes.
func FuzzParseVarStore(f *testing.F) {
	f.Add(syntheticStore(0x200, 8))
	one, err := EnrolVarStore(syntheticStore(0x400, 8), fakeEnrolment(), false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(one)
	f.Add(one[:0x180])
	vars := fakeEnrolment()
	_, _, pkData, err := parseAuth2(PK, uefi.GlobalVariableGUID(), vars[2].Data)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseVarStore(b)
		if err != nil {
			return
		}
		for _, v := range s.Variables {
			if v.Offset < s.store || v.Offset >= s.end || v.Offset%varHeaderAlignment != 0 {
				t.Fatalf("variable at %#x outside the store %#x..%#x", v.Offset, s.store, s.end)
			}
		}
		out, err := EnrolVarStore(b, vars, true)
		if err != nil {
			if !strings.Contains(err.Error(), "too full") {
				t.Fatalf("a parsed store refused: %v", err)
			}
			return
		}
		s2, err := ParseVarStore(out)
		if err != nil {
			t.Fatalf("the enrolled store does not parse: %v", err)
		}
		if pk, ok := s2.Lookup(PK, uefi.GlobalVariableGUID()); !ok || !bytes.Equal(pk.Data, pkData) {
			t.Fatalf("PK not live after enrolment:\n%s", listing(s2))
		}
		states := map[int]bool{}
		for _, v := range s.Variables {
			states[v.Offset+2] = true
		}
		for i := range b {
			if b[i] != out[i] && !states[i] && (i < s.next || i >= s2.next) {
				t.Fatalf("byte %#x changed outside the erased space", i)
			}
		}
	})
}
