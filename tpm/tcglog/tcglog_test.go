package tcglog

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The logs in testdata/ovmf-secboot were captured in the vmtests'
// TestSecureBoot (Debian's OVMF 2022.11, OVMF_CODE_4M.secboot.fd, swtpm)
// with `keel pcr log --raw-hex` from the guest's securityfs: setup.bin in
// setup mode (no keys), enforced.bin on the next boot, after `keel
// secureboot enroll` of the keys in keys/ (certificates only) from the
// files in enrol/. setup.pcr7 and enforced.pcr7 are PCR 7 (sha256) as
// `keel pcr read --pcr 7` read it from the TPM in the same boots.
const capture = "testdata/ovmf-secboot"

var logs = []string{"setup", "enforced"}

func readLog(t testing.TB, name string) (*Log, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capture, name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return l, b
}

func readPCR7(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capture, name+".pcr7"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGolden prints the captured logs (Format) and compares with
// testdata/ovmf-secboot/NAME.txt; go test -update rewrites them.
func TestGolden(t *testing.T) {
	for _, name := range logs {
		l, _ := readLog(t, name)
		var out bytes.Buffer
		if err := Format(&out, l, crypto.SHA256, nil); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join(capture, name+".txt")
		if *update {
			if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s: Format differs from %s (go test -update rewrites it):\n%s", name, golden, out.Bytes())
		}
	}
}

// TestReplayMatchesTPM: the captured logs replay to the PCR 7 the TPM held.
func TestReplayMatchesTPM(t *testing.T) {
	for _, name := range logs {
		l, _ := readLog(t, name)
		if len(l.Spec.Algorithms) != 4 || l.Spec.VersionMajor != 2 || l.Spec.UintnSize != 2 {
			t.Errorf("%s: spec %+v", name, l.Spec)
		}
		for _, h := range l.Banks() {
			if _, err := l.Replay(h); err != nil {
				t.Errorf("%s: %v: %v", name, h, err)
			}
		}
		got, err := l.Replay(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if want := readPCR7(t, name); !bytes.Equal(got[7], want) {
			t.Errorf("%s: PCR 7 replays to %x, the TPM held %x", name, got[7], want)
		}
	}
}

// TestPredictPCR7 predicts the enforced boot's PCR 7 from the enrolment
// files and from the certificates, and the setup-mode boot's from an
// empty state: event for event, byte for byte, in every bank of the log.
func TestPredictPCR7(t *testing.T) {
	enforced, _ := readLog(t, "enforced")
	setup, _ := readLog(t, "setup")
	var states []SecureBootState
	for _, dir := range []string{"enrol", "keys"} {
		st, err := EnrolledState(filepath.Join(capture, dir))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		states = append(states, st)
	}
	if len(states[0].Authorities) != 1 || !bytes.Equal(states[0].DB, states[1].DB) || !bytes.Equal(states[0].PK, states[1].PK) ||
		!bytes.Equal(states[0].KEK, states[1].KEK) || !bytes.Equal(states[0].Authorities[0], states[1].Authorities[0]) {
		t.Fatal("the enrolment files and the certificates give different variables")
	}
	for _, c := range []struct {
		name string
		log  *Log
		st   SecureBootState
	}{
		{"enrolment files", enforced, states[0]},
		{"key directory", enforced, states[1]},
		{"setup mode", setup, SecureBootState{}},
	} {
		banks := c.log.Banks()
		evs, err := c.st.Events(banks)
		if err != nil {
			t.Fatal(err)
		}
		logged := c.log.Filter(PCRSecureBoot)
		if len(evs) != len(logged) {
			t.Fatalf("%s: predicted %d PCR 7 events, the log has %d", c.name, len(evs), len(logged))
		}
		for i, e := range evs {
			g := logged[i]
			if e.Type != g.Type || !bytes.Equal(e.Data, g.Data) {
				t.Errorf("%s: event %d: predicted %v %s, logged %v %s", c.name, i, e.Type, Describe(e), g.Type, Describe(g))
			}
			for _, h := range banks {
				if !bytes.Equal(e.Digest(h), g.Digest(h)) {
					t.Errorf("%s: event %d (%v): %v digest %x, logged %x", c.name, i, e.Type, h, e.Digest(h), g.Digest(h))
				}
			}
		}
		pred, err := c.st.PCR7(banks)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range banks {
			want, _ := c.log.Replay(h)
			if !bytes.Equal(pred[h], want[7]) {
				t.Errorf("%s: %v: predicted PCR 7 %x, the log replays to %x", c.name, h, pred[h], want[7])
			}
		}
	}
	// The authority is measured once however often it verified.
	twice := states[0]
	twice.Authorities = append(twice.Authorities, twice.Authorities[0])
	a, _ := states[0].PCR7([]crypto.Hash{crypto.SHA256})
	b, _ := twice.PCR7([]crypto.Hash{crypto.SHA256})
	if !bytes.Equal(a[crypto.SHA256], b[crypto.SHA256]) {
		t.Error("a repeated authority changed the prediction")
	}
	// Secure Boot off with the same keys (a firmware whose user turned
	// it off) is another value.
	off := states[0]
	off.SecureBoot, off.Authorities = false, nil
	c, _ := off.PCR7([]crypto.Hash{crypto.SHA256})
	if bytes.Equal(a[crypto.SHA256], c[crypto.SHA256]) {
		t.Error("Secure Boot off predicts the same PCR 7")
	}
}

func TestEnrolledStateErrors(t *testing.T) {
	if _, err := EnrolledState(t.TempDir()); err == nil || !strings.Contains(err.Error(), "neither an enrolment directory") {
		t.Errorf("empty directory: %v", err)
	}
	dir := t.TempDir()
	for _, n := range []string{"PK.auth", "KEK.auth"} {
		b, _ := os.ReadFile(filepath.Join(capture, "enrol", n))
		os.WriteFile(filepath.Join(dir, n), b, 0o644)
	}
	if _, err := EnrolledState(dir); err == nil || !strings.Contains(err.Error(), "db.auth is missing") {
		t.Errorf("no db.auth: %v", err)
	}
}

// TestMarshalRoundTrip: Marshal gives back the captured bytes.
func TestMarshalRoundTrip(t *testing.T) {
	for _, name := range logs {
		l, b := readLog(t, name)
		if got := l.Marshal(); !bytes.Equal(got, b) {
			t.Errorf("%s: Marshal differs from the file (%d and %d bytes)", name, len(got), len(b))
		}
	}
}

func TestParseErrors(t *testing.T) {
	_, b := readLog(t, "enforced")
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"SHA-1 log", append(append([]byte(nil), b[:32]...), bytes.Replace(b[32:], []byte("Spec ID Event03"), []byte("Spec ID Event00"), 1)...), "crypto-agile"},
		{"truncated event", b[:len(b)-3], "truncated"},
		{"truncated header", b[:40], "crypto-agile"},
	} {
		if _, err := Parse(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// A digest of an algorithm the header does not name.
	l, _ := readLog(t, "enforced")
	l.Events[0].Digests[0].Alg = AlgSM3_256
	if _, err := Parse(l.Marshal()); err == nil || !strings.Contains(err.Error(), "does not list") {
		t.Errorf("unlisted algorithm: %v", err)
	}
	// Replay in a bank the log lacks.
	l, _ = readLog(t, "enforced")
	if _, err := l.Replay(crypto.SHA3_256); err == nil {
		t.Error("replayed sha3_256, which the log lacks")
	}
}

func TestStartupLocality(t *testing.T) {
	l := &Log{Spec: SpecID{VersionMajor: 2, UintnSize: 2, Algorithms: []Algorithm{{AlgSHA256, 32}}}}
	l.Events = []Event{{Seq: 1, PCR: 0, Type: EvNoAction, Data: append([]byte("StartupLocality\x00"), 3)}}
	v, err := l.Replay(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(make([]byte, 31), 3); !bytes.Equal(v[0], want) {
		t.Errorf("PCR 0 = %x, want %x", v[0], want)
	}
}

func TestVariableData(t *testing.T) {
	v := VariableData{Name: "SecureBoot", Data: []byte{1}}
	b := v.Marshal()
	if len(b) != 16+8+8+20+1 {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := ParseVariableData(b)
	if err != nil || got.Name != v.Name || !bytes.Equal(got.Data, v.Data) {
		t.Fatalf("%+v, %v", got, err)
	}
	if _, err := ParseVariableData(b[:len(b)-1]); err == nil {
		t.Error("a short UEFI_VARIABLE_DATA parsed")
	}
	if _, err := ParseVariableData(append(b, 0)); err == nil {
		t.Error("a UEFI_VARIABLE_DATA with a trailing byte parsed")
	}
}

// FuzzParse: Parse never panics, and what it parses re-encodes to the same
// log (Marshal) and can be described and replayed.
func FuzzParse(f *testing.F) {
	for _, name := range logs {
		_, b := readLog(f, name)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(l.Marshal())
		if err != nil {
			t.Fatalf("Marshal of a parsed log does not parse: %v", err)
		}
		if !bytes.Equal(again.Marshal(), l.Marshal()) {
			t.Fatal("Marshal is not stable")
		}
		for _, h := range l.Banks() {
			l.Replay(h)
		}
		Format(new(bytes.Buffer), l, crypto.SHA256, nil)
	})
}

// FuzzParseVariableData: the UEFI_VARIABLE_DATA parser never panics and
// round-trips what it accepts.
func FuzzParseVariableData(f *testing.F) {
	l, _ := readLog(f, "enforced")
	for _, e := range l.Filter(PCRSecureBoot) {
		f.Add(e.Data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVariableData(b)
		if err != nil {
			return
		}
		Describe(Event{Type: EvEFIVariableDriverConfig, Data: b})
		Describe(Event{Type: EvEFIVariableAuthority, Data: b})
		if got := v.Marshal(); !bytes.Equal(got, b) && utf16Valid(b) {
			t.Fatalf("round trip: %x -> %x", b, got)
		}
	})
}

// utf16Valid reports whether the UnicodeName of a well-formed
// UEFI_VARIABLE_DATA survives decoding (no lone surrogates).
func utf16Valid(b []byte) bool {
	v, _ := ParseVariableData(b)
	n := len(utf16.Encode([]rune(v.Name)))
	return 32+2*n+len(v.Data) == len(b) && !strings.ContainsRune(v.Name, utf8.RuneError)
}
