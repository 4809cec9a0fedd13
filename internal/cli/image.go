package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/image"
)

const imageUsage = `usage: keel image build --board NAME --out DISK.img --spec SPEC.json [--work DIR] [-v]
                        [--channel URL|DIR --channel-root ROOT.json]

Writes a whole disk image for the board: GPT, the ESP with keel's UKI as
\EFI\BOOT\BOOTX64.EFI (UEFI boards; on U-Boot boards, such as
qemu-arm64-uboot, the partition boot with keel's kernel as Image, its
initramfs as initrd and the boot.scr that U-Boot runs), for each slot its slot
container and root file system, an empty data file system. keel's initramfs
and the slots' initrds are built from the board, the kernels' modules, the
trusted keys and keel-init (as keel initramfs build builds them). SPEC.json
holds the inputs (paths relative to it):

  {
    "keel_kernel_dir": "build/kernel/amd64",
    "keel_cmdline": "console=ttyS0",
    "trusted_keys": ["keys/release.pub"],
    "signing_keys": ["keys/release.key"],
    "secure_boot_keys": "keys/secureboot",
    "seed": "v1",
    "disk_mb": 1024,
    "partition_mb": {"root-a": 160, "root-b": 160, "recovery": 256},
    "slots": {
      "a": {"kernel_dir": "build/kernel/amd64", "root_dir": "build/debian-root/root",
            "version": "1.0", "security_version": 1, "cmdline": "console=ttyS0"},
      "b": {"empty": true}
    }
  }

Quick start, from nothing to a signed Debian + systemd image for QEMU (make
build puts keel and keel-init in build/, make kernel Debian's kernel in
build/kernel/amd64, make debian-root a Debian bookworm root with systemd,
keel and keel-mark-good.service in build/debian-root/root):

  make build kernel debian-root
  export PATH=$PWD/build:$PATH
  mkdir -p keys
  keel keygen --out keys/release                 # slot signing key
  keel secureboot keygen --dir keys/secureboot   # UEFI Secure Boot keys
  keel image build --board qemu-x86_64-uefi --spec spec.json --out disk.img

keel's kernel: keel_kernel_dir, a kernel as make kernel lays it out
(vmlinuz, modules, version), or keel_kernel (the file) with keel_modules (its
lib/modules/<version> folder). keel_cmdline is its command line.

trusted_keys are the keel keygen public keys keel-init trusts (built into its
archives); signing_keys the private keys that sign every slot's manifest: the
public half of each must be in trusted_keys, or no slot would boot. Without
signing keys the build fails unless "unsigned": true (development only:
keel-init refuses unsigned slots). keel_init is the keel-init binary (default:
keel-init beside this keel for its architecture, or <keel's
folder>/<arch>/keel-init, where make build puts them).

secure_boot_keys is a keel secureboot keygen directory: keel's UKI and the
slot kernels are signed with its db key (UEFI Secure Boot; keel secureboot
enrolment/enroll put the keys in the device's firmware). Without it the build
fails unless "no_secure_boot": true (development only: the UKI is unsigned,
for firmware with Secure Boot off; keel-init warns at every boot). Neither
applies to U-Boot boards: leave both out there. On a board with dm-verity
roots the builder appends each root's hash tree and puts the root hash in the
manifest. seed makes the image reproducible: the same spec and inputs give
the same bytes, but for the signing time in the Secure Boot signatures of
the UKI and the slot kernels.

partition_mb sizes the board's partitions for this image, in MiB by name:
root-<slot> holds the slot's root with its dm-verity tree, slot-<slot> its
kernel and initrd, recovery the seed; give every slot the same sizes (an
update installs a slot into the other one's partitions; keel bundle build
reads the same spec). The last partition (data) takes the rest of the disk:
disk_mb is the whole disk in MiB (default: the board's, grown by what
partition_mb added). An unknown name is an error that lists the board's
partitions; something that does not fit says how large it is, how large its
partition is, and what to set.

Slot fields: kernel_dir (or kernel with modules), root_dir, root_tar (a tar
archive: uncompressed, gzip or zstd; absolute names, "..", and links out of
the tree are refused; device nodes need root) or root_image (a prebuilt
erofs, ext4 or squashfs image), root_fstype, version, security_version,
cmdline, empty. "recovery" takes the same fields as a slot: the signed seed
written to the recovery partition (keel-init reinstalls slot a from it).

channel (or --channel URL --channel-root ROOT.json, which override it) is
the update channel the slots' roots carry: {"url": "https://updates.example/
stable", "root": "channel/root.json"} (keel channel init writes root.json);
keel update reads them from /etc/keel/channel/url and root.json, inside the
dm-verity root. Every slot's root must then be a root_dir or root_tar.

Prebuilt archives: keel_initrd (keel's initramfs) and a slot's initrd are
used as they are (keel initramfs build makes them); give the kernel as
keel_kernel or kernel then, not with a kernel folder or modules. When every
archive is prebuilt, leave keel_init and trusted_keys out.
`

// image runs `keel image build`. The global -c/--efivars/--image options
// (the boot state) do not apply to it.
func (c *command) image(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stderr, imageUsage)
		if len(args) == 0 {
			return usagef("image: no subcommand given (want: image build)")
		}
		return flag.ErrHelp
	}
	if args[0] != "build" {
		fmt.Fprint(c.stderr, imageUsage)
		return usagef("image: unknown subcommand %q (want: image build)", args[0])
	}
	var board, out, spec, work, chURL, chRoot string
	var verbose bool
	fs, err := c.flags("image build", args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&board, "board", "", "board name (boards/)")
		fs.StringVar(&out, "out", "", "disk image to write")
		fs.StringVar(&spec, "spec", "", "JSON file with the inputs")
		fs.StringVar(&work, "work", "", "keep intermediate files (UKI, ESP, file systems) in this directory")
		fs.BoolVar(&verbose, "v", false, "print each step")
		fs.StringVar(&chURL, "channel", "", "the update channel's URL or folder (keel update)")
		fs.StringVar(&chRoot, "channel-root", "", "the channel's initial root.json")
		fs.Usage = func() { fmt.Fprint(c.stderr, imageUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("image build takes no arguments, got %q", fs.Args())
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--board", board}, {"--out", out}, {"--spec", spec}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return usagef("image build: %s required (keel image help)", strings.Join(missing, ", "))
	}
	b, err := boards.Get(board)
	if err != nil {
		return usagef("image build: %v", err)
	}
	s, err := image.ReadSpec(spec)
	if err != nil {
		return usagef("%v", err)
	}
	s.Board, s.Out, s.WorkDir = b, out, work
	if (chURL == "") != (chRoot == "") && s.Channel == nil {
		return usagef("image build: give --channel URL with --channel-root ROOT.json")
	}
	if chURL != "" || chRoot != "" {
		if s.Channel == nil {
			s.Channel = &image.Channel{}
		}
		if chURL != "" {
			s.Channel.URL = chURL
		}
		if chRoot != "" {
			s.Channel.Root = chRoot
		}
	}
	if err := s.Validate(); err != nil {
		return usagef("%s: %v", spec, err)
	}
	if verbose {
		s.Log = c.stderr
	}
	sized, err := s.SizedBoard() // the disk as disk_mb and partition_mb size it
	if err != nil {
		return usagef("%s: %v", spec, err)
	}
	start := time.Now()
	if err := image.Build(c.ctx, s); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s: %d MiB disk for board %s in %.1fs\n", out, sized.DiskMB, b.Name, time.Since(start).Seconds())
	return err
}
