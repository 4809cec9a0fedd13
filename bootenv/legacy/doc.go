// Package legacy translates between keel's boot record (bootenv.Record) and
// the boot-counting layouts that RAUC and Mender keep in a U-Boot
// environment, so that a device already in the field can be adopted by
// keel (FromRAUC, FromMender: `keel env import`) and keel's decision can be
// written back for the legacy boot script (ToRAUC, ToMender: `keel env
// export`). Every function is pure: the caller reads and writes the env.
//
// Neither layout says as much as a keel record, so each direction picks a
// documented reading, below. What always holds (see the round-trip tests,
// which walk every reachable two-slot record): for a record that CheckRAUC
// or CheckMender accepts, importing what ToRAUC or ToMender wrote gives a
// record on which bootenv.Select boots the same slot, in the same mode
// (with the one RAUC exception below), and the legacy boot script would
// boot that slot too.
//
// # RAUC
//
// Sources: RAUC's U-Boot integration (rauc/rauc docs/integration.rst,
// "U-Boot"; the reference script contrib/uboot.sh), RAUC's U-Boot backend
// (rauc/rauc src/bootloaders/uboot.c: r_uboot_get_state, r_uboot_set_state,
// r_uboot_get_primary, r_uboot_set_primary) and U-Boot's RAUC boot method
// (u-boot/u-boot boot/bootmeth_rauc.c, doc/develop/bootstd/rauc.rst).
//
// The layout is BOOT_ORDER, the slots' bootnames in the order they are
// tried ("A B"), and BOOT_<bootname>_LEFT, the boot attempts a slot has
// left. At every boot the script takes the first slot in BOOT_ORDER whose
// counter is above 0 and decrements it; with none left it resets the
// counters to 3 and resets the board. In Linux, `rauc status mark-good`
// sets the booted slot's counter back to boot-attempts (3 by default),
// `mark-bad` removes the slot from BOOT_ORDER and sets its counter to 0, and
// installing (or `mark-active`) moves the slot to the front of BOOT_ORDER
// with boot-attempts-primary (3 by default). RAUC calls a slot good when it
// is in BOOT_ORDER with a counter above 0.
//
// Counters: RAUC writes them as bare hexadecimal (printf "%x": "3", "a")
// and reads them base 16 (0x prefix allowed); U-Boot's setexpr, which the
// script uses to decrement, also works in hexadecimal; bootmeth_rauc reads
// and writes them in decimal. FromRAUC accepts decimal digits, bare hex and
// 0x-hex and reads them as RAUC does (hexadecimal). Nothing it builds
// depends on the difference: it only asks whether a counter is 0, 1, 2 or
// at least 3, and those read the same either way. (A counter with hex
// letters, which RAUC writes for 10 or more attempts, is 0 to a decimal
// reader: RAUC and bootmeth_rauc already disagree there; FromRAUC follows
// RAUC.) ToRAUC writes one decimal digit (at most 9), which every reader
// agrees on.
//
// FromRAUC (import):
//
//   - the first slot in BOOT_ORDER whose counter is above 0 (the primary,
//     the slot RAUC boots next) is good and active;
//   - every later slot in BOOT_ORDER with a counter above 0 is good: it is
//     RAUC's fallback, and RAUC calls it good;
//   - a good slot's counter becomes keel's count of unconfirmed boots:
//     3 - BOOT_x_LEFT (none at 3 or more). RAUC's counter of a good slot
//     is exactly that: it goes down at every boot and mark-good resets it,
//     so a slot imported with 2 attempts left falls back after 2 more
//     boots the OS does not confirm, in RAUC and in keel alike;
//   - the first slot in BOOT_ORDER, when its counter is 0 and another slot
//     is bootable, is a trial with no tries left: RAUC's script falls back
//     from it at every boot (it was installed or activated and never
//     marked good), so keel's next decision marks it bad and falls back
//     too;
//   - every other slot, with a counter of 0 or missing from BOOT_ORDER,
//     is bad ("not bootable in RAUC's BOOT_ORDER/BOOT_x_LEFT"): RAUC cannot
//     tell a slot marked bad from one never installed, and neither can
//     keel;
//   - refused: no BOOT_ORDER (not RAUC's layout), a BOOT_ORDER naming a
//     bootname the mapping does not map or naming one twice, a slot in
//     BOOT_ORDER without its counter (RAUC itself fails then), a counter
//     that is not a number, and a layout in which no slot is bootable
//     (RAUC's script would reset the counters and retry, keel would boot
//     recovery: fix the counters first).
//
// RAUC keeps no difference between a slot that was just installed and one
// that was marked good: both are first in BOOT_ORDER with 3 attempts. The
// import reads both as good (the common case is a device running a
// confirmed system; a pending update read as good still falls back after 3
// unconfirmed boots, as in RAUC). The price is that a keel trial written by
// ToRAUC comes back as a good active slot: the same slot boots next, in
// mode normal instead of trial.
//
// ToRAUC (export) writes BOOT_ORDER as the trial slot (if any), then the
// active slot, then the other good slots, and the counters as: the trial's
// tries left, a good slot's 3 - unconfirmed boots, and 0 for every other
// slot, which stays out of BOOT_ORDER (as RAUC's mark-bad leaves it). When
// no slot can boot, BOOT_ORDER lists every slot with counter 0.
//
// # Mender
//
// Sources: Mender's U-Boot integration (mendersoftware/meta-mender
// meta-mender-core/recipes-bsp/u-boot/patches/0002-Generic-boot-code-for-Mender.patch,
// include/env_mender.h: bootlimit=1, bootcount, upgrade_available,
// mender_boot_part, mender_boot_part_hex, mender_setup, mender_altbootcmd),
// the Mender client (mendersoftware/mender installer/dual_rootfs_device.go:
// InstallUpdate, CommitUpdate, Rollback; installer/bootenv.go, which writes
// through `fw_setenv -s` for one atomic commit) and U-Boot's boot counter
// (u-boot/u-boot drivers/bootcount/bootcount_env.c, doc/api/bootcount.rst).
//
// mender_boot_part is the partition number U-Boot boots (decimal; its
// _hex twin, written with %X, is the same number in hexadecimal). An
// update sets mender_boot_part to the new partition, upgrade_available=1
// and bootcount=0. While upgrade_available is 1 U-Boot increments and saves
// bootcount at every boot; once bootcount exceeds bootlimit (1) it runs
// altbootcmd, whose mender_altbootcmd switches mender_boot_part to the
// other partition and clears upgrade_available. Committing the update
// clears upgrade_available. With upgrade_available 0 nothing is counted
// and the other partition is never booted.
//
// FromMender (import):
//
//   - upgrade_available=1: the slot of mender_boot_part is on trial with
//     bootlimit - bootcount tries left (0 when bootcount already exceeds
//     it: U-Boot falls back at the next boot, and so does keel); the other
//     slot is good and active, the slot altbootcmd falls back to;
//   - upgrade_available=0 (or unset, as U-Boot reads it): the slot of
//     mender_boot_part is good and active; the other slot is empty, with
//     the reason. Its content is unknown: after a committed update it holds
//     the previous release, after a rollback the update that failed, and
//     the env does not say which. Mender never boots it outside an update,
//     so keel must not fall back to it either: empty is never chosen, and
//     the next update (keel install) goes into it;
//   - refused: mender_boot_part unset, not a decimal number or not mapped;
//     mender_boot_part_hex naming another partition; upgrade_available
//     other than 0 or 1; and, during an update, bootlimit unset or 0 (U-Boot
//     would then never fall back: keel has no endless trial), bootcount
//     not a number, and more than bootenv.MaxTries boots left.
//
// ToMender (export) writes keel's next decision: a trial boot sets
// mender_boot_part to the trial slot, upgrade_available=1 and bootcount so
// that bootlimit - bootcount is its tries (bootlimit is raised when the
// tries exceed it); a normal boot sets the slot with upgrade_available=0 and
// bootcount=0; a fallback to a slot is written as an update of the other
// slot with no tries left (bootcount = bootlimit), which makes U-Boot's
// altbootcmd switch to that slot at the next boot, as keel's decision does.
// CheckMender refuses a trial after which keel would not fall back to the
// other slot (it is not good, or used up its unconfirmed boots): Mender's
// altbootcmd boots that slot once the trial fails, keel would not.
//
// Recovery (requested, or no bootable slot) exists in neither layout:
// CheckRAUC and CheckMender refuse a record whose next decision is
// recovery.
package legacy
