// Package bootimage builds keel's own boot archives from what a device
// maker has: the board, a kernel's modules, the trusted public keys and
// the keel-init binary. No Go toolchain is needed: keel-init comes built
// (make build puts it next to keel).
//
// The same keel-init runs both stages, and each archive says which:
//
//   - stage 1, keel's initramfs (in the UKI, or on a U-Boot board's boot
//     partition): the board's InitModules;
//   - stage 2, the slots' initrd (in every slot container): the board's
//     StageModules.
//
// Both hold keel-init as /init, the modules with their dependencies and
// their load order (package builder/initrd), the board as JSON
// (layout.BoardPath), the trusted keys (layout.TrustedKeysPath) and the
// stage file (layout.StagePath, read by initramfs/sysinit). Build is
// byte-reproducible: the same inputs give the same bytes.
//
// Inputs that would make an unbootable archive are refused with the
// reason: a keel-init that is not a static Linux ELF for the board's
// architecture (or not keel-init at all), modules or a kernel of another
// architecture, key files that are not public keys.
package bootimage
