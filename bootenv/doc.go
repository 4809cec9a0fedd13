// Package bootenv holds keel's boot state: one Record with every slot's
// state, the active (last good) slot, the slot on trial, a monotonic
// generation, the recovery request, the outcome of the last boot and the
// last fallback (which slot failed and why, kept until the next one).
//
// The package has two halves that never meet in one function:
//
//   - Pure transitions (Init, Try, Select, MarkGood, MarkBad, SetActive,
//     RequestRecovery) take a Record and return a new one; the slot
//     choices (InstallTarget: where an update goes, RollbackTarget: where
//     a rollback goes) read one. They do no I/O, so the boot decision and
//     the choices are table-tested and model-checked over every reachable
//     state (see model_test.go).
//   - A Store (Load/Commit of the whole Record) persists it. Backends live
//     in sub-packages: ubootenv (a U-Boot environment, single or redundant,
//     on a file, block device or MTD), efivars (one UEFI variable through
//     efivarfs) and memstore (in memory, with injected power cuts). The
//     storetest package is the conformance suite every backend passes.
//
// How the last boot ended is settled by keel-init at the start of the
// next one, before its decision: Classify reads the record (was the boot
// committed, did its OS leave a shutdown note: NoteShutdown) and the
// Evidence keel-init gathered (the watchdog's boot status, a pstore
// panic record, a kexec), and WithEnd applies the policy: a trial's boot
// that ended in a power loss or a kexec gets its try back, up to the
// board's Policy.MaxUncounted in a row; a watchdog reset, a panic, a
// reboot without a commit use it, as does an end no source explains on a
// board whose watchdog cannot say it reset the machine. The result is
// kept as LastEnd for keel status.
//
// Ids the transitions take are drawn by their callers (NewID): a trial's
// id (Try, FinishInstall), which names the trial's data area, and an
// install run's token (BeginInstall, FinishInstall), which lets only the
// run that last began writing a slot finish it. keel-init names a trial
// armed without an id when it boots it (WithTrialID).
//
// A Record is stored as keel_* variables (see Encode and Decode), so a
// U-Boot environment carries it next to the board's own variables, and the
// UEFI backend stores the same variables in one variable's payload.
package bootenv
