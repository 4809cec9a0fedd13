package tpm

import (
	"crypto"
	_ "crypto/sha1" // the sha1 PCR bank
	_ "crypto/sha256"
	_ "crypto/sha3"
	_ "crypto/sha512"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

var bankAlgs = []struct {
	hash crypto.Hash
	alg  tpm2.TPMAlgID
	name string
}{
	{crypto.SHA1, tpm2.TPMAlgSHA1, "sha1"},
	{crypto.SHA256, tpm2.TPMAlgSHA256, "sha256"},
	{crypto.SHA384, tpm2.TPMAlgSHA384, "sha384"},
	{crypto.SHA512, tpm2.TPMAlgSHA512, "sha512"},
	{crypto.SHA3_256, tpm2.TPMAlgSHA3256, "sha3_256"},
	{crypto.SHA3_384, tpm2.TPMAlgSHA3384, "sha3_384"},
	{crypto.SHA3_512, tpm2.TPMAlgSHA3512, "sha3_512"},
}

// BankName is the tpm2-tools name of a PCR bank ("sha256").
func BankName(h crypto.Hash) string {
	for _, b := range bankAlgs {
		if b.hash == h {
			return b.name
		}
	}
	return strings.ToLower(h.String())
}

// ParseBank maps a tpm2-tools bank name ("sha1", "sha256", ...) to its hash.
func ParseBank(name string) (crypto.Hash, error) {
	for _, b := range bankAlgs {
		if b.name == strings.ToLower(name) {
			return b.hash, nil
		}
	}
	return 0, fmt.Errorf("unknown PCR bank %q", name)
}

func bankAlg(h crypto.Hash) (tpm2.TPMAlgID, error) {
	for _, b := range bankAlgs {
		if b.hash == h {
			return b.alg, nil
		}
	}
	return 0, fmt.Errorf("PCR bank %v is not supported", h)
}

func algHash(a tpm2.TPMAlgID) (crypto.Hash, bool) {
	for _, b := range bankAlgs {
		if b.alg == a {
			return b.hash, true
		}
	}
	return 0, false
}

// sortBanks orders banks as tpm2-tools does: by TPM algorithm id.
func sortBanks(hs []crypto.Hash) []crypto.Hash {
	out := append([]crypto.Hash(nil), hs...)
	sort.Slice(out, func(i, j int) bool {
		ai, _ := bankAlg(out[i])
		aj, _ := bankAlg(out[j])
		return ai < aj
	})
	return out
}

func digest(h crypto.Hash, data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

// extendValue returns H(old || d), the PCR after TPM2_PCR_Extend.
func extendValue(h crypto.Hash, old, d []byte) []byte {
	x := h.New()
	x.Write(old)
	x.Write(d)
	return x.Sum(nil)
}

// pcrSelect is the TPMS_PCR_SELECTION bitmap (3 octets, PCRs 0-23).
func pcrSelect(pcrs ...int) []byte {
	b := make([]byte, 3)
	for _, p := range pcrs {
		b[p/8] |= 1 << (p % 8)
	}
	return b
}

func checkPCR(pcr int) error {
	if pcr < 0 || pcr > 23 {
		return fmt.Errorf("PCR %d out of range 0-23", pcr)
	}
	return nil
}
