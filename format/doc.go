// Package format groups the on-disk formats and protocols that the host
// tools (builder, cli) and the code at boot (initramfs) share: the GPT, the
// slot container, dm-verity trees, newc cpio archives, keel's partition
// names and initramfs paths (format/layout), the keel.* kernel command
// line (format/cmdline), and stage 2's report on the data partition to the
// OS (format/datareport). Nothing here does device I/O.
package format
