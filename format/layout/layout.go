// Package layout holds the names both sides of keel agree on: the GPT
// partition names the image builder writes and keel-init, recovery and the
// CLI look up, and the paths inside keel's initramfs that the builder fills
// and keel-init reads, with the stage file's two values (stage.go). It has
// no logic beyond naming; docs/DESIGN.md section 2 is the disk layout.
package layout

// GPT partition names (docs/DESIGN.md section 2). Partitions are found by name,
// never by number.
const (
	// ESP is the EFI system partition: keel's UKI on UEFI boards.
	ESP = "esp"
	// Boot is the boot partition of U-Boot boards: a FAT file system
	// with keel's kernel, keel's initramfs and the boot.scr that U-Boot's
	// distro_bootcmd runs (package builder/image).
	Boot = "boot"
	// Bootstate holds the redundant U-Boot env with keel's record on
	// U-Boot boards.
	Bootstate = "bootstate"
	// Recovery holds the signed recovery seed.
	Recovery = "recovery"
	// Data is the user data partition: never touched by updates or
	// recovery, re-created by a factory reset.
	Data = "data"
)

// SlotPartition names the partition with a slot's container (kernel,
// initrd, manifest, manifest.sig; package format/slotimg).
func SlotPartition(slot string) string { return "slot-" + slot }

// RootPartition names the partition with a slot's root file system and
// its dm-verity tree.
func RootPartition(slot string) string { return "root-" + slot }

// Paths inside keel's initramfs: the builder writes them, keel-init reads
// them.
const (
	// BoardPath holds the board (boards.Board as JSON).
	BoardPath = "/etc/keel/board.json"
	// ModulesPath lists the kernel modules to load, one path per line, in
	// dependency order.
	ModulesPath = "/etc/keel/modules.order"
	// TrustedKeysPath holds the public keys (keel-ed25519 lines) whose
	// signature a slot's manifest must carry. keel's initramfs is part of
	// the UKI the firmware loads (and the stub measures), so the keys are
	// fixed at build time.
	TrustedKeysPath = "/etc/keel/trusted-keys"
)

// Paths keel-init hands to the slot's OS.
const (
	// RunDir is keel's folder in the OS's /run.
	RunDir = "/run/keel"
	// EventLogPath is where keel-init writes the measurement event log in
	// stage 1, and where stage 2 leaves the copy handed over in the initrd.
	EventLogPath = RunDir + "/eventlog.jsonl"
	// TrustedKeysRunPath holds the keys keel-init verified the running
	// slot with (the bytes of its TrustedKeysPath, mode 0444); `keel
	// install` trusts these, so a device has one set of keys.
	TrustedKeysRunPath = RunDir + "/trusted-keys"
	// DataReportPath is where stage 2 tells the OS about the data
	// partition (package format/datareport, JSON): whether the OS has
	// /data, why not, what stage 2 ignored there and set aside.
	DataReportPath = RunDir + "/data.json"
	// TrialIDPath holds, on a trial's boot, the trial's id
	// (bootenv.Record.TrialID, one line of hex digits): stage 2 names the
	// trial's data area by it (package initramfs/dataarea). It is handed
	// over in the initrd, not on the kernel command line, which is
	// measured into PCR 8: a random value there would make trial boots'
	// PCR 8 unpredictable.
	TrialIDPath = RunDir + "/trial-id"
	// CrashLogPath holds, after a boot whose kernel crashed, the first
	// lines of the crash report pstore kept (keel-init read and cleared
	// the records at the start of this boot; docs/DESIGN.md section 3.1),
	// for keel events.
	CrashLogPath = RunDir + "/last-crash.txt"
	// HandoffDir is where the slot kernel unpacks what stage 1 appended
	// to the slot's initrd: keel/<name> for every RunDir/<name> above
	// (keel/eventlog.jsonl when measured, keel/trusted-keys, keel/trial-id
	// on a trial's boot, keel/last-crash.txt after a crash). Stage 2
	// copies them to RunDir.
	HandoffDir = "/keel"
)

// Paths in a slot's root file system (covered by dm-verity) and its OS
// that keel update reads.
const (
	// ChannelURLPath holds the update channel's location (one line: an
	// http(s):// URL or a folder); ChannelRootPath its initial TUF
	// root.json. keel image build writes both into the slot's root.
	ChannelURLPath  = "/etc/keel/channel/url"
	ChannelRootPath = "/etc/keel/channel/root.json"
	// ChannelStateDir keeps the channel's trusted metadata between checks
	// (TUF's rollback protection).
	ChannelStateDir = "/var/lib/keel/channel"
	// MachineIDPath is the OS's stable id (systemd's machine-id): the
	// rollout share is decided from it.
	MachineIDPath = "/etc/machine-id"
)
