// Package stage2 is keel-init in a slot kernel's initrd (the stage-2
// archive, /etc/keel/stage = 2; the parameters come from the command line
// keel-init built and measured): it maps the slot's root through
// dm-verity with the root hash from the signed manifest, mounts it
// read-only and switches root to the slot's /sbin/init. The parameters come
// from package format/cmdline; the device work from initramfs/dm,
// initramfs/sysinit and hw/blockdev.
package stage2
