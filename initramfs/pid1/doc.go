// Package pid1 is keel-init, keel's PID 1, in its two modes.
//
// Stage 1 runs from keel's own initramfs (booted by the firmware): it
// mounts the kernel filesystems, loads the board's modules, opens the boot
// state store, takes the boot decision (bootenv.Select), commits it before
// anything else can fail, loads the chosen slot's kernel and initrd from its
// slot container, checks them against the slot's manifest, and kexecs the
// kernel. Any failure marks the slot bad and moves to the next; with no
// bootable slot it prints why and stops in a defined state (powered off).
// It never panics: a recovered panic counts as a failed slot.
//
// Stage 2 is the same binary as the slot kernel's initrd (keel.stage=2 on
// the command line): it loads modules, mounts the slot's root filesystem
// read-only and switches root to its /sbin/init.
//
// Boot (the decision loop) works on interfaces, so it is tested with the
// in-memory store and fakes; linux.go holds the thin device glue.
package pid1
