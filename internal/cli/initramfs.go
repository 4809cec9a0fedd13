package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/bootimage"
	"github.com/keelboot/keel/format/layout"
)

const initramfsUsage = `usage: keel initramfs build --board NAME --stage 1|2 (--kernel-dir DIR | --modules DIR)
                            --keys KEY.pub [--keys ...] [--keel-init PATH] -o OUT.cpio.zst

Writes one of keel's boot archives for the board, zstd-compressed newc cpio,
byte-reproducible (the same inputs give the same bytes):

  --stage 1   keel's initramfs (what keel image build puts in the UKI, or on
              a U-Boot board's boot partition): the board's stage-1 modules
  --stage 2   the slots' initrd (every slot container holds it): the
              board's stage-2 modules, from the slots' kernel

Both hold keel-init as /init, the modules with their dependencies in load
order, the board (/etc/keel/board.json), the trusted keys
(/etc/keel/trusted-keys) and the stage (/etc/keel/stage).

  --kernel-dir DIR   a kernel as make kernel lays it out (build/kernel/amd64:
                     version, vmlinuz, modules); its architecture must be the board's
  --modules DIR      or the kernel's lib/modules/<version> folder
  --keys FILE        public keys keel-init trusts (keel keygen's NAME.pub); repeat
                     for several (key rotation)
  --keel-init PATH   keel-init for the board's architecture, static (default:
                     keel-init beside this keel for its own architecture, or
                     <keel's folder>/<arch>/keel-init; make build puts both there)

keel-init must be a static Linux executable for the board's architecture
built from cmd/keel-init; modules must be the board's architecture too.
Anything else would not boot and is refused.
`

// initramfs runs `keel initramfs build`. The global -c/--efivars/--image
// options (the boot state) do not apply to it.
func (c *command) initramfs(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stderr, initramfsUsage)
		if len(args) == 0 {
			return usagef("initramfs: no subcommand given (want: initramfs build)")
		}
		return flag.ErrHelp
	}
	if args[0] != "build" {
		fmt.Fprint(c.stderr, initramfsUsage)
		return usagef("initramfs: unknown subcommand %q (want: initramfs build)", args[0])
	}
	var board, stage, kernelDir, modules, keelInit, out string
	var keys listFlag
	fs, err := c.flags("initramfs build", args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&board, "board", "", "board name (boards/)")
		fs.StringVar(&stage, "stage", "", "1 (keel's initramfs) or 2 (the slots' initrd)")
		fs.StringVar(&kernelDir, "kernel-dir", "", "kernel folder as make kernel lays it out (build/kernel/<arch>)")
		fs.StringVar(&modules, "modules", "", "the kernel's lib/modules/<version> folder")
		fs.Var(&keys, "keys", "trusted public key file (NAME.pub); may be repeated")
		fs.StringVar(&keelInit, "keel-init", "", "keel-init binary for the board's architecture (default: beside keel)")
		fs.StringVar(&out, "o", "", "archive to write")
		fs.StringVar(&out, "out", "", "archive to write")
		fs.Usage = func() { fmt.Fprint(c.stderr, initramfsUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("initramfs build takes no arguments, got %q", fs.Args())
	}
	var missing []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"--board", board != ""}, {"--stage", stage != ""},
		{"--kernel-dir or --modules", kernelDir != "" || modules != ""},
		{"--keys", len(keys) > 0}, {"-o", out != ""},
	} {
		if !f.ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return usagef("initramfs build: %s required (keel initramfs help)", strings.Join(missing, ", "))
	}
	if kernelDir != "" && modules != "" {
		return usagef("initramfs build: give --kernel-dir or --modules, not both")
	}
	st, err := layout.ParseStage(stage)
	if err != nil {
		return usagef("initramfs build: --%v", err)
	}
	b, err := boards.Get(board)
	if err != nil {
		return usagef("initramfs build: %v", err)
	}
	im, err := bootimage.WriteFile(out, bootimage.Spec{
		Board: b, Stage: st, KeelInit: keelInit,
		KernelDir: kernelDir, ModulesDir: modules, TrustedKeys: keys,
	})
	if err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	kernel := ""
	if im.KernelVersion != "" {
		kernel = " of " + im.KernelVersion
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s: stage %s for board %s, %d modules%s, %d KiB\n", out, st, b.Name, len(im.Modules), kernel, (fi.Size()+1023)/1024)
	return err
}
