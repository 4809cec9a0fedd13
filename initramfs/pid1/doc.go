// Package pid1 is keel-init's process: it mounts the kernel file systems,
// runs stage 1 (package initramfs/stage1) or stage 2 (initramfs/stage2),
// and, when the stage returns without handing over, stops the machine in a
// defined state: powered off after stage 1 (nothing can boot; the state is
// kept for service), restarted after stage 2 (the slot's try is used). It
// never panics: a recovered panic is reported and leads to the same stop.
package pid1
