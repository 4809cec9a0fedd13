// Package initramfs builds keel's initramfs: a newc cpio archive (package
// cpio), compressed with zstd, holding keel-init as /init, the kernel
// modules a board needs in /lib/modules/<version>, the list of those
// modules in load order (ModulesOrderPath, read by keel-init), and any
// extra files.
//
// Build is data-driven: a Spec names the init binary, the kernel's modules
// folder and the wanted module names (their closure and load order come from
// each module's .modinfo, package kmod), the extra files and the
// compression. The output is deterministic: the same Spec and inputs give
// the same bytes (sorted entries, inodes numbered in order, mtime 0, owner
// root).
//
// Every archive also has the base layout a Go PID 1 expects before it
// mounts anything: /dev with /dev/console (c 5 1, so the kernel can give
// init its console), /proc, /sys, /run and /tmp.
package initrd
