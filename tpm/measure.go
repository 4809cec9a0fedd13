package tpm

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MaxLogData is the largest measured data the event log carries verbatim.
const MaxLogData = 4096

// Event describes one measurement in the event log.
type Event struct {
	Type        string // e.g. EventKernel ("keel.kernel")
	Description string // free text for people
}

// LogEntry is one line of the event log.
type LogEntry struct {
	PCR         int               `json:"pcr"`
	Type        string            `json:"type"`
	Description string            `json:"description,omitempty"`
	Digests     map[string]string `json:"digests"`
	Data        *string           `json:"data,omitempty"`
	DataHex     string            `json:"data_hex,omitempty"`
}

// Measurer extends PCRs in every active bank of a TPM and logs each event.
type Measurer struct {
	tpm   transport.TPM
	banks []crypto.Hash
	mu    sync.Mutex
	log   io.Writer
}

// NewMeasurer finds the TPM's active PCR banks (TPM2_GetCapability with
// TPM_CAP_PCRS, Part 3 §30.2) and returns a Measurer that appends its event
// log to log (nil: no log). An active bank whose hash keel cannot compute
// (e.g. SM3) is an error: leaving it unextended would let anyone forge it.
func NewMeasurer(t transport.TPM, log io.Writer) (*Measurer, error) {
	banks, err := ActiveBanks(t)
	if err != nil {
		return nil, err
	}
	return &Measurer{tpm: t, banks: banks, log: log}, nil
}

// ActiveBanks returns the PCR banks with at least one PCR allocated.
func ActiveBanks(t transport.TPM) ([]crypto.Hash, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, Property: 0, PropertyCount: 1}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM2_GetCapability(PCRS): %w", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("TPM2_GetCapability(PCRS): %w", err)
	}
	var banks []crypto.Hash
	for _, s := range sel.PCRSelections {
		if bytes.Count(s.PCRSelect, []byte{0}) == len(s.PCRSelect) {
			continue // allocated but empty: not active
		}
		h, ok := algHash(s.Hash)
		if !ok || !h.Available() {
			return nil, fmt.Errorf("active PCR bank with algorithm %v is not supported", s.Hash)
		}
		banks = append(banks, h)
	}
	if len(banks) == 0 {
		return nil, errors.New("TPM has no active PCR bank")
	}
	return sortBanks(banks), nil
}

// Banks returns the active banks, in TPM algorithm id order.
func (m *Measurer) Banks() []crypto.Hash { return append([]crypto.Hash(nil), m.banks...) }

// Extend measures data into pcr: one TPM2_PCR_Extend (Part 3 §22.2) carrying
// H_bank(data) for every active bank, then one event log line. The log line
// is written only after the TPM accepted the extend.
func (m *Measurer) Extend(pcr int, data []byte, ev Event) error {
	if err := checkPCR(pcr); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := LogEntry{PCR: pcr, Type: ev.Type, Description: ev.Description, Digests: map[string]string{}}
	var vals tpm2.TPMLDigestValues
	for _, h := range m.banks {
		alg, err := bankAlg(h)
		if err != nil {
			return err
		}
		d := digest(h, data)
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: d})
		e.Digests[BankName(h)] = hex.EncodeToString(d)
	}
	cmd := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   vals,
	}
	if _, err := cmd.Execute(m.tpm); err != nil {
		return fmt.Errorf("TPM2_PCR_Extend(PCR %d, %s): %w", pcr, ev.Type, err)
	}
	if m.log == nil {
		return nil
	}
	if len(data) <= MaxLogData {
		if utf8.Valid(data) {
			s := string(data)
			e.Data = &s
		} else {
			e.DataHex = hex.EncodeToString(data)
		}
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := m.log.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	return nil
}

// ReplayLog computes the PCR values an event log leads to from all-zero
// PCRs: bank -> PCR -> value. It checks that logged data matches its digests.
func ReplayLog(r io.Reader) (map[crypto.Hash]map[int][]byte, error) {
	out := map[crypto.Hash]map[int][]byte{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e LogEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("event log line %d: %w", n, err)
		}
		if err := checkPCR(e.PCR); err != nil {
			return nil, fmt.Errorf("event log line %d: %w", n, err)
		}
		if len(e.Digests) == 0 {
			return nil, fmt.Errorf("event log line %d: no digests", n)
		}
		var data []byte
		switch {
		case e.Data != nil:
			data = []byte(*e.Data)
		case e.DataHex != "":
			b, err := hex.DecodeString(e.DataHex)
			if err != nil {
				return nil, fmt.Errorf("event log line %d: data_hex: %w", n, err)
			}
			data = b
		}
		for name, hx := range e.Digests {
			h, err := ParseBank(name)
			if err != nil {
				return nil, fmt.Errorf("event log line %d: %w", n, err)
			}
			d, err := hex.DecodeString(hx)
			if err != nil || len(d) != h.Size() {
				return nil, fmt.Errorf("event log line %d: bad %s digest %q", n, name, hx)
			}
			if data != nil && !bytes.Equal(digest(h, data), d) {
				return nil, fmt.Errorf("event log line %d (%s): %s digest does not match the logged data", n, e.Type, name)
			}
			if out[h] == nil {
				out[h] = map[int][]byte{}
			}
			old := out[h][e.PCR]
			if old == nil {
				old = make([]byte, h.Size())
			}
			out[h][e.PCR] = extendValue(h, old, d)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return out, nil
}

// ReadPCRs reads the given PCRs of the given banks (TPM2_PCR_Read, Part 3
// §22.4). A TPM returns at most eight digests per command; this asks again
// until it has them all.
func ReadPCRs(t transport.TPM, banks []crypto.Hash, pcrs []int) (map[crypto.Hash]map[int][]byte, error) {
	out := map[crypto.Hash]map[int][]byte{}
	for _, h := range banks {
		alg, err := bankAlg(h)
		if err != nil {
			return nil, err
		}
		out[h] = map[int][]byte{}
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return nil, err
			}
			rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
				PCRSelections: []tpm2.TPMSPCRSelection{{Hash: alg, PCRSelect: pcrSelect(p)}},
			}}.Execute(t)
			if err != nil {
				return nil, fmt.Errorf("TPM2_PCR_Read(%s:%d): %w", BankName(h), p, err)
			}
			if len(rsp.PCRValues.Digests) != 1 {
				return nil, fmt.Errorf("TPM2_PCR_Read(%s:%d): bank or PCR not available", BankName(h), p)
			}
			out[h][p] = rsp.PCRValues.Digests[0].Buffer
		}
	}
	return out, nil
}

// FormatPCRs writes values the way tpm2_pcrread prints them:
//
//	sha256:
//	  8 : 0x3D45…
//
// banks in TPM algorithm id order, PCRs ascending, hex in upper case.
func FormatPCRs(w io.Writer, vals map[crypto.Hash]map[int][]byte) error {
	var banks []crypto.Hash
	for h := range vals {
		banks = append(banks, h)
	}
	var b strings.Builder
	for _, h := range sortBanks(banks) {
		fmt.Fprintf(&b, "  %s:\n", BankName(h))
		var pcrs []int
		for p := range vals[h] {
			pcrs = append(pcrs, p)
		}
		sort.Ints(pcrs)
		for _, p := range pcrs {
			fmt.Fprintf(&b, "    %-2d: 0x%s\n", p, strings.ToUpper(hex.EncodeToString(vals[h][p])))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
