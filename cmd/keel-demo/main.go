// Command keel-demo boots the qemu-x86_64-uefi board in QEMU and tells two
// A/B stories (an update that commits, one that falls back), under UEFI
// Secure Boot unless -secure-boot=false. `make demo` runs it after
// fetching the kernel and installing QEMU, OVMF and swtpm.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/keelboot/keel/vmtests/vmkit"
)

func main() {
	secureBoot := flag.Bool("secure-boot", true, "run OVMF's Secure Boot build: the first boot enrols keel's keys, every later boot is verified")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := vmkit.RepoRoot()
	if err == nil {
		err = vmkit.Demo(ctx, root, os.Stdout, *secureBoot)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keel-demo: %v\n", err)
		os.Exit(1)
	}
}
