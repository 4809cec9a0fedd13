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
	"strings"

	"github.com/keelboot/keel/builder/image"
	kcmdline "github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/recovery"
	"github.com/keelboot/keel/tpm"
)

const pcrUsage = `usage: keel pcr predict [--slot a] [--mode normal] [--store STORE] [--cmdline LINE]
                        [--root-hash HEX|none] [--uki FILE] [--banks sha256,...] MANIFEST|SLOT.img
       keel pcr replay [--uki FILE] [--banks sha256,...] EVENTLOG
       keel pcr read [--tpm /dev/tpmrm0] [--banks sha256,...]

predict prints the PCR 8 and 9 values keel-init leaves for the slot at the
handoff (after the separator), from the slot's manifest (the file, or a slot
container holding it), in tpm2_pcrread's format. The command line measured is
the manifest's plus keel.stage=2 keel.slot= keel.mode= keel.rootfstype= and
keel.store= (when --store is given), as keel-init builds it; --cmdline gives
the whole line instead. The root hash measured is the manifest's dm-verity
root hash unless --root-hash gives another (or none). replay prints the values an event log (/run/keel/)
leads to; read prints PCR 8 and 9 from a TPM.

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
			return usagef("pcr: no subcommand given (want: predict, replay or read)")
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
	}
	fmt.Fprint(c.stderr, pcrUsage)
	return usagef("pcr: unknown subcommand %q (want: predict, replay or read)", args[0])
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
	var slot, mode, store, cmdline, rootHash, banks, uki string
	var cmdlineSet bool
	fs, err := c.flags("pcr predict", args, func(fs *flag.FlagSet) {
		fs.StringVar(&slot, "slot", "a", "slot id")
		fs.StringVar(&mode, "mode", "normal", "boot mode: "+strings.Join(tpm.Modes, ", "))
		fs.StringVar(&store, "store", "", "keel.store= value keel-init passes (if any)")
		fs.Func("cmdline", "the whole kernel command line (default: from the manifest)", func(s string) error {
			cmdline, cmdlineSet = s, true
			return nil
		})
		fs.StringVar(&rootHash, "root-hash", "", "dm-verity root hash in hex, or none (default: the manifest's, as keel-init measures it)")
		fs.StringVar(&banks, "banks", "sha256", "PCR banks, comma separated")
		fs.StringVar(&uki, "uki", "", "keel's UKI (its EFI stub measured the .cmdline and .initrd into PCR 9)")
		fs.Usage = func() { fmt.Fprint(c.stderr, pcrUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("pcr predict: want one MANIFEST or slot image")
	}
	prior, err := ukiPrior(uki)
	if err != nil {
		return err
	}
	hs, err := parseBanks(banks)
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
			fs.Arg(0), m.Role, recovery.EntrySlotManifest)
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
	sec, err := h.Section(r, slotimg.EntryManifest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return io.ReadAll(sec)
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
	fs, err := c.flags("pcr read", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device or swtpm socket")
		fs.StringVar(&banks, "banks", "sha256", "PCR banks, comma separated")
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
	vals, err := tpm.ReadPCRs(t, hs, []int{tpm.PCRBoot, tpm.PCRImage})
	if err != nil {
		return err
	}
	return tpm.FormatPCRs(c.stdout, vals)
}
