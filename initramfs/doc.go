// Package initramfs groups what runs at boot, inside keel's initramfs
// (stage 1) and inside the slot kernel's initrd (stage 2): initramfs/pid1
// is the process, initramfs/stage1 the decision, verification, measurement
// and kexec, initramfs/stage2 the dm-verity root and switch_root,
// initramfs/kexec, initramfs/sysinit and initramfs/dm their device work.
// The host tools never import it (cmd/keel's tests check that).
package initramfs
