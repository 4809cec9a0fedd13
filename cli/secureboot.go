package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/keelboot/keel/secureboot"
)

// The UEFI Secure Boot commands: keel secureboot keygen and sign. Like
// keygen and sign they work on files on the host; the global
// -c/--efivars/--image options do not apply to them.

const secureBootUsage = `usage:
  keel secureboot keygen --dir DIR [--name PREFIX]
        make the UEFI Secure Boot keys in DIR: PK, KEK and db, each NAME.key (private,
        0600) and NAME.crt (self-signed X.509, common name "PREFIX NAME", default
        PREFIX keel); never over existing files
  keel secureboot sign --dir DIR IN.efi -o OUT.efi
        Authenticode-sign a UEFI image (keel's UKI) with DIR's db key; the image
        builder does this itself when the spec names secure_boot_keys
`

// secureBoot runs `keel secureboot keygen|sign`.
func (c *command) secureBoot(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, secureBootUsage)
		return usagef("secureboot: no subcommand (keygen, sign)")
	}
	switch args[0] {
	case "keygen":
		return c.secureBootKeygen(args[1:])
	case "sign":
		return c.secureBootSign(args[1:])
	case "help", "-h", "--help":
		_, err := fmt.Fprint(c.stdout, secureBootUsage)
		return err
	}
	fmt.Fprint(c.stderr, secureBootUsage)
	return usagef("secureboot: unknown subcommand %q (keygen, sign)", args[0])
}

func (c *command) secureBootKeygen(args []string) error {
	var dir, name string
	fs, err := c.flags("secureboot keygen", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "directory for PK, KEK and db (.key and .crt)")
		fs.StringVar(&name, "name", secureboot.DefaultCommonNamePrefix, `common name prefix: "PREFIX PK", "PREFIX KEK", "PREFIX db"`)
		fs.Usage = func() { fmt.Fprint(c.stderr, secureBootUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("secureboot keygen takes no arguments, got %q (keel secureboot keygen --dir DIR)", fs.Args())
	}
	if dir == "" {
		return usagef("secureboot keygen: --dir DIR required: the directory for PK, KEK and db")
	}
	if err := secureboot.GenerateKeys(dir, name); err != nil {
		return err
	}
	var files []string
	for _, n := range secureboot.KeyNames {
		files = append(files, secureboot.KeyPath(dir, n), secureboot.CertPath(dir, n))
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s\n"+
		"keep the .key files secret (PK and KEK best offline); db.key signs keel's UKI (spec secure_boot_keys)\n",
		strings.Join(files, ", "))
	return err
}

func (c *command) secureBootSign(args []string) error {
	var dir, out string
	fs, err := c.flags("secureboot sign", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "Secure Boot key directory (keel secureboot keygen): signs with its db key")
		fs.StringVar(&out, "o", "", "signed image to write")
		fs.StringVar(&out, "out", "", "signed image to write")
		fs.Usage = func() { fmt.Fprint(c.stderr, secureBootUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("secureboot sign takes one IN.efi, got %d arguments (keel secureboot sign --dir DIR IN.efi -o OUT.efi)", fs.NArg())
	}
	if dir == "" {
		return usagef("secureboot sign: --dir DIR required: the keys of keel secureboot keygen")
	}
	if out == "" {
		return usagef("secureboot sign: -o OUT.efi required")
	}
	in := fs.Arg(0)
	cert, key, err := secureboot.LoadKey(dir, secureboot.DB)
	if err != nil {
		return err
	}
	img, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("secureboot sign: %w", err)
	}
	signed, err := secureboot.SignPE(img, cert, key)
	if err != nil {
		return fmt.Errorf("secureboot sign %s: %w", in, err)
	}
	if err := writeAtomic(out, signed, 0o644); err != nil {
		return fmt.Errorf("secureboot sign: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "signed %s with the db key %q: wrote %s (check: sbverify --cert %s %s)\n",
		in, cert.Subject.CommonName, out, secureboot.CertPath(dir, secureboot.DB), out)
	return err
}
