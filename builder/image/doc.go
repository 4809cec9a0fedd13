// Package image builds keel's disk images: a GPT disk for a board (package
// boards) whose ESP boots keel through the firmware, with the A/B slots,
// the recovery seed (or an empty recovery partition) and an empty data
// file system.
//
// The pieces, each usable on its own:
//
//   - [UKI] makes a unified kernel image from Debian's systemd-boot-efi stub
//     with objcopy: .osrel, .cmdline, .initrd and .linux sections at
//     addresses after the stub's last section, each aligned to the stub's
//     SectionAlignment as read from its PE headers (the order and alignment
//     of systemd's ukify). OVMF boots it as \EFI\BOOT\BOOTX64.EFI.
//   - [ESP] makes a FAT image with mkfs.vfat and fills it with mmd and
//     mcopy (mtools): no root, no loop mounts.
//   - [Rootfs] makes an erofs image with mkfs.erofs (all files root-owned,
//     time stamps 0, a fixed UUID) or an ext4 image with mkfs.ext4 -d.
//   - [Build] writes a whole disk from a [Spec]: GPT (package disk/gpt; the
//     board's layout with the Spec's partition_mb and disk_mb sizes,
//     [Spec.SizedBoard]),
//     ESP (the UKI Authenticode-signed with the db key of the Spec's
//     secure_boot_keys, package secureboot, when given), for each slot a
//     slot container (package image/slotimg: kernel, initrd, a manifest
//     with their digests and manifest.sig, the manifest's ed25519
//     signatures by the Spec's signing_keys) in slot-<name> and the root
//     file system in root-<name>, and an empty
//     ext4 in data; with a Spec.Recovery, the recovery seed (package
//     recovery: kernel, initrd, signed manifest, root with its verity tree,
//     the data file system) in recovery. A Spec without signing keys is
//     refused unless it says "unsigned": true (development images, whose
//     slots keel-init refuses). Without prebuilt archives it first builds
//     keel's initramfs and the slots' initrds (package builder/bootimage)
//     from the kernel folders, keel-init and the trusted_keys.
//   - [UnpackTar] unpacks a slot's root_tar (tar, gzip or zstd) into a
//     tree, refusing anything that would leave it.
//
// Everything runs without root. The external tools (objcopy, mkfs.vfat,
// mmd, mcopy, mkfs.erofs, mkfs.ext4) come from the Debian packages
// binutils, dosfstools, mtools, erofs-utils and e2fsprogs, the stub from
// systemd-boot-efi; a missing tool is an error that names its package.
//
// Images are reproducible: given a Spec.Seed, every GUID and UUID derives
// from it and every time stamp is fixed (SOURCE_DATE_EPOCH 1980-01-01,
// mkfs.vfat --invariant, mkfs.erofs -T0, the UKI's COFF time stamp taken
// from the stub), so the same inputs give the same bytes; only a UKI signed
// for Secure Boot differs, in its signature's signing time.
//
// The command `keel image build --board NAME --out DISK.img --spec
// SPEC.json` (package internal/cli) reads a Spec with [ReadSpec].
package image
