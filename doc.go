// Package keel is a Go bootloader and early-boot recovery toolkit for
// embedded Linux devices that receive over-the-air updates. This package
// holds no code: it is the map of the parts.
//
// A boot: the firmware (OVMF, U-Boot) loads keel's kernel and initramfs,
// which the image builder made (builder/); keel-init (initramfs/) decides
// from the boot record (bootenv/), verifies the slot's signed manifest
// (manifest/), measures the boot (tpm/) and kexecs the slot kernel, whose
// stage-2 initrd maps the verified root and switches to it; recovery from
// the seed (recovery/) when no slot can boot. On the running system, the
// keel command (internal/cli/) reads and changes the boot record and installs
// update bundles (update/). Both rewrite a slot through one writer
// (slotwrite/).
//
// # Layers
//
// Every folder sits on a layer; a package imports packages of its own
// folder and of lower layers only, so dependencies point down, from the
// commands to the formats. The layers, top down, with what each folder
// holds:
//
//	keel
//	│
//	│  9  the mains, and what ships or runs beside the Go code
//	├─ cmd/                  tiny mains
//	│   ├─ keel              the keel command, host and device (internal/cli.Main)
//	│   ├─ keel-init         keel's PID 1 (pid1.Main)
//	│   └─ keel-demo         boots a board in QEMU and tells two A/B stories
//	├─ dist/                 what the slots' OS installs: systemd units (keel-mark-good.service),
//	│                        the systemd-shutdown hook (keel note-shutdown)
//	├─ scripts/              dependency install, kernel fetch, the Debian slot root, host demo
//	│   └─ testsum           go test -json to what a person reads; a skip fails the run
//	├─ docs/                 the design (DESIGN.md), the commands, formats, boards, numbers
//	│
//	│  8  the keel command and the VM tests
//	├─ internal/             private to keel's module
//	│   └─ cli               the keel command: flags and output
//	├─ vmtests/              the scenarios in QEMU (OVMF, swtpm, Debian kernels)
//	│   ├─ vmkit             VM artefacts and machines booted from disk through firmware
//	│   ├─ vmrun             direct kernel boots with a test program as init
//	│   ├─ testinit          the slots' test init
//	│   └─ bareinit          the benchmark's bare init
//	│
//	│  7  the two sides: what runs at boot, what builds images
//	├─ initramfs/            what runs at boot, inside keel's initramfs
//	│   ├─ pid1              keel-init's process: mounts, picks the stage, stops in a defined state
//	│   ├─ sysinit           base mounts, module loading, the board file, watchdog, halt
//	│   ├─ stage1            decide (bootenv) → commit → verify (manifest) → measure (tpm) → kexec;
//	│   │                    fallback to the next slot, recovery from the seed (recovery)
//	│   ├─ kexec             verified memfd copies, initrd hand-off files, kexec_file_load
//	│   ├─ stage2            in the slot kernel: dm-verity root (dm), data areas, mount, switch_root
//	│   ├─ dataarea          per-slot data that rolls back with the slot (copied at a trial's first boot)
//	│   └─ dm                device-mapper ioctls
//	├─ builder/              what runs on the host to build images
//	│   ├─ image             disk image: GPT, ESP with the UKI, signed slots, verity roots, seed
//	│   │   └─ imagetest     breaks built images on purpose (tests only)
//	│   ├─ bootimage         keel's stage-1 initramfs and the slots' stage-2 initrd
//	│   │   └─ bootimagetest the inputs of bootimage for tests
//	│   ├─ initrd            initramfs archives (modules in load order, zstd)
//	│   └─ kmod              module closure and order from .modinfo
//	│       └─ kmodtest      fake kernel modules for tests
//	│
//	│  6  the two sources a slot is written from
//	├─ recovery/             the seed: verify it, reinstall a slot from it (slotwrite), factory reset
//	├─ update/               install a bundle into the inactive slot (slotwrite): plan (target, board,
//	│                        policy), open, check, write, put on trial
//	│   ├─ channel           update channels on TUF (go-tuf): publish, refresh, rotate; check, decide, pin
//	│   └─ source            where the bundle's bytes come from: file, pipe, HTTP(S) ranges
//	│       └─ sourcetest    serves bundles over HTTP for tests
//	│
//	│  5  the verified slot writer
//	├─ slotwrite/            writes a slot in crash order: delta, pipelined, read back; the page cache
//	│
//	│  4  measurement
//	├─ tpm/                  PCR 8/9 measurement, event log, prediction, NV anti-rollback, sealing
//	│   ├─ tcglog            the firmware's TCG event log; PCR 7 prediction
//	│   └─ swtpmtest         swtpm for tests
//	│
//	│  3  targets and Secure Boot
//	├─ boards/               targets as Go data; Board.Validate holds their invariants
//	├─ secureboot/           UEFI Secure Boot keys, Authenticode, enrolment, OVMF variable stores
//	│
//	│  2  the boot record and the hardware
//	├─ bootenv/              the boot record, its pure transitions, the Store interface
//	│   ├─ ubootenv          U-Boot env (file, block, MTD), byte-compatible with libubootenv
//	│   ├─ efivars           one UEFI variable through efivarfs
//	│   ├─ bootstore         opens the store where it is (UEFI variable, fw_env.config, bootstate
//	│   │                    partition, disk image): stage 1, stage 2 and the CLI open it so
//	│   ├─ legacy            RAUC's and Mender's boot counters to the record and back
//	│   ├─ memstore          in-memory store with injected power cuts (tests)
//	│   └─ storetest         the conformance suite every store passes
//	├─ hw/                   device access keel-init and the on-device CLI share
//	│   ├─ blockdev          the boot disk and its partitions by GPT name
//	│   ├─ pstore            the last kernel's panic log (pstore): read, parse, clear
//	│   └─ watchdog          arm / disarm the hardware watchdog; its boot status
//	│
//	│  1  on-disk formats and protocols both sides share
//	├─ format/
//	│   ├─ gpt               GPT read/write
//	│   ├─ slotimg           the slot container (kernel, initrd, manifest, manifest.sig)
//	│   ├─ seedimg           the recovery seed's entries and its data entry's encoding
//	│   ├─ bundle            the update bundle, and the byte-source interface its readers take
//	│   │   └─ bundletest    bundles for tests
//	│   ├─ verity            dm-verity hash trees (veritysetup-compatible)
//	│   ├─ cpio              newc archives
//	│   ├─ layout            partition names, paths inside keel's initramfs, the stage file
//	│   ├─ cmdline           the keel.* kernel command-line protocol (keel.store= included)
//	│   ├─ uefi              EFI_GUID, vendor GUIDs, variable names, efivarfs naming and flags
//	│   └─ datareport        what stage 2 tells the OS about the data partition (keel status, keel events)
//	│
//	│  0  the ground
//	├─ manifest/             signed slot manifests (ed25519, key rotation); imports nothing of keel's
//	└─ testkit/              test support
//	    ├─ faultdev          storage that loses power in the middle of a write
//	    └─ testkernel        the Debian kernel make kernel fetched
//
// # Rules
//
// Besides the layers, deps_test.go checks with go list what the binaries
// and the lower layers link, and names the chain of imports that breaks a
// rule:
//   - the host tool (cmd/keel) links no initramfs/ package: it is the CLI,
//     the builder and the formats; it also builds for macOS;
//   - keel-init (cmd/keel-init) links no builder/, internal/cli/ or update/ code:
//     it carries what a boot runs (its reinstall writes through
//     slotwrite/, the writer update/ uses too);
//   - builder/ links no recovery/ code: it writes the seed through its
//     format (format/seedimg);
//   - format/ imports nothing of keel's outside format/ but manifest/, and
//     manifest/ nothing of keel's: the formats are the ground both sides
//     stand on;
//   - tpm/tcglog links no bootenv/: it reads UEFI names from format/uefi.
//
// Same-layer imports are refused too (initramfs/ never imports builder/,
// internal/cli/ never vmtests/), and this map must name every folder and package:
// the test fails for a new one until it is placed here. docs/DESIGN.md
// has the architecture (what is built and what is target), docs/formats.md
// the formats and the PCR map.
package keel
