# keel — see README.md. Build outputs go to build/ (ignored by git).
GO      ?= go
BUILD   ?= build
export CGO_ENABLED ?= 0

.PHONY: all deps build unit test fuzz bench demo clean

all: build

deps:
	./scripts/install-deps.sh

build:
	mkdir -p $(BUILD)
	$(GO) build -trimpath -o $(BUILD)/keel ./cmd/keel

# The inner loop: no installs (run `make deps` once first: some unit tests
# run the real tools), no VMs, seconds.
unit:
	$(GO) test -short -count=1 ./...

# Everything: installs what it needs first (idempotent), then runs every
# test, including those that run the real tools (fw_printenv, mkenvimage,
# sgdisk).
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 ./...

FUZZTIME ?= 20s
fuzz:
	$(GO) test ./bootenv/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bootenv/efivars/ -run '^$$' -fuzz '^FuzzPayload$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bootenv/ubootenv/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./bootenv/ubootenv/ -run '^$$' -fuzz '^FuzzConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./disk/gpt/ -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./bootenv/... ./internal/cli/

demo: deps build
	./scripts/demo-host.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# Debian's generic kernel and its modules, fetched with apt into
# $(BUILD)/kernel/$(KERNEL_ARCH) (vmlinuz, modules, version); the .deb is
# cached and a second run is quick. Not part of test yet.
KERNEL_ARCH ?= amd64
.PHONY: kernel
kernel:
	./scripts/fetch-kernel.sh $(KERNEL_ARCH) $(BUILD)/kernel/$(KERNEL_ARCH)
