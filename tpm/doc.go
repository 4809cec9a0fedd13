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
// The floor is the minimum security version: a slot or seed whose signed
// security version is below it is refused. keel keeps it in two NV
// indices, in the owner range 0x01800000-0x01BFFFFF of the TCG "Registry of
// Reserved TPM 2.0 Handles and Localities" (the TPM does not tie handle
// ranges to hierarchies):
//
//	CounterIndex 0x01804B45  TPM_NT_COUNTER, 8 bytes (Part 2 §13.4): only ever goes up, and a
//	                         counter defined anew starts above the highest count the TPM has seen
//	RecordIndex  0x01804B46  TPM_NT_ORDINARY, 16 bytes, WRITEALL: the floor keel-init set and the
//	                         counter's value when it set it (big-endian uint64 each)
//
// Their exact public areas (TPMS_NV_PUBLIC, Part 2 §13.5; CounterPublic,
// RecordPublic): POLICYWRITE and no AUTHWRITE, OWNERWRITE or PPWRITE;
// WRITE_STCLEAR; AUTHREAD, OWNERREAD, PPREAD (anyone reads them with the
// empty authValue: keel install does); NO_DA; nameAlg SHA-256. Where
// firmware left the platform hierarchy enabled with an empty platformAuth
// (U-Boot boards, LinuxBoot, swtpm) they are defined there with
// PLATFORMCREATE and POLICY_DELETE; otherwise (UEFI firmware that
// randomised platformAuth, as OVMF does) in the owner hierarchy, where the
// TPM does not allow POLICY_DELETE.
//
// # The write policy
//
// Every write (TPM2_NV_Increment, TPM2_NV_Write, TPM2_NV_WriteLock; Part 3
// §31.8, §31.7, §31.11) needs a policy session (Part 1, Enhanced
// Authorization) that satisfies the authPolicy
//
//	owner:     TPM2_PolicyPCR(SHA-256 bank, PCR 8, H(32 zero bytes))                     (Part 3 §23.7)
//	platform:  TPM2_PolicyOR(that, TPM2_PolicyCommandCode(TPM_CC_NV_UndefineSpaceSpecial)) (§23.6, §23.11)
//
// PCR 8 is keel-init's: all zero from a TPM Reset (TPM2_Startup(CLEAR),
// Part 3 §9.3) until keel-init's first measurement extends it (the slot
// event; the separator follows before every kexec). Software cannot reset
// it: PCRs 0-15 have no pcrReset attribute at any locality (TCG PC Client
// Platform TPM Profile), so TPM2_PCR_Reset (Part 3 §22.8) refuses them. So
// the policy holds only from power-on to keel-init's first extend, when
// only the firmware, keel's signed UKI (the Linux EFI stub measures into
// PCR 9 only) and keel-init have run. keel-init therefore does all its
// counter work before it measures anything (stage 1: settle, advance on a
// normal boot, write-lock, disable the platform hierarchy, then measure).
// The other branch of the platform policy only deletes: a session that ran
// PolicyCommandCode authorizes no other command (TPM_RC_POLICY_CC), and
// TPM2_NV_UndefineSpaceSpecial also needs platform authorization.
//
// What this defends: after the handoff no one writes keel's counter or
// record, whether or not keel-init managed to write-lock them, and on any
// index with keel's public area: the authPolicy is part of the public area,
// so an index the OS defines identically after deleting keel's (the attack
// of issue 19 on the owner counter of issue 11, written with its empty
// authValue and only write-locked) cannot be incremented either
// (TPM_RC_AUTH_UNAVAILABLE with its authValue, TPM_RC_POLICY_FAIL with any
// policy the OS can satisfy), and one with another policy or other
// attributes is not keel's and is replaced. TPM2_NV_DefineSpace refuses
// WRITTEN in a new public area (Part 3 §31.3): an index of keel's layout
// that holds a value was written by keel-init. The write lock (WRITE_STCLEAR,
// TPM2_NV_WriteLock) stays as a second wall: it also holds if a failing TPM
// left PCR 8 at zero (a board that requires a TPM does not hand over then).
//
// What it does not defend: deletion (the owner can TPM2_NV_UndefineSpace an
// owner index, TPM2_Clear removes them all: below); a TPM reset while the OS
// runs (a reset line software can drive, an interposer, firmware that
// answers a failed TPM2_Startup(STATE) on S3 resume with TPM2_Startup(CLEAR)
// and resumes the OS, CVE-2018-6622): PCR 8 is then zero for the OS, as the
// write lock is lifted; firmware that extends PCR 8 before keel-init
// (U-Boot's CONFIG_MEASURED_BOOT measures the kernel there) or a TPM
// without an active SHA-256 bank: nobody can write, keel-init says so
// (ErrWriteWindowClosed, a warning) and enforces the floor it can read.
//
// Why not TPM2_PolicyAuthorize with the release key: keel-init holds no
// private key, so the authorization would be a signed file the OS can
// replay; it would still need a condition only keel-init meets (a PCR), and
// adds a key to manage for nothing. Why not the write lock alone (issue
// 11): it is per index, and a re-definition is a new index.
//
// # The floor record
//
// The counter alone cannot tell keel-init how far the OS raised it: a
// counter defined anew starts above every count the TPM has seen (the
// reference code's NvInitialCounter, Part 4; libtpms keeps the highest
// count of a deleted counter), and the OS can drive a counter of its own
// as high as it likes and delete it. The record says what keel-init set:
// once written, only a holder of the write policy wrote it, so "a floor
// keel has verified on this device" is kept in the TPM itself, not in the
// boot record (the OS writes that) nor in the images on the disk (the OS
// writes those too: a floor relaxed to what the disk holds hands a
// rollback to whoever wrote old signed images there). Its floor is the
// highest security version keel-init advanced to, always that of a signed
// manifest it verified in that boot (or a floor carried over or proved
// below).
//
// What keel-init does at boot (EnsureCounter), each decision logged:
//
//	counter            record           floor       report
//	keel's, = count    keel's           record's    -
//	keel's, < count    keel's           record's    - (an advance cut short: counter caught up)
//	keel's, > count    keel's           record's    KEEL-TAMPER: deleted and re-created; record updated
//	missing/unwritten  keel's           record's    KEEL-TAMPER (re-created above the record: the
//	                                                max-count inflation costs nothing)
//	not keel's         keel's           record's    KEEL-TAMPER: replaced
//	keel's             missing/foreign  counter-1   KEEL-TAMPER unless the counter is 1: the record
//	                                                was deleted; re-written
//	missing            missing          counter-1   new device: first value 1, floor 0; above 1:
//	                                                KEEL-TAMPER (both deleted, see residuals)
//	issue 11 / older   missing          carried     migration (below)
//	issue 11 / older   keel's           record's    KEEL-TAMPER: the OS put back a layout it can
//	                                                write; replaced
//
// The floor is never below the one keel-init set: the record is exact, and
// counter-1 is never below it (the counter is advanced with the record and
// a re-created one starts higher). When the counter and the record
// disagree the record wins: that is the choice for "a floor above every
// security version keel has verified on this device", it keeps the device
// booting with the floor keel-init set and is no rollback.
//
// Advancing (AdvanceTo, on a normal boot: the active, good slot, committed
// by the OS with `keel mark-good`; never on a trial, fallback or recovery
// boot) writes the record first (floor v, the count the counter will have),
// then increments the counter (at most MaxAdvance): a power cut in between
// leaves the counter behind its record, which the next boot catches up;
// the counter is never ahead of its record, which is what a re-created one
// looks like. `keel mark-good` does not touch the TPM: committing the slot
// in the boot record is the request, performed by the next keel-init. The
// record is unauthenticated, but it can only name a slot whose signed
// manifest keel-init verifies in that boot.
//
// Migration. A device in the field has keel's counter of issue 11
// (AUTHWRITE with the empty authValue, platform or owner) or of before
// (owner-written, its value the floor). keel-init, before its first
// measurement and so before the OS runs: (1) writes the record with the old
// floor and count 0 ("migrating"), (2) removes the old counter
// (TPM2_NV_UndefineSpaceSpecial, Part 3 §31.5, for the platform one), (3)
// defines and first increments the new counter, which starts above the
// old one, (4) writes the record with that count. A cut anywhere resumes
// from the record (count 0 says "still migrating": no report); the floor is
// never below the old one and there is no boot in which the OS finds the
// old counter gone and no record. An old counter keel-init cannot remove
// (a platform one once the firmware took the platform hierarchy away) is
// kept in use, with a warning at every boot.
//
// Threat model: root in the OS, with the owner and lockout authorizations
// (empty on a typical device), after keel-init handed over. Tested on swtpm
// (counter_test.go: TestCounterAttacks, TestCounterWritePolicy,
// TestCounterMigrates, TestCounterPowerCut) and in the VM
// (vmtests TestTPMCounterAttacks, owner path):
//
//	attack                                        platform                          owner
//	NV_Increment/NV_Write, owner auth             NV_LOCKED / NV_AUTHORIZATION      the same
//	NV_Increment/NV_Write/NV_WriteLock, authValue AUTH_UNAVAILABLE                  the same
//	the write policy (PolicyPCR)                  TPM_RC_VALUE / POLICY_FAIL         the same
//	NV_UndefineSpace, owner auth                  ATTRIBUTES (POLICY_DELETE)        deleted: floor kept by the record
//	NV_UndefineSpace(Special), platform           HIERARCHY (phEnable off)          -
//	identical re-definition, then writes          NV_DEFINED                        not writable; re-created, record kept
//	re-definition the OS can write (other         NV_DEFINED                        replaced; record kept
//	  attributes, policy, size, issue 11 layout)
//	max count inflated, counter deleted           -                                 re-created above; record kept
//	record deleted or replaced                    ATTRIBUTES / NV_DEFINED           floor = counter-1 (= the record's
//	                                                                                unless the counter was re-created)
//	TPM2_Clear, lockout auth                      kept (Part 3 §24.6)               both deleted: residual
//
// Residuals of the owner path (boards whose firmware takes the platform
// hierarchy away from keel-init): root can delete both indices (TPM2_Clear
// does). keel-init then has only what the TPM proves, the new counter's
// first value: at least one above the old count (the floor rises by one:
// the slot that ran at the old floor is refused until an update with a
// higher security version, the seed may recover), and as high as the OS
// drove a counter of its own before (a floor above every image: a brick,
// until a build with a higher security version is installed from outside).
// keel-init keeps that floor and says so (KEEL-TAMPER, then NO BOOTABLE
// SLOT naming it): a floor it cannot explain is also what a rollback attack
// (counter and record deleted, old signed images written) looks like, and
// relaxing it would hand the attacker that rollback: loud, never a
// rollback. The same holds for a record deleted and the old layout of
// issue 11 put at the counter's handle (indistinguishable from a device
// that was never migrated). On the platform path neither index can be
// deleted. Taking the owner hierarchy away from the OS (a random ownerAuth)
// would stop this but breaks the OS's own use of the TPM (TPM2_CreatePrimary
// under the owner), and TPM2_ClearControl would stop TPM2_Clear for good on
// boards without platform authorization: neither is done.
//
// Dependencies: only keel-init may run between a TPM Reset and its first
// PCR 8 extend, i.e. the firmware boots only keel's signed UKI (Secure
// Boot, package secureboot) or keel's initramfs from a trusted boot medium,
// and nothing before keel-init extends PCR 8.
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
