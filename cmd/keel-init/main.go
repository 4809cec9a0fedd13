// Command keel-init is keel's PID 1: stage 1 in keel's initramfs, stage 2
// in a slot kernel's initrd, as the initramfs was built (the stage file
// layout.StagePath). See package initramfs/pid1.
package main

import (
	"context"
	"os"

	"github.com/keelboot/keel/initramfs/pid1"
)

func main() {
	os.Exit(pid1.Main(context.Background(), os.Stdout))
}
