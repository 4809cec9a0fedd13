// Command keel edits keel's boot state on a live device or offline on an env
// file, a UEFI variable directory or a disk image. See `keel help`.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/keelboot/keel/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, cli.Deps{})
	stop()
	os.Exit(code)
}
