package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/recovery"
)

const seedUsage = `usage: keel seed verify --keys TRUSTED [--board NAME] IMAGE

Verifies a recovery seed as keel-init does before a recovery: the signatures
of its two manifests by a trusted key (the seed's own, which must be a
seed's, and the slot manifest it installs, which must be a slot's and
describe the same kernel, initrd and root), the board they are for, the
kernel and initrd digests, the root through its dm-verity tree, the data
file system's digest. IMAGE is a disk image (its GPT partition "recovery")
or the recovery partition itself (a file or a block device). Nothing is
written. Exit 0 when the seed verifies.

--board NAME is the board the image is for (keel image build --board):
the seed's manifests must name it, as keel-init checks against its own
board. Without --board the seed may be for any board; the output names it.
`

// seed runs `keel seed verify`. The global -c/--efivars/--image options
// (the boot state) do not apply to it.
func (c *command) seed(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stderr, seedUsage)
		if len(args) == 0 {
			return usagef("seed: no subcommand given (want: seed verify)")
		}
		return flag.ErrHelp
	}
	if args[0] != "verify" {
		fmt.Fprint(c.stderr, seedUsage)
		return usagef("seed: unknown subcommand %q (want: seed verify)", args[0])
	}
	var keyFiles listFlag
	var board string
	fs, err := c.flags("seed verify", args[1:], func(fs *flag.FlagSet) {
		fs.Var(&keyFiles, "keys", "trusted public keys file (NAME.pub or several key lines); may be repeated")
		fs.StringVar(&board, "board", "", "board the seed must be for (default: any, printed)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("seed verify takes one IMAGE, got %d arguments", fs.NArg())
	}
	if len(keyFiles) == 0 {
		return usagef("seed verify: --keys TRUSTED required (a file of keel-ed25519 public key lines)")
	}
	var trusted []manifest.PublicKey
	for _, p := range keyFiles {
		k, err := manifest.ReadPublicKeys(p)
		if err != nil {
			return err
		}
		trusted = append(trusted, k...)
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("seed verify: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("seed verify: %s: %w", path, err)
	}
	var r io.ReaderAt = f
	where := path
	if t, err := gpt.Read(f, size); err == nil {
		p, err := t.Find("recovery")
		if err != nil {
			return fmt.Errorf("seed verify: %s: %w", path, err)
		}
		r, size, where = p.Section(f), p.Size(), path+" partition recovery"
	}
	checked := board != ""
	if !checked {
		board = manifest.AnyBoard
	}
	s, err := recovery.VerifySeed(r, size, trusted, board)
	if err != nil {
		if errors.Is(err, recovery.ErrBadSeed) {
			return fmt.Errorf("seed verify: %s: %w", where, err)
		}
		return err
	}
	m := s.Manifest
	data := "no data entry (no factory reset)"
	if s.Data != nil {
		data = fmt.Sprintf("data file system %d bytes (sparse)", s.Data.Size)
	}
	forBoard := "for board " + m.Compatible
	if !checked {
		forBoard += " (not checked: no --board)"
	}
	_, err = fmt.Fprintf(c.stdout, "%s: good seed %s: version %q, security version %d; kernel %d bytes, initrd %d bytes, %s root %d bytes (dm-verity root hash %x); %s\n",
		where, forBoard, m.Version, m.SecurityVersion, s.Kernel.Size, s.Initrd.Size, m.Root.FSType, s.Root.Size, s.RootHash, data)
	return err
}
