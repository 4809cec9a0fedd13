# keel — see README.md. Build outputs go to build/ (ignored by git).
GO      ?= go
BUILD   ?= build
export CGO_ENABLED ?= 0
SHELL   := /bin/bash
# The kernel make kernel fetches; the kernel-dependent unit tests use it
# (package testkit/testkernel).
export KEEL_KERNEL_DIR ?= $(abspath $(BUILD)/kernel/amd64)
# testsum prints go test -json as go test does without -v, lists every
# skipped test and fails the run on any skip (outside -short there are none).
TESTSUM = $(BUILD)/testsum

.PHONY: all deps build debian-root unit test vmtest fuzz bench bench-boot bench-verity bench-update bench-data bench-channel debug-cpio demo demo-host clean

all: build

deps:
	./scripts/install-deps.sh

# keel for this machine, and keel-init (static, Linux) beside it for this
# machine's architecture and in $(BUILD)/<arch>/ for every board
# architecture: keel initramfs build and keel image build take keel-init
# from there (--keel-init overrides), so building images needs no Go.
KEEL_INIT_ARCHS ?= amd64 arm64
KEEL_INIT_BUILD  = GOOS=linux CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w'
build:
	mkdir -p $(BUILD)
	$(GO) build -trimpath -o $(BUILD)/keel ./cmd/keel
	$(KEEL_INIT_BUILD) -o $(BUILD)/keel-init ./cmd/keel-init
	for arch in $(KEEL_INIT_ARCHS); do GOARCH=$$arch $(KEEL_INIT_BUILD) -o $(BUILD)/$$arch/keel-init ./cmd/keel-init || exit 1; done

# A minimal Debian bookworm root with systemd for the slots (issue 13):
# scripts/debian-root.sh runs mmdebstrap (Debian's packages; as root in its
# root mode, else in unshare mode) into $(DEBIAN_ROOT)/base.tar, then adds
# keel ($(BUILD)/keel, static), keel-mark-good.service and the watchdog
# drop-in (dist/systemd) and what a read-only root needs, in
# $(DEBIAN_ROOT)/root. Cached: the base is rebuilt only when the mmdebstrap
# command changes (about 40 s, 100 MiB), the root when keel, dist/systemd
# or the script change (seconds); otherwise nothing is done. The VM suite's
# Debian scenarios (vmtests/debian_test.go) boot it.
DEBIAN_ROOT ?= $(BUILD)/debian-root
debian-root: deps build
	./scripts/debian-root.sh $(DEBIAN_ROOT) $(BUILD)/keel

# The inner loop: no installs (run `make deps` once first: some unit tests
# run the real tools), no VMs, seconds.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /vmtests$$)
unit:
	$(GO) test -short -count=1 $(UNIT_PKGS)

# Everything: installs what it needs first (apt packages, the Debian kernel,
# Go modules; idempotent), then every unit test (real tools included:
# fw_printenv, mkenvimage, sgdisk, mkfs.erofs...), then the VM suite.
test: deps kernel testsum debian-root
	$(GO) vet ./...
	set -o pipefail; $(GO) test -json -count=1 $(UNIT_PKGS) 2>&1 | $(TESTSUM)
	set -o pipefail; $(GO) test -json -count=1 -parallel 2 -timeout 55m ./vmtests/ 2>&1 | $(TESTSUM)

.PHONY: testsum
testsum:
	mkdir -p $(BUILD)
	$(GO) build -o $(TESTSUM) ./scripts/testsum

# The VM suite alone: QEMU (TCG) + OVMF + swtpm boot the disk images.
vmtest: deps kernel debian-root
	$(GO) test -count=1 -parallel 2 -timeout 55m -v ./vmtests/

# Power cuts in every write path (issue 9): TestTorture kills QEMU at
# random (seeded) moments in keel-init's boot commit, mark-good, mark-bad,
# try, the recovery reinstall, the factory reset and an update install
# (keel install from a USB stick; every other cut two racing, and the
# data partition made hostile before every power-on) and in a trial's boot
# (issue 22: a cut must never use the trial's try), TORTURE_CUTS times per
# path, and powers on again each time; bricks, data losses, unreadable
# records, lost acknowledged writes and spent tries must all be 0. make test
# runs one cut per path. Reproduce a failure with the seed it printed:
# make torture TORTURE_SEED=<seed>. The whole log (consoles included) is
# kept in $(BUILD)/torture.log; grep it for "torture path=" for the counts.
TORTURE_CUTS    ?= 30
TORTURE_SEED    ?=
TORTURE_TIMEOUT ?= 8h
# TORTURE_PATHS picks paths by name (a regular expression): make torture
# TORTURE_PATHS=install
TORTURE_PATHS   ?= .*
.PHONY: torture
torture: deps kernel
	mkdir -p $(BUILD)
	set -o pipefail; KEEL_TORTURE_CUTS=$(TORTURE_CUTS) KEEL_TORTURE_SEED=$(TORTURE_SEED) \
		$(GO) test -count=1 -parallel 2 -timeout $(TORTURE_TIMEOUT) -run '^TestTorture$$/^($(TORTURE_PATHS))$$' -v ./vmtests/ 2>&1 | tee $(BUILD)/torture.log

FUZZTIME ?= 20s
fuzz:
	$(GO) test ./bootenv/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bootenv/efivars/ -run '^$$' -fuzz '^FuzzPayload$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bootenv/ubootenv/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bootenv/ubootenv/ -run '^$$' -fuzz '^FuzzConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/gpt/ -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/cmdline/ -run '^$$' -fuzz '^FuzzParseHandoff$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/cmdline/ -run '^$$' -fuzz '^FuzzParseStore$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/seedimg/ -run '^$$' -fuzz '^FuzzDecodeData$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/uefi/ -run '^$$' -fuzz '^FuzzParseGUID$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/datareport/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/bundle/ -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/bundle/ -run '^$$' -fuzz '^FuzzChunk$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/slotimg/ -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./format/cpio/ -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./manifest/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./manifest/ -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./manifest/ -run '^$$' -fuzz '^FuzzParseEnvelope$$' -fuzztime $(FUZZTIME)
	$(GO) test ./manifest/ -run '^$$' -fuzz '^FuzzParsePublicKeys$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tpm/ -run '^$$' -fuzz '^FuzzReplayLog$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tpm/ -run '^$$' -fuzz '^FuzzParseRecord$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tpm/tcglog/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tpm/tcglog/ -run '^$$' -fuzz '^FuzzParseVariableData$$' -fuzztime $(FUZZTIME)
	$(GO) test ./secureboot/ -run '^$$' -fuzz '^FuzzParseVarStore$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/cli/ -run '^$$' -fuzz '^FuzzPrintEventsJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./builder/kmod/ -run '^$$' -fuzz '^FuzzParseModinfo$$' -fuzztime $(FUZZTIME)
	$(GO) test ./hw/pstore/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./hw/watchdog/ -run '^$$' -fuzz '^FuzzParseBootStatus$$' -fuzztime $(FUZZTIME)
	$(GO) test ./update/ -run '^$$' -fuzz '^FuzzLockStatus$$' -fuzztime $(FUZZTIME)
	$(GO) test ./update/channel/ -run '^$$' -fuzz '^FuzzParseTarget$$' -fuzztime $(FUZZTIME)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./bootenv/... ./internal/cli/ ./manifest/ ./format/verity/ ./recovery/

# The optional debug cpio for development builds: a u-root busybox (gosh,
# ls, cat, dmesg, mount, ps; u-root is pinned in go.mod as a tool) and the
# development-build marker etc/keel/debug (layout.DebugPath). Append it to
# keel's initramfs: keel-init then says DEVELOPMENT BUILD at start and opens
# a shell when it cannot boot anything. Nothing on the kernel command line
# enables the shell (keel.debug=1 does nothing); never ship this archive.
debug-cpio:
	mkdir -p $(BUILD)
	printf 'development build: debug shell enabled\n' > $(BUILD)/debug.marker
	$(GO) tool u-root -format=cpio -o $(BUILD)/debug.cpio -base=/dev/null -initcmd= -defaultsh=gosh \
		-files $(BUILD)/debug.marker:etc/keel/debug \
		$(addprefix github.com/u-root/u-root/cmds/core/,gosh ls cat dmesg mount ps)

# keel-init's time from start to the kexec call against a bare Go init
# that only mounts and execs, same VM configuration; initramfs sizes. And
# the same disk booted with Secure Boot enforced and without. And per board
# (qemu-x86_64-uefi, qemu-arm64-uboot, in the same run): power-on ->
# keel-init, keel-init -> kexec, power-on -> the slot's init.
bench-boot: deps kernel debian-root
	$(GO) test -run '^$$' -bench 'Benchmark(Boot(ToHandoff|SecureBoot|Phases)|DebianBoot)$$' -benchtime 3x -timeout 60m ./vmtests/

# Boot cost with a 64 MiB and a 1 GiB dm-verity root (should be the same).
bench-verity: deps kernel
	$(GO) test -run '^$$' -bench BenchmarkVerityBootCost -benchtime 2x -timeout 40m ./vmtests/

# Updates, no VM (builder/image/updatebench_test.go): update.Install of a
# 256 MiB root's full bundle from a file into empty partition files against
# dd of the same root partition bytes (MB/s and install/dd, goal >= 0.9;
# also NoLocal), and how much of the full bundle an install over HTTP
# fetches when the device runs the old version: one changed file (goal
# <= 10%), a new kernel only, a new root, with zstd --patch-from and the
# static delta bundle for comparison. On the Debian slot root of make
# debian-root (builder/image/compressbench_test.go): the chunk size's
# trade-off (the full bundle's size against the bytes an adaptive delta of
# a one-file change reads) and the install throughput of a compressed
# (format 2) bundle over an uncompressed one (install_ratio_compressed,
# goal >= 0.9). Then keel beside RAUC, Mender, casync, zstd --patch-from
# and xdelta3 on the update workloads W1-W5 (scripts/update-workloads.sh:
# Debian roots made with mmdebstrap, cached in $(BUILD)/workloads): bytes
# on the wire from an nginx's access log or the artifacts' sizes, a table
# and $(BUILD)/bench-update.json (builder/image/peersbench_test.go).
# Prints a summary table per benchmark; tens of minutes.
bench-update: deps debian-root
	./scripts/update-workloads.sh $(BUILD)/workloads
	$(GO) test -run '^$$' -bench '^Benchmark(InstallVsDD|DeltaFetched|ChunkSize|InstallCompressed|UpdatePeers)$$' -benchtime 1x -timeout 120m -v ./builder/image/

# Update channels: the metadata checks per second one nginx on 127.0.0.1
# serves to up-to-date devices (keel update check), against plain GETs of
# timestamp.json; bounded: 10 s each.
bench-channel: deps
	$(GO) test -run '^$$' -bench '^BenchmarkChannelCheck$$' -benchtime 10s -timeout 5m -v ./update/channel/

# A trial's first-boot snapshot of the data area, no VM
# (initramfs/dataarea/bench_linux_test.go): dataarea.Prepare copying a
# 256 MiB area (4 big files, 7000 small ones) on an ext4 image on a loop
# device, page cache cold (the byte copy: ext4 has no reflinks), and on the
# temporary folder's file system when it has reflinks. Reports s/GiB and
# MB/s. Root (it mounts); a minute or so.
bench-data: deps
	$(GO) test -run '^$$' -bench BenchmarkSnapshot -benchtime 3x ./initramfs/dataarea/

# The demo: two A/B stories in QEMU (an update that commits, one that falls
# back), booted from disk through the board's firmware. BOARD picks the
# board: qemu-x86_64-uefi (OVMF with swtpm, under UEFI Secure Boot: the
# first boot enrols keel's keys; SECURE_BOOT=false runs without) or
# qemu-arm64-uboot (U-Boot runs keel's boot.scr; the state is a redundant
# U-Boot env, which fw_printenv reads on the host; no Secure Boot there).
BOARD       ?= qemu-x86_64-uefi
SECURE_BOOT ?= true
demo: deps kernel
	$(GO) run ./cmd/keel-demo -board=$(BOARD) -secure-boot=$(SECURE_BOOT)

# The CLI alone on a redundant U-Boot env file, checked with fw_printenv.
demo-host: deps build
	./scripts/demo-host.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# Debian's generic kernel and its modules, fetched with apt into
# $(BUILD)/kernel/ARCH (vmlinuz, modules, version) for every board's
# architecture: amd64 (qemu-x86_64-uefi) and arm64 (qemu-arm64-uboot); the
# .debs are cached and a second run is quick. make kernel KERNEL_ARCHS=amd64
# fetches one.
KERNEL_ARCHS ?= amd64 arm64
.PHONY: kernel
kernel:
	for arch in $(KERNEL_ARCHS); do ./scripts/fetch-kernel.sh $$arch $(BUILD)/kernel/$$arch || exit 1; done
