// Command keel-demo boots the qemu-x86_64-uefi board in QEMU and tells two
// A/B stories (an update that commits, one that falls back). `make demo`
// runs it after fetching the kernel and installing QEMU, OVMF and swtpm.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/keelboot/keel/vmtests/vmkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := vmkit.RepoRoot()
	if err == nil {
		err = vmkit.Demo(ctx, root, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keel-demo: %v\n", err)
		os.Exit(1)
	}
}
