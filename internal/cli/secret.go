package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/tpm"
)

const secretUsage = `usage:
  keel secret keygen --out NAME                   ECDSA P-256 policy key: NAME.key (keep it with the builder), NAME.pub
  keel secret sign-policy --key NAME.key --pcr 7=HEX --pcr 8=HEX --pcr 9=HEX [--out POLICY.json]
  keel secret sign-policy --key NAME.key --no-secure-boot --pcr 8=HEX --pcr 9=HEX [--out POLICY.json]
                                                   authorize unsealing when the SHA-256 PCRs hold these values
                                                   (e.g. from keel pcr predict --secure-boot DIR for a new slot:
                                                   no resealing); every policy binds PCR 7 (Secure Boot on, with
                                                   these keys) unless --no-secure-boot says the device boots
                                                   without Secure Boot
  keel secret seal [--tpm DEV] --auth NAME.pub [--in FILE] [--out SEALED.json]
                                                   seal a secret (at most 128 bytes) on this device's TPM
  keel secret unseal [--tpm DEV] --sealed SEALED.json --policy POLICY.json
                                                   print the secret if the PCRs match a policy signed by NAME.key
`

// pcrFlag collects --pcr N=HEX.
type pcrFlag tpm.PCRValues

func (p pcrFlag) String() string { return "" }

func (p pcrFlag) Set(v string) error {
	n, h, ok := strings.Cut(v, "=")
	i, err := strconv.Atoi(n)
	if !ok || err != nil || i < 0 || i > 23 {
		return fmt.Errorf("--pcr %q: want N=HEX with N 0..23", v)
	}
	b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(h), "0x"))
	if err != nil || len(b) != 32 {
		return fmt.Errorf("--pcr %q: want a 64-digit SHA-256 value", v)
	}
	p[i] = b
	return nil
}

func (c *command) secret(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, secretUsage)
		return usagef("secret: no subcommand (keygen, sign-policy, seal, unseal)")
	}
	if args[0] == "help" || isHelpArg(args[0]) {
		fmt.Fprint(c.stderr, secretUsage)
		return flag.ErrHelp
	}
	var out, key, auth, in, sealed, policy, dev string
	var noSecureBoot bool
	pcrs := pcrFlag{}
	fs, err := c.flags("secret "+args[0], args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "output file")
		fs.StringVar(&key, "key", "", "policy signing key (NAME.key)")
		fs.StringVar(&auth, "auth", "", "policy public key (NAME.pub)")
		fs.StringVar(&in, "in", "", "secret file (default: standard input)")
		fs.StringVar(&sealed, "sealed", "", "sealed object (JSON)")
		fs.StringVar(&policy, "policy", "", "signed policy (JSON)")
		fs.StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device or swtpm socket")
		fs.Var(pcrs, "pcr", "N=HEX, SHA-256 PCR value (repeat)")
		fs.BoolVar(&noSecureBoot, "no-secure-boot", false, "sign-policy: the device boots without UEFI Secure Boot: sign a policy without PCR 7")
		fs.Usage = func() { fmt.Fprint(c.stderr, secretUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("secret %s: unexpected arguments %v", args[0], fs.Args())
	}
	need := func(name, v string) error {
		if v == "" {
			return usagef("secret %s: --%s is required", args[0], name)
		}
		return nil
	}
	switch args[0] {
	case "keygen":
		if err := need("out", out); err != nil {
			return err
		}
		return secretKeygen(out)
	case "sign-policy":
		if err := need("key", key); err != nil {
			return err
		}
		if len(pcrs) == 0 {
			return usagef("secret sign-policy: give the PCR values with --pcr N=HEX")
		}
		if err := checkSecureBootPCR(tpm.PCRValues(pcrs), noSecureBoot); err != nil {
			return err
		}
		priv, err := readECKey(key)
		if err != nil {
			return err
		}
		sp, err := tpm.SignPolicy(priv, tpm.PCRValues(pcrs))
		if err != nil {
			return err
		}
		if err := c.writeJSON(out, sp); err != nil {
			return err
		}
		if noSecureBoot {
			fmt.Fprintf(c.stderr, "secret sign-policy: signed for PCRs %v WITHOUT PCR 7 (--no-secure-boot): the secret unseals whatever the firmware's Secure Boot state and keys, so these PCRs alone must say which code ran\n", policyPCRs(pcrs))
		} else {
			fmt.Fprintf(c.stderr, "secret sign-policy: signed for PCRs %v: PCR 7 binds the firmware's Secure Boot state and keys\n", policyPCRs(pcrs))
		}
		return nil
	case "seal":
		if err := need("auth", auth); err != nil {
			return err
		}
		pub, err := readECPub(auth)
		if err != nil {
			return err
		}
		var secret []byte
		if in == "" {
			secret, err = io.ReadAll(io.LimitReader(os.Stdin, tpm.MaxSecret+1))
		} else {
			secret, err = os.ReadFile(in)
		}
		if err != nil {
			return fmt.Errorf("secret seal: %w", err)
		}
		t, err := tpm.Open(dev)
		if err != nil {
			return err
		}
		defer t.Close()
		s, err := tpm.Seal(t, secret, pub)
		if err != nil {
			return fmt.Errorf("secret seal: %w", err)
		}
		return c.writeJSON(out, s)
	case "unseal":
		if err := need("sealed", sealed); err != nil {
			return err
		}
		if err := need("policy", policy); err != nil {
			return err
		}
		var s tpm.Sealed
		var sp tpm.SignedPolicy
		if err := readJSON(sealed, &s); err != nil {
			return err
		}
		if err := readJSON(policy, &sp); err != nil {
			return err
		}
		t, err := tpm.Open(dev)
		if err != nil {
			return err
		}
		defer t.Close()
		secret, err := tpm.Unseal(t, &s, &sp)
		if err != nil {
			return fmt.Errorf("secret unseal: %w (this boot's PCRs do not match the signed policy, or the policy is not signed by the sealing key)", err)
		}
		_, err = c.stdout.Write(secret)
		return err
	}
	fmt.Fprint(c.stderr, secretUsage)
	return usagef("secret: unknown subcommand %q", args[0])
}

func (c *command) writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err := c.stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func secretKeygen(name string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	// Exclusive creates: an existing key is never overwritten, even by a
	// racing keygen (no check-then-write).
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{name + ".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600},
		{name + ".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644},
	} {
		if err := manifest.WriteNewFile(f.path, f.data, f.perm); err != nil {
			if f.perm == 0o644 {
				os.Remove(name + ".key") // nothing half-written: no key without its .pub
			}
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("secret keygen: %s exists: refusing to overwrite a key: %w", f.path, err)
			}
			return fmt.Errorf("secret keygen: %w", err)
		}
	}
	return nil
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: not a PEM %q (make one with keel secret keygen)", path, typ)
	}
	return blk.Bytes, nil
}

func readECKey(path string) (*ecdsa.PrivateKey, error) {
	if _, err := manifest.ReadSecretFile(path); err != nil {
		return nil, err
	}
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New(path + ": not an ECDSA key")
	}
	return ec, nil
}

func readECPub(path string) (*ecdsa.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New(path + ": not an ECDSA key")
	}
	return ec, nil
}

// checkSecureBootPCR enforces that a signed policy binds PCR 7, the UEFI
// Secure Boot policy PCR (TCG PC Client PFP §3.3.4.8: the SecureBoot
// variable, PK, KEK, db, dbx and the db entries that verified the boot
// images), unless noSecureBoot says the device boots without Secure Boot.
// Without PCR 7 a policy over keel's PCR 8/9 alone would also unseal on
// the same device with Secure Boot turned off (or other keys enrolled), where
// the firmware starts any UKI, one that extends PCR 8/9 with the values
// keel-init would.
func checkSecureBootPCR(pcrs tpm.PCRValues, noSecureBoot bool) error {
	_, has7 := pcrs[7]
	switch {
	case noSecureBoot && has7:
		return usagef("secret sign-policy: --no-secure-boot and --pcr 7 contradict each other: drop --no-secure-boot to bind the Secure Boot state")
	case !noSecureBoot && !has7:
		return usagef("secret sign-policy: the policy has no PCR 7: every sealed secret binds the firmware's Secure Boot state and keys " +
			"(keel pcr predict --secure-boot KEYS|ENROLMENT-DIR prints it; on a reference device keel pcr read --pcr 7); " +
			"for a device that boots without Secure Boot say --no-secure-boot")
	}
	return nil
}

// policyPCRs lists the PCRs of a policy in ascending order.
func policyPCRs(p pcrFlag) []int {
	var out []int
	for i := 0; i < 24; i++ {
		if _, ok := p[i]; ok {
			out = append(out, i)
		}
	}
	return out
}
