// Package stage1 is keel-init in keel's own initramfs, booted by the
// firmware: it opens the boot state store, takes the boot decision
// (bootenv.Select), commits it before anything else can fail, loads the
// chosen slot's kernel and initrd from its slot container, checks them
// against the slot's signed manifest and the anti-rollback floor, settles
// the floor in the TPM (advanced on a normal boot, write-locked: before
// anything is measured, the only time its write policy holds), measures
// them into the TPM, and kexecs the kernel. Any failure marks the slot bad and moves to the next;
// with no bootable slot it recovers from the seed, or stops with why.
//
// Boot (the decision loop, boot.go) works on interfaces (SlotLoader,
// Kexecer, Measurer, Recoverer and bootenv.Store), so it is tested with the
// in-memory store and fakes; the *_linux.go files are the thin device glue.
package stage1
