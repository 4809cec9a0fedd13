// Package keel is a Go bootloader and early-boot recovery toolkit for
// embedded Linux devices that receive over-the-air updates. This package
// holds no code: it is the map of the parts, in the order a boot runs them.
//
//	firmware (OVMF / U-Boot) loads keel's kernel + initramfs (builder/image made them)
//	│
//	├─ initramfs/            what runs at boot, inside keel's initramfs
//	│   ├─ pid1              keel-init's process: mounts, picks the stage, stops in a defined state
//	│   ├─ sysinit           base mounts, module loading, the board file, watchdog, halt
//	│   ├─ stage1            decide (bootenv) → commit → verify (manifest) → measure (tpm) → kexec;
//	│   │                    fallback to the next slot, recovery from the seed (recovery)
//	│   ├─ kexec             verified memfd copies, initrd hand-off files, kexec_file_load
//	│   ├─ stage2            in the slot kernel: dm-verity root (dm), data areas, mount, switch_root
//	│   ├─ dataarea          per-slot data that rolls back with the slot (copied at a trial's first boot)
//	│   └─ dm                device-mapper ioctls
//	├─ hw/                   device access keel-init and the on-device CLI share
//	│   ├─ blockdev          the boot disk and its partitions by GPT name
//	│   └─ watchdog          arm / disarm the hardware watchdog
//	│
//	├─ bootenv/              the boot record, its pure transitions, the Store interface
//	│   ├─ ubootenv          U-Boot env (file, block, MTD), byte-compatible with libubootenv
//	│   ├─ efivars           one UEFI variable through efivarfs
//	│   ├─ memstore          in-memory store with injected power cuts (tests)
//	│   └─ storetest         the conformance suite every store passes
//	├─ manifest/             signed slot manifests (ed25519, key rotation)
//	├─ tpm/                  PCR 8/9 measurement, event log, prediction, NV anti-rollback, sealing
//	│   └─ tcglog            the firmware's TCG event log; PCR 7 prediction
//	├─ secureboot/           UEFI Secure Boot keys, Authenticode, enrolment, OVMF variable stores
//	├─ recovery/             the seed: verify it, reinstall a slot from it, factory reset
//	│
//	├─ format/               on-disk formats and protocols both sides share
//	│   ├─ gpt               GPT read/write
//	│   ├─ slotimg           the slot container (kernel, initrd, manifest, manifest.sig)
//	│   ├─ verity            dm-verity hash trees (veritysetup-compatible)
//	│   ├─ cpio              newc archives
//	│   ├─ layout            partition names, paths inside keel's initramfs
//	│   ├─ cmdline           the keel.* kernel command-line protocol
//	│   └─ datareport        what stage 2 tells the OS about the data partition (keel status, keel events)
//	│
//	├─ builder/              what runs on the host to build images
//	│   ├─ image             disk image: GPT, ESP with the UKI, signed slots, verity roots, seed
//	│   │   └─ imagetest     breaks built images on purpose (tests only)
//	│   ├─ bootimage         keel's stage-1 initramfs and the slots' stage-2 initrd from board, kernel, keys
//	│   ├─ initrd            initramfs archives (modules in load order, zstd)
//	│   └─ kmod              module closure and order from .modinfo
//	├─ boards/               targets as Go data; Board.Validate holds their invariants
//	├─ cli/, cmd/            the keel command (host and device), keel-init, the demo
//	├─ dist/                 what the slots' OS installs: systemd units (keel-mark-good.service)
//	│
//	└─ vmtests/              the scenarios in QEMU (OVMF, swtpm, Debian kernels)
//	    ├─ vmkit             VM artefacts and machines booted from disk through firmware
//	    ├─ vmrun             direct kernel boots with a test program as init
//	    └─ testinit, bareinit the slots' test init and the benchmark's bare init
//
// Dependencies point down the boot: cmd/keel (the host tool) imports cli,
// builder and format, never initramfs; initramfs imports format, bootenv,
// manifest, tpm, recovery and hw. DESIGN.md (the steering repository's
// shared/) has the architecture, the formats and the PCR map.
package keel
