// Package pid1 is keel-init's process: it mounts the kernel file systems,
// runs stage 1 (package initramfs/stage1) or stage 2 (initramfs/stage2) as
// the initramfs was built (layout.StagePath; the kernel command line does
// not choose), and, when the stage returns without handing over, stops the
// machine in a defined state: powered off after stage 1 (nothing can boot;
// the state is kept for service) or when the initramfs names no stage,
// restarted after stage 2 (the slot's try is used). A development build
// (layout.DebugPath in the initramfs, with the debug cpio) says so at start
// and opens a shell before that stop. It never panics: a recovered panic is
// reported and leads to the same stop.
package pid1
