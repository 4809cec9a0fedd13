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
// CounterIndex (0x01804B45, in the owner range 0x01800000-0x01BFFFFF of the TCG
// "Registry of Reserved TPM 2.0 Handles and Localities") is
// a TPM_NT_COUNTER NV index defined in the owner hierarchy with NoDA, written
// with owner authorization (TPM2_NV_Increment) and readable with its own
// empty authorization (TPM2_NV_Read). It only goes up.
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
// Call sequence:
//
//	device, at provisioning: sealed := Seal(tpm, secret, vendorKey.Public()); store sealed (JSON) on the data partition
//	builder, per slot image: sp := SignPolicy(vendorKey, PCRValues{8: p[SHA256][8], 9: p[SHA256][9]})
//	                         with p := Predict(BootMeasurement{...}, []crypto.Hash{crypto.SHA256}); ship sp with the slot
//	keel-init:               MeasureBoot(m, in) ... Separator(m); kexec
//	OS, after boot:          secret := Unseal(tpm, sealed, sp)
package tpm
