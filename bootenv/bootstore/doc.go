// Package bootstore opens the boot record's store where it is: the one
// way keel-init's stage 1, stage 2 and the keel command open it.
//
// A Location names the store: keel's UEFI variable in an efivarfs mount
// (package bootenv/efivars), a U-Boot environment a fw_env.config
// describes, keel's bootstate partition (a redundant U-Boot env,
// ubootenv.BootstateConfig) as a block device or file, or the bootstate
// partition of a disk image found in its GPT (package bootenv/ubootenv).
// FromCmdline turns keel.store= (package format/cmdline) into one.
// Finding the location is the caller's: keel-init goes by the board and
// the boot disk (initramfs/sysinit.OpenStore), the keel command by
// keel.store= and its flags. Mounting efivarfs is keel-init's too: this
// package does no mounts, so the host tool links it.
package bootstore
