package cli

import (
	"bytes"
	"crypto"
	hexenc "encoding/hex" // cli_test.go has a func hex
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/keelboot/keel/builder/image"
	kcmdline "github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/seedimg"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/tpm"
	"github.com/keelboot/keel/tpm/tcglog"
)

const pcrUsage = `usage: keel pcr predict [--slot a] [--mode normal] [--store STORE] [--cmdline LINE]
                        [--root-hash HEX|none] [--uki FILE] [--secure-boot DIR] [--banks sha256,...]
                        MANIFEST|SLOT.img
       keel pcr predict --secure-boot DIR [--banks sha256,...]
       keel pcr replay [--uki FILE] [--banks sha256,...] EVENTLOG
       keel pcr read [--tpm /dev/tpmrm0] [--banks sha256,...] [--pcr 7,8,9]
       keel pcr log [--file PATH] [--pcr N] [--bank sha256] [--replay | --raw-hex]

predict prints the PCR 8 and 9 values keel-init leaves for the slot at the
handoff (after the separator), from the slot's manifest (the file, or a slot
container holding it), in tpm2_pcrread's format. The command line measured is
the manifest's plus keel.stage=2 keel.slot= keel.mode= keel.rootfstype= and
keel.store= (when --store is given), as keel-init builds it; --cmdline gives
the whole line instead. The root hash measured is the manifest's dm-verity
root hash unless --root-hash gives another (or none). replay prints the values an event log (/run/keel/)
leads to; read prints PCR 8 and 9 (or --pcr) from a TPM.

--secure-boot DIR adds PCR 7, the firmware's Secure Boot policy PCR, for a
boot with keel's keys from DIR enrolled (the enrolment directory of keel
secureboot enrolment, or the key directory of keel secureboot keygen), no
dbx, Secure Boot on and keel's UKI verified by the db certificate: the
SecureBoot, PK, KEK, db and dbx variables, the separator and the db entry
that verified the UKI (measured once per boot), as EDK2 (OVMF) measures
them. On firmware that measures more (a vendor dbx, option ROMs verified by
other db entries), read PCR 7 on a reference device instead (keel pcr read
--pcr 7, or keel pcr log --replay --pcr 7).

log prints the firmware's TCG event log (the crypto-agile format of the TCG
PC Client Platform Firmware Profile; default: the kernel's securityfs copy,
` + tcglog.DefaultPath + `): one event a line, its PCR, type, digest
in --bank and data decoded (UEFI variables, signature lists, certificates);
--replay prints the PCR values it leads to instead, --raw-hex its bytes.

--uki names keel's unified kernel image (\EFI\BOOT\BOOTX64.EFI): the Linux
EFI stub measures its command line and initrd (keel's initramfs) into PCR 9
before keel-init runs (the firmware's TCG event log has these events), so on
a UKI board PCR 9 starts from them; predict and replay then start there too.
`

// pcr runs `keel pcr`. The global boot-state options do not apply to it.
func (c *command) pcr(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stderr, pcrUsage)
		if len(args) == 0 {
			return usagef("pcr: no subcommand given (want: predict, replay, read or log)")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "predict":
		return c.pcrPredict(args[1:])
	case "replay":
		return c.pcrReplay(args[1:])
	case "read":
		return c.pcrRead(args[1:])
	case "log":
		return c.pcrLog(args[1:])
	}
	fmt.Fprint(c.stderr, pcrUsage)
	return usagef("pcr: unknown subcommand %q (want: predict, replay, read or log)", args[0])
}

func parseBanks(s string) ([]crypto.Hash, error) {
	var out []crypto.Hash
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		h, err := tpm.ParseBank(n)
		if err != nil {
			return nil, usagef("pcr: %v", err)
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, usagef("pcr: no banks given")
	}
	return out, nil
}

func (c *command) pcrPredict(args []string) error {
	var slot, mode, cmdline, rootHash, banks, uki, sbDir string
	var store kcmdline.Store
	var cmdlineSet bool
	fs, err := c.flags("pcr predict", args, func(fs *flag.FlagSet) {
		fs.StringVar(&slot, "slot", "a", "slot id")
		fs.StringVar(&mode, "mode", "normal", "boot mode: "+strings.Join(tpm.Modes, ", "))
		fs.Func("store", "keel.store= value keel-init passes (if any): efivars or uboot:PATH", func(s string) (err error) {
			store, err = kcmdline.ParseStore(s)
			return err
		})
		fs.Func("cmdline", "the whole kernel command line (default: from the manifest)", func(s string) error {
			cmdline, cmdlineSet = s, true
			return nil
		})
		fs.StringVar(&rootHash, "root-hash", "", "dm-verity root hash in hex, or none (default: the manifest's, as keel-init measures it)")
		fs.StringVar(&banks, "banks", "sha256", "PCR banks, comma separated")
		fs.StringVar(&uki, "uki", "", "keel's UKI (its EFI stub measured the .cmdline and .initrd into PCR 9)")
		fs.StringVar(&sbDir, "secure-boot", "", "also predict PCR 7: keel's Secure Boot enrolment directory (PK.auth, KEK.auth, db.auth) or key directory (PK.crt, KEK.crt, db.crt)")
		fs.Usage = func() { fmt.Fprint(c.stderr, pcrUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() > 1 || (fs.NArg() == 0 && sbDir == "") {
		return usagef("pcr predict: want one MANIFEST or slot image (or only --secure-boot DIR, for PCR 7 alone)")
	}
	hs, err := parseBanks(banks)
	if err != nil {
		return err
	}
	var pcr7 map[crypto.Hash][]byte
	if sbDir != "" {
		st, err := tcglog.EnrolledState(sbDir)
		if err != nil {
			return fmt.Errorf("pcr predict: --secure-boot: %w", err)
		}
		if pcr7, err = st.PCR7(hs); err != nil {
			return usagef("pcr predict: %v", err)
		}
	}
	if fs.NArg() == 0 {
		vals := map[crypto.Hash]map[int][]byte{}
		for h, v := range pcr7 {
			vals[h] = map[int][]byte{tcglog.PCRSecureBoot: v}
		}
		return tpm.FormatPCRs(c.stdout, vals)
	}
	prior, err := ukiPrior(uki)
	if err != nil {
		return err
	}
	raw, err := readManifest(fs.Arg(0))
	if err != nil {
		return err
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if m.Role != manifest.RoleSlot {
		return fmt.Errorf("%s: a %s's manifest, which keel-init never boots: predict from a slot's manifest (a reinstalled slot boots the seed's %s entry)",
			fs.Arg(0), m.Role, seedimg.EntrySlotManifest)
	}
	in := tpm.BootMeasurement{ManifestBytes: raw, Slot: slot, Mode: mode}
	for _, d := range []struct {
		dst *[]byte
		hex string
	}{{&in.KernelDigest, m.Kernel.SHA256}, {&in.InitrdDigest, m.Initrd.SHA256}} {
		if *d.dst, err = hexenc.DecodeString(d.hex); err != nil {
			return err
		}
	}
	if rootHash == "" && m.Root.Verity != nil {
		rootHash = m.Root.Verity.RootHash
	}
	if rootHash != "" && rootHash != "none" {
		if in.RootHash, err = hexenc.DecodeString(rootHash); err != nil {
			return usagef("pcr predict: --root-hash: %v", err)
		}
	}
	if cmdlineSet {
		in.Cmdline = cmdline
	} else {
		in.Cmdline = kcmdline.ForManifest(m, slot, mode, store)
	}
	vals, err := tpm.PredictAfter(prior, in, hs)
	if err != nil {
		return usagef("pcr predict: %v", err)
	}
	for h, v := range pcr7 {
		vals[h][tcglog.PCRSecureBoot] = v
	}
	return tpm.FormatPCRs(c.stdout, vals)
}

// readManifest returns the manifest bytes of a manifest file or of a slot
// container's manifest entry.
func readManifest(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(b, []byte("KEELSLOT")) {
		return b, nil
	}
	r := bytes.NewReader(b)
	h, err := slotimg.ReadHeader(r, int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	mb, _, err := h.ReadManifest(r, slotimg.EntryManifest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mb, nil
}

// ukiPrior is what the EFI stub of the UKI at path measured into PCR 9
// before keel-init ran (none for "").
func ukiPrior(path string) ([]tpm.Prior, error) {
	if path == "" {
		return nil, nil
	}
	secs, data, err := image.ReadUKI(path)
	if err != nil {
		return nil, err
	}
	var cmdline, initrd []byte
	for i, s := range secs {
		switch s.Name {
		case ".cmdline":
			cmdline = data[i]
		case ".initrd":
			initrd = data[i]
		}
	}
	if initrd == nil {
		return nil, fmt.Errorf("%s: the UKI has no .initrd section", path)
	}
	return tpm.UKIPrior(cmdline, initrd), nil
}

func (c *command) pcrReplay(args []string) error {
	var banks, uki string
	fs, err := c.flags("pcr replay", args, func(fs *flag.FlagSet) {
		fs.StringVar(&uki, "uki", "", "keel's UKI (its EFI stub measured the .cmdline and .initrd into PCR 9)")
		fs.StringVar(&banks, "banks", "", "only these PCR banks, comma separated (default: all in the log)")
		fs.Usage = func() { fmt.Fprint(c.stderr, pcrUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("pcr replay: want one event log")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	prior, err := ukiPrior(uki)
	if err != nil {
		return err
	}
	var log io.Reader = f
	var logBanks []crypto.Hash
	if len(prior) > 0 {
		// The stub extended every active bank: those in the log.
		data, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		vals, err := tpm.ReplayLog(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", fs.Arg(0), err)
		}
		for h := range vals {
			logBanks = append(logBanks, h)
		}
		log = bytes.NewReader(data)
	}
	var priorLines bytes.Buffer
	for _, p := range prior {
		e, err := tpm.PriorEntry(p, logBanks)
		if err != nil {
			return err
		}
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		priorLines.Write(append(line, '\n'))
	}
	log = io.MultiReader(&priorLines, log)
	vals, err := tpm.ReplayLog(log)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if banks != "" {
		hs, err := parseBanks(banks)
		if err != nil {
			return err
		}
		sel := map[crypto.Hash]map[int][]byte{}
		for _, h := range hs {
			sel[h] = vals[h]
		}
		vals = sel
	}
	return tpm.FormatPCRs(c.stdout, vals)
}

func (c *command) pcrRead(args []string) error {
	var dev, banks string
	var pcrList intList
	fs, err := c.flags("pcr read", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device or swtpm socket")
		fs.StringVar(&banks, "banks", "sha256", "PCR banks, comma separated")
		fs.Var(&pcrList, "pcr", "read these PCRs (repeat, or comma separated; default 8,9)")
		fs.Usage = func() { fmt.Fprint(c.stderr, pcrUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("pcr read: no arguments expected")
	}
	hs, err := parseBanks(banks)
	if err != nil {
		return err
	}
	t, err := tpm.Open(dev)
	if err != nil {
		return err
	}
	defer t.Close()
	if len(pcrList) == 0 {
		pcrList = intList{tpm.PCRBoot, tpm.PCRImage}
	}
	vals, err := tpm.ReadPCRs(t, hs, pcrList)
	if err != nil {
		return err
	}
	return tpm.FormatPCRs(c.stdout, vals)
}

// pcrLog runs `keel pcr log`: the firmware's TCG event log, as text, as
// the PCR values it replays to, or as raw hex (to carry it off a device
// over a serial console).
func (c *command) pcrLog(args []string) error {
	var file, bank string
	var pcrList intList
	var replay, rawHex bool
	fs, err := c.flags("pcr log", args, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "file", tcglog.DefaultPath, "the binary TCG event log (crypto-agile format)")
		fs.Var(&pcrList, "pcr", "only this PCR (repeat, or comma separated)")
		fs.StringVar(&bank, "bank", "sha256", "the bank whose digests are shown or replayed")
		fs.BoolVar(&replay, "replay", false, "print the PCR values the log replays to (tpm2_pcrread's format)")
		fs.BoolVar(&rawHex, "raw-hex", false, "print the log's bytes in hex, 64 a line")
		fs.Usage = func() { fmt.Fprint(c.stderr, pcrUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("pcr log: no arguments expected (the log is --file)")
	}
	h, err := tpm.ParseBank(bank)
	if err != nil {
		return usagef("pcr log: --bank: %v", err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("pcr log: %w", err)
	}
	if rawHex {
		for off := 0; off < len(raw); off += 64 {
			if _, err := fmt.Fprintln(c.stdout, hexenc.EncodeToString(raw[off:min(off+64, len(raw))])); err != nil {
				return err
			}
		}
		return nil
	}
	l, err := tcglog.Parse(raw)
	if err != nil {
		return fmt.Errorf("pcr log: %s: %w", file, err)
	}
	if !replay {
		return tcglog.Format(c.stdout, l, h, pcrList)
	}
	vals, err := l.Replay(h)
	if err != nil {
		return fmt.Errorf("pcr log: %s: %w", file, err)
	}
	if len(pcrList) > 0 {
		sel := map[int][]byte{}
		for _, p := range pcrList {
			if v, ok := vals[p]; ok {
				sel[p] = v
			}
		}
		vals = sel
	}
	return tpm.FormatPCRs(c.stdout, map[crypto.Hash]map[int][]byte{h: vals})
}

// intList collects PCR numbers: --pcr 7 --pcr 8, or --pcr 7,8.
type intList []int

func (l *intList) String() string { return fmt.Sprint([]int(*l)) }

func (l *intList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 23 {
			return fmt.Errorf("PCR %q: want a number 0..23", f)
		}
		*l = append(*l, n)
	}
	return nil
}
