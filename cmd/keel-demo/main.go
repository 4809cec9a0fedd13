// Command keel-demo boots a board in QEMU (-board, qemu-x86_64-uefi by
// default; qemu-arm64-uboot boots through U-Boot) and tells two A/B stories
// (an update that commits, one that falls back); on a UEFI board under
// UEFI Secure Boot unless -secure-boot=false. `make demo` (BOARD=...) runs
// it after fetching the kernels and installing QEMU, the firmware and
// swtpm.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/vmtests/vmkit"
)

func main() {
	var names []string
	for _, b := range boards.All() {
		names = append(names, b.Name)
	}
	board := flag.String("board", vmkit.DefaultDemoBoard, "the board to boot: "+strings.Join(names, ", "))
	secureBoot := flag.Bool("secure-boot", true, "on a UEFI board, run OVMF's Secure Boot build: the first boot enrols keel's keys, every later boot is verified (U-Boot boards have no UEFI Secure Boot)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := vmkit.RepoRoot()
	if err == nil {
		err = vmkit.Demo(ctx, root, os.Stdout, vmkit.DemoOptions{Board: *board, SecureBoot: *secureBoot})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keel-demo: %v\n", err)
		os.Exit(1)
	}
}
