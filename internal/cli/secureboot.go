package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelboot/keel/bootenv/efivars"
	"github.com/keelboot/keel/secureboot"
)

// The UEFI Secure Boot commands. keygen, sign and enrolment work on files
// on the host; enroll and status on the device's firmware, through
// efivarfs. The global -c/--efivars/--image options do not apply to them.

const secureBootUsage = `usage:
  keel secureboot keygen --dir DIR [--name PREFIX]
        make the UEFI Secure Boot keys in DIR: PK, KEK and db, each NAME.key (private,
        0600) and NAME.crt (self-signed X.509, common name "PREFIX NAME", default
        PREFIX keel); never over existing files
  keel secureboot sign --dir DIR IN.efi -o OUT.efi
        Authenticode-sign a UEFI image (keel's UKI) with DIR's db key; the image
        builder does this itself when the spec names secure_boot_keys
  keel secureboot enrolment --dir DIR --out OUT
        write OUT/db.auth, KEK.auth and PK.auth: DIR's certificates as signed
        (authenticated) variable writes, time-stamped now; they hold no secret:
        the factory image carries them to the device, not the keys
  keel secureboot enroll [--efivars DIR] OUT
        on a device whose firmware is in setup mode: check OUT's files (well
        formed, one key set, each signed as the firmware demands), then write
        db, KEK and PK through efivarfs; the firmware leaves setup mode and
        from the next boot starts only images signed with the db key
  keel secureboot status [--efivars DIR] [--json]
        the firmware's Secure Boot state (setup mode, enforced) and the
        kernel's lockdown mode (where securityfs shows it)
  keel secureboot ovmf-vars (--enrolment OUT | --dir DIR) --in VARS.fd -o OUT.fd [--replace]
        for QEMU: write OUT.fd, the OVMF variable store VARS.fd (Debian:
        /usr/share/OVMF/OVMF_VARS_4M.fd) with db, KEK and PK enrolled offline
        (from OUT's checked files, or DIR's keys time-stamped now) and Secure Boot
        enabled: OVMF's Secure Boot build booting from it enforces Secure Boot
        from the first power-on; refuses a store that holds a PK unless --replace
`

// secureBoot runs `keel secureboot SUBCOMMAND`.
func (c *command) secureBoot(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, secureBootUsage)
		return usagef("secureboot: no subcommand (keygen, sign, enrolment, enroll, status, ovmf-vars)")
	}
	switch args[0] {
	case "keygen":
		return c.secureBootKeygen(args[1:])
	case "sign":
		return c.secureBootSign(args[1:])
	case "enrolment", "enrollment":
		return c.secureBootEnrolment(args[1:])
	case "enroll":
		return c.secureBootEnroll(args[1:])
	case "status":
		return c.secureBootStatus(args[1:])
	case "ovmf-vars":
		return c.secureBootOVMFVars(args[1:])
	case "help", "-h", "--help":
		_, err := fmt.Fprint(c.stdout, secureBootUsage)
		return err
	}
	fmt.Fprint(c.stderr, secureBootUsage)
	return usagef("secureboot: unknown subcommand %q (keygen, sign, enrolment, enroll, status, ovmf-vars)", args[0])
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

func (c *command) secureBootEnrolment(args []string) error {
	var dir, out string
	fs, err := c.flags("secureboot enrolment", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "Secure Boot key directory (keel secureboot keygen)")
		fs.StringVar(&out, "o", "", "directory for db.auth, KEK.auth and PK.auth")
		fs.StringVar(&out, "out", "", "directory for db.auth, KEK.auth and PK.auth")
		fs.Usage = func() { fmt.Fprint(c.stderr, secureBootUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("secureboot enrolment takes no arguments, got %q (keel secureboot enrolment --dir DIR --out OUT)", fs.Args())
	}
	if dir == "" || out == "" {
		return usagef("secureboot enrolment: --dir DIR (the keys) and --out OUT (the files to write) required")
	}
	vars, err := secureboot.MakeEnrolment(dir, out)
	if err != nil {
		return err
	}
	for _, v := range vars {
		fmt.Fprintf(c.stdout, "wrote %s: %s, signed by %s\n", filepath.Join(out, secureboot.AuthFile(v.Name)), v.Name, v.Signer)
	}
	_, err = fmt.Fprintf(c.stdout, "on the device, in setup mode: keel secureboot enroll %s\n", out)
	return err
}

func (c *command) secureBootEnroll(args []string) error {
	var efivarsDir string
	fs, err := c.flags("secureboot enroll", args, func(fs *flag.FlagSet) {
		fs.StringVar(&efivarsDir, "efivars", efivars.DefaultDir, "efivarfs mount")
		fs.Usage = func() { fmt.Fprint(c.stderr, secureBootUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("secureboot enroll takes one directory of db.auth, KEK.auth and PK.auth, got %d arguments (keel secureboot enroll DIR)", fs.NArg())
	}
	vars, err := secureboot.ReadEnrolment(fs.Arg(0))
	if err != nil {
		return err
	}
	st, err := secureboot.Enroll(efivarsDir, vars)
	if err != nil {
		return err
	}
	for _, v := range vars {
		fmt.Fprintf(c.stdout, "enrolled %s (signed by %s)\n", v.Name, v.Signer)
	}
	if st.SetupMode {
		return fmt.Errorf("secureboot enroll: the firmware took the keys but is still in setup mode: it did not accept PK as the platform key; Secure Boot is not enforced")
	}
	_, err = fmt.Fprintln(c.stdout, "the firmware left setup mode: from the next boot it starts only images signed with the db key")
	return err
}

func (c *command) secureBootStatus(args []string) error {
	var efivarsDir string
	var asJSON bool
	fs, err := c.flags("secureboot status", args, func(fs *flag.FlagSet) {
		fs.StringVar(&efivarsDir, "efivars", efivars.DefaultDir, "efivarfs mount")
		fs.BoolVar(&asJSON, "json", false, "one JSON object")
		fs.Usage = func() { fmt.Fprint(c.stderr, secureBootUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("secureboot status takes no arguments, got %q", fs.Args())
	}
	st, err := secureboot.ReadState(efivarsDir)
	if err != nil {
		return err
	}
	// The kernel's lockdown, where securityfs shows it (not offline).
	lockdown, _ := secureboot.ReadLockdown(secureboot.LockdownPath)
	if asJSON {
		return json.NewEncoder(c.stdout).Encode(struct {
			SetupMode  bool   `json:"setup_mode"`
			SecureBoot bool   `json:"secure_boot"`
			Lockdown   string `json:"lockdown,omitempty"`
		}{st.SetupMode, st.SecureBoot, lockdown})
	}
	onOff := map[bool]string{true: "on", false: "off"}
	_, err = fmt.Fprintf(c.stdout, "secure boot: %s\nsetup mode: %s\n", onOff[st.SecureBoot], onOff[st.SetupMode])
	if err == nil && lockdown != "" {
		_, err = fmt.Fprintf(c.stdout, "kernel lockdown: %s\n", lockdown)
	}
	return err
}

func (c *command) secureBootOVMFVars(args []string) error {
	var enrolment, keyDir, in, out string
	var replace bool
	fs, err := c.flags("secureboot ovmf-vars", args, func(fs *flag.FlagSet) {
		fs.StringVar(&enrolment, "enrolment", "", "enrolment directory (keel secureboot enrolment): db.auth, KEK.auth, PK.auth")
		fs.StringVar(&keyDir, "dir", "", "Secure Boot key directory (keel secureboot keygen), instead of --enrolment")
		fs.StringVar(&in, "in", "", "OVMF variable store template (OVMF_VARS_4M.fd)")
		fs.StringVar(&out, "o", "", "variable store to write")
		fs.StringVar(&out, "out", "", "variable store to write")
		fs.BoolVar(&replace, "replace", false, "replace the PK, KEK and db the store holds")
		fs.Usage = func() { fmt.Fprint(c.stderr, secureBootUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("secureboot ovmf-vars takes no arguments, got %q (keel secureboot ovmf-vars --enrolment DIR --in VARS.fd -o OUT.fd)", fs.Args())
	}
	if (enrolment == "") == (keyDir == "") {
		return usagef("secureboot ovmf-vars: one of --enrolment DIR (the files of keel secureboot enrolment) or --dir DIR (the keys) required")
	}
	if in == "" || out == "" {
		return usagef("secureboot ovmf-vars: --in VARS.fd (the firmware's variable store, e.g. /usr/share/OVMF/OVMF_VARS_4M.fd) and -o OUT.fd required")
	}
	var vars []secureboot.Variable
	from := enrolment
	if keyDir != "" {
		from = keyDir
		vars, err = secureboot.Enrolment(keyDir, time.Now().UTC().Truncate(time.Second))
	} else {
		vars, err = secureboot.ReadEnrolment(enrolment)
	}
	if err != nil {
		return err
	}
	img, err := secureboot.OVMFVarsFrom(in, vars, replace)
	if err != nil {
		return err
	}
	if err := writeAtomic(out, img, 0o644); err != nil {
		return fmt.Errorf("secureboot ovmf-vars: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s: %s with db, KEK and PK of %s enrolled and Secure Boot enabled\n"+
		"QEMU with OVMF's Secure Boot code (OVMF_CODE_4M.secboot.fd, -machine q35,smm=on) and this store enforces Secure Boot from the first boot\n",
		out, in, from)
	return err
}
