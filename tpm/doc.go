// Package tpm is keel's TPM 2.0 code: it measures the boot into PCRs 8 and 9
// with a replayable event log, predicts those PCR values on the host, keeps
// the anti-rollback NV counter and seals secrets to signed PCR policies
// (TPM2_PolicyAuthorize). It uses go-tpm's typed tpm2 commands over a
// transport.TPM and is pure Go (no cgo): keel-init stays static.
//
// # PCR map and the exact bytes measured
//
// Every event extends every active PCR bank (TPM2_PCR_Extend, TPM 2.0
// Library Part 3 §22.2) with H_bank(data), where data is:
//
//	PCR 9  keel.manifest   the manifest file exactly as read from the slot (raw bytes)
//	PCR 9  keel.kernel     "keel:kernel-sha256=" + 64 lowercase hex digits of the kernel SHA-256
//	PCR 9  keel.initrd     "keel:initrd-sha256=" + 64 lowercase hex digits of the initrd SHA-256
//	PCR 9  keel.roothash   "keel:verity-roothash=" + lowercase hex of the dm-verity root hash,
//	                       or "keel:verity-roothash=none" when the slot has no verity root hash
//	PCR 8  keel.slot       "keel:slot=" + slot id, e.g. "keel:slot=a"
//	PCR 8  keel.cmdline    "keel:cmdline=" + the exact command line handed to kexec
//	PCR 8  keel.mode       "keel:mode=" + one of normal, trial, fallback, recovery, unmeasured
//	PCR 8  keel.separator  "keel:separator" (extended just before kexec)
//
// Strings are UTF-8 without a trailing newline or NUL. MeasureBoot extends
// the first seven in that order and Separator the last; Predict computes the
// resulting PCR 8 and 9 values from all-zero PCRs. PCRs 0-7 (firmware), 10
// (IMA), 11-15 (systemd, shim) and 16/23 (resettable) are left alone.
//
// PCR 9 is not all zero when keel-init starts on a UKI board: the Linux EFI
// stub of keel's own kernel measures the UKI's command line (LoadOptions)
// and initrd (keel's initramfs) into it first (UKIPrior; the firmware's TCG
// event log records both). PredictAfter and PriorEntry start from those
// events; `keel pcr predict|replay --uki BOOTX64.EFI` use them.
//
// # Event log
//
// One JSON object per line, in the order of the extends:
//
//	{"pcr":8,"type":"keel.slot","description":"boot slot","digests":{"sha1":"…","sha256":"…"},"data":"keel:slot=a"}
//
// digests maps the bank name (sha1, sha256, sha384, sha512, sha3_256,
// sha3_384, sha3_512; tpm2-tools' names) to the lowercase hex digest that was
// extended. data holds the measured bytes as a string when they are valid
// UTF-8 and at most MaxLogData bytes, else data_hex holds them in hex when
// they are at most MaxLogData bytes; larger data is left out (the digests
// alone replay). ReplayLog recomputes the PCRs from zero and checks any
// logged data against its digests.
//
// # Anti-rollback counter
//
// CounterIndex (0x01804B45, in the owner range 0x01800000-0x01BFFFFF of the
// TCG "Registry of Reserved TPM 2.0 Handles and Localities") is a
// TPM_NT_COUNTER NV index (Part 2 §13.4) whose value is one more than the
// minimum security version (the floor): a slot or seed whose signed
// security version is below the floor is refused. The exact public area
// (CounterPublic): AUTHWRITE with an empty authValue and no OWNERWRITE,
// PPWRITE or POLICYWRITE; WRITE_STCLEAR; AUTHREAD, OWNERREAD, PPREAD; NO_DA.
// Where firmware left the platform hierarchy enabled with an empty
// platformAuth (U-Boot boards, LinuxBoot, swtpm) it is defined there with
// PLATFORMCREATE and POLICY_DELETE (authPolicy:
// PolicyCommandCode(TPM2_NV_UndefineSpaceSpecial)); otherwise (UEFI firmware
// that randomised platformAuth or cleared phEnable) in the owner hierarchy,
// where the TPM does not allow POLICY_DELETE.
//
// Only keel-init writes it (ChromeOS's rollback spaces work the same way).
// At every boot, after a TPM Reset, keel-init:
//
//  1. EnsureCounter: keeps keel's counter (the whole public area must match,
//     not a few attribute bits), defines a missing one and increments it
//     once, replaces a squatter (reported), migrates keel's owner-written
//     counter of before;
//  2. refuses slots and a seed below the floor;
//  3. on a normal boot (the active, good slot: committed by the OS with
//     `keel mark-good`) advances it (AdvanceTo, at most MaxAdvance
//     increments) to the security version of the slot's verified manifest;
//     never on a trial, fallback or recovery boot (reinstall, factory
//     reset);
//  4. before every kexec: LockCounter (TPM2_NV_WriteLock, Part 3 §31.11) and
//     DisablePlatformHierarchy (TPM2_HierarchyControl, Part 3 §24.2), both
//     until the next TPM Reset.
//
// `keel mark-good` does not touch the TPM: committing the slot in the boot
// record is the request, performed by the next keel-init. The record is
// unauthenticated, but it can only name a slot whose signed manifest
// keel-init verifies in that boot, so the counter only ever advances to a
// signed security version of an image on the device. A written index
// authorization policy (PolicyPCR on the pre-handoff PCR 8, or
// PolicyAuthorize with the vendor key) was not needed: the write lock closes
// the only window in which the empty authValue works (keel-init's, between
// the TPM Reset and the handoff), and a policy would not stop deletion.
//
// Threat model: root in the OS, with the owner and lockout authorizations
// (empty on a typical device), after keel-init handed over. Tested on swtpm
// (counter_test.go):
//
//	attack                                      platform counter                 owner counter
//	TPM2_NV_Increment, owner auth               TPM_RC_NV_AUTHORIZATION          the same
//	TPM2_NV_Increment/NV_Write, index auth      TPM_RC_NV_LOCKED                 the same
//	TPM2_NV_UndefineSpace, owner auth           TPM_RC_ATTRIBUTES (POLICY_DELETE) deleted: see below
//	TPM2_NV_UndefineSpace(Special), platform    TPM_RC_HIERARCHY (phEnable off)  (no platform counter)
//	TPM2_Clear, lockout auth                    kept (Part 3 §24.6)              deleted: see below
//	define another index at CounterIndex        TPM_RC_NV_DEFINED                after a delete: replaced at the next boot, reported
//
// A deleted owner counter is re-created by the next keel-init, and the floor
// does not go down: the TPM starts a new counter one above the highest
// value any deleted counter had (Part 1, NV counters: "at least as large as
// the largest count value ever written"; libtpms keeps this maxCount, the
// value of deleted counters). The floor rises by one, so the slot that ran
// at the old floor is refused until an update with a higher security
// version, and keel-init prints a KEEL-TAMPER line (CounterState.Tampered). Residual risks of an owner
// counter, for boards whose firmware takes the platform hierarchy away from
// keel-init: (1) the OS can force that +1, a denial of service like wiping
// both slots with a seed below the floor; (2) the OS can inflate maxCount
// (a counter of its own, incremented and deleted) and then delete keel's:
// the re-created floor may lie above every signed security version, which
// bricks the device (until a build with a higher security version is
// installed from outside) loudly but permanently for this TPM. keel does
// not relax the floor in that case: a floor it cannot explain is also what
// a rollback attack (old slots written, counter deleted) looks like, and
// relaxing it to what the disk holds (the seed) would hand the attacker
// that rollback. On a platform counter neither is possible. Taking the
// owner hierarchy away from the OS (a random ownerAuth) would stop both,
// but breaks the OS's own use of the TPM (TPM2_CreatePrimary under the
// owner), and TPM2_ClearControl would stop TPM2_Clear for good on boards
// without platform authorization: neither is done.
//
// Dependencies: only keel-init may run between a TPM Reset and the handoff,
// i.e. the firmware boots only keel's signed UKI (Secure Boot, package
// secureboot) or keel's initramfs from a trusted boot medium; a board whose
// TPM reset line software can drive (or a bus interposer) lets an attacker
// reset the TPM without rebooting into keel-init, which lifts the write lock
// and re-enables the platform hierarchy (and resets the PCRs). The OS can
// read the floor (ReadCounter, index auth; keel install does).
//
// # Sealed secrets
//
// Seal creates a sealed data object whose only authorization is
// TPM2_PolicyAuthorize(Name of the vendor's signing key, PolicyRef). The
// vendor (image builder) signs TPM2_PolicyPCR digests over SHA-256 PCR
// values with SignPolicy; Unseal replays PolicyPCR, checks the signature in
// the TPM (TPM2_VerifySignature) and runs PolicyAuthorize, so a new signed
// slot unseals the same secret without resealing and a tampered one cannot.
//
// Which PCRs: the OS unseals after the handoff, so a policy names the
// values Predict returns (with the separator): PCR 9 binds the image
// (manifest, kernel, initrd, root hash), PCR 8 the slot, command line and
// mode. Signing {8, 9} means one signed policy per slot and mode the image
// may boot in (e.g. a/normal, a/trial, b/normal, b/trial); signing {9}
// alone accepts the image in any slot and mode. PCR 8 before the separator
// (PredictBeforeSeparator) would restrict unsealing to keel-init itself.
//
// PCR 7 is in every policy keel signs (`keel secret sign-policy` refuses
// one without it unless --no-secure-boot says the device boots without
// Secure Boot). PCR 8/9 say what keel-init measured, but only a keel-init
// that the firmware verified makes them trustworthy: with Secure Boot off
// (setup mode, a user who turned it off, other keys enrolled) the firmware
// starts any UKI, and one of an attacker's can extend PCR 8/9 with exactly
// the values keel-init would and then unseal. PCR 7 is the firmware's
// Secure Boot policy PCR (TCG PC Client Platform Firmware Profile
// §3.3.4.8): the SecureBoot variable (1 only when the firmware enforces
// Secure Boot), PK, KEK, db and dbx as enrolled (EV_EFI_VARIABLE_DRIVER_CONFIG,
// a UEFI_VARIABLE_DATA each, §10.4.4), a separator, then one
// EV_EFI_VARIABLE_AUTHORITY per db entry that verified a boot image
// (keel's db certificate, for keel's UKI). Binding it means the secret
// unseals only in a boot whose firmware enforced Secure Boot with keel's
// keys and verified the UKI with keel's db certificate; setup mode, Secure
// Boot off, keys added or replaced, or an image verified by another db
// entry all give another PCR 7. The tcglog package predicts it from the
// enrolment files (`keel pcr predict --secure-boot DIR`, tcglog.EnrolledState)
// as EDK2 measures it, and reads the firmware's own event log (`keel pcr
// log`). A firmware update that changes what is measured (a vendor dbx
// update) changes PCR 7: ship a newly signed policy with it, as for a new
// slot; nothing is resealed.
//
// Call sequence:
//
//	device, at provisioning: sealed := Seal(tpm, secret, vendorKey.Public()); store sealed (JSON) on the data partition
//	builder, per slot image: sp := SignPolicy(vendorKey, PCRValues{7: sb[SHA256], 8: p[SHA256][8], 9: p[SHA256][9]})
//	                         with p := Predict(BootMeasurement{...}, []crypto.Hash{crypto.SHA256})
//	                         and sb := tcglog.EnrolledState(enrolmentDir).PCR7(...); ship sp with the slot
//	keel-init:               MeasureBoot(m, in) ... Separator(m); kexec
//	OS, after boot:          secret := Unseal(tpm, sealed, sp)
package tpm
