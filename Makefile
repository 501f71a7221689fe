# Build, image and boot the system. Everything but image assembly and the boots works without a
# Microkit SDK; those take it as MICROKIT_SDK=<path> (a Microkit 2.3 SDK for the board), or from
# the SDK tarball `make setup` unpacks (see "The Microkit SDK" below).
#
#   make                 build the test guest and cross-compile every PD ELF (no SDK needed)
#   make image           system image with the SDK's microkit tool (SYSTEM=production: system.xml,
#                        the VMM, its guest and the driver domains; SYSTEM=test: the test system)
#   make qemu            boot it in QEMU (Ctrl-A x to quit)
#   make test-qemu       boot the test system (system.xml + system-test.xml: the runtime self-test
#                        PDs too) with a timeout and assert the console
#   make test-qemu-production  boot system.xml itself (no self-test PDs) and assert the console
#   make test-qemu-hvfault  the deliberately broken VMM: the VM stops, the VMM keeps serving
#   make bench-qemu      exit-cost benchmark under -icount, full VMM against the null VMM, and
#                        block throughput under seL4 against the native run (bench-native)
#   make test-guest-native  the test guest on QEMU without seL4 (no SDK): its virtio-blk driver
#                        against QEMU's own device, then blk-disk-check on the disk image
#   make bench-native    the bench guest's block throughput on QEMU without seL4 (no SDK)
#   make test-smp        Debian's kernel with four vCPUs: nproc, per-CPU interrupts, a stress run,
#                        CPU hotplug, power-off (make linux-smp: the same guest to type into)
#   make test-multivm    two VMs side by side (the system sdf-multivm generates from system.xml):
#                        both test guests pass, each on its own half of the disk, input switched
#   make test-multivm-crash  the same, one VMM crashed on purpose: the other VM runs on
#   make test-multivm-linux  Debian's kernel in both VMs, each shell on its own half of the disk
#   make bench-net       ping and nc between the two Linux VMs under -icount, against loopback
#   make test            everything CI runs: fmt, clippy, host tests, cross-build, fuzz, boots
#   make test-host       the part of `make test` that needs neither an SDK nor QEMU
#   make mutants         cargo-mutants over the queue, driver and VMM crates, one mutant at a time;
#                        scores in build/mutants/SCORES.md (slow: not part of make test)
#   make pd-sizes        each PD's memory (ELF segments, stack, system.xml regions) against the
#                        size goals, in build/out/pd-sizes.md (no SDK)
#
# GUEST_IMAGE=<arm64 Image> [GUEST_DTB=<dtb>] [GUEST_INITRD=<file>] boots another guest.

MICROKIT_BOARD  ?= qemu_virt_aarch64
MICROKIT_CONFIG ?= debug
BUILD_DIR       ?= build/out
QEMU            ?= qemu-system-aarch64
QEMU_TIMEOUT    ?= 60
CARGO           ?= cargo

# The Microkit SDK, resolved in this order:
#  1. MICROKIT_SDK given on the command line or in the environment;
#  2. the SDK `make setup` unpacked into $(SDK_LOCAL) from MICROKIT_SDK_TARBALL (default: the
#     tarball beside the project in ../shared, when it is there), its SHA-256 checked first;
#  3. none: every target that needs one fails, saying in one line what to pass.
# The local SDK is looked up when a recipe first needs it (not when the Makefile is read), so
# `make setup test` finds the SDK that setup has just unpacked.
SDK_VERSION          := 2.3.0
SDK_LOCAL            := build/microkit-sdk-$(SDK_VERSION)
MICROKIT_SDK_TARBALL ?= $(wildcard ../shared/microkit-sdk-$(SDK_VERSION)-linux-x86-64.tar.gz)
# The expected SHA-256: the .sha256 file beside the tarball (sha256sum's format), unless given.
MICROKIT_SDK_SHA256  ?= $(shell cut -d' ' -f1 $(MICROKIT_SDK_TARBALL).sha256 2>/dev/null)
SDK_GIVEN            := $(origin MICROKIT_SDK)
ifeq ($(SDK_GIVEN),undefined)
MICROKIT_SDK = $(eval MICROKIT_SDK := $(shell test -x $(SDK_LOCAL)/bin/microkit && echo $(abspath $(SDK_LOCAL))))$(MICROKIT_SDK)
endif
TARGET          := aarch64-unknown-none

# Protection domains: crate name = ELF name in system.xml's <program_image>. The production
# system (system.xml) has PDS; the test system adds TEST_PDS (system-test.xml, an overlay that
# sdf-compose splices into system.xml: one source for everything both share).
PDS      := vmm serial-driver blk-driver blk-virt net-virt timer-driver driver-monitor
TEST_PDS := selftest-ping selftest-pong
# Which system `image` builds: production (system.xml, what a user boots) or test (the boot
# tests'). Every PD of a test image is generated from the composed test system (SYSTEM_XML), in a
# target dir of its own: the VMM finds its liveness peer there, the serial driver its self-test
# clients.
SYSTEM ?= production
ifeq ($(SYSTEM),test)
SYSTEM_PDS  = $(PDS) $(TEST_PDS)
SYSTEM_FILE = $(OUT)/system-test.xml
SYSTEM_ENV  = SYSTEM_XML=$(abspath $(SYSTEM_FILE))
PD_TARGET_DIR ?= target/pd-test-$(MICROKIT_CONFIG)
else ifeq ($(SYSTEM),multivm)
# Several VMs side by side (issue 18): generated from system.xml and the VM list VMS by
# sdf-multivm (build/sdf/src/multivm.rs); every PD built from it in a target dir of its own.
SYSTEM_PDS  = $(PDS)
SYSTEM_FILE = $(OUT)/system-multivm.xml
SYSTEM_ENV  = SYSTEM_XML=$(abspath $(SYSTEM_FILE))
PD_TARGET_DIR ?= target/pd-multivm-$(MICROKIT_CONFIG)
else ifeq ($(SYSTEM),production)
SYSTEM_PDS  = $(PDS)
SYSTEM_FILE = system.xml
SYSTEM_ENV  =
PD_TARGET_DIR ?= target/pd-$(MICROKIT_CONFIG)
else
$(error SYSTEM=$(SYSTEM): production, test or multivm)
endif

# The guest the VMM boots: by default the bare-metal test guest and the platform's own DTB;
# GUEST_IMAGE=<any arm64 Image> (and GUEST_DTB, GUEST_INITRD) boot something else in its place.
GUEST_DIR    := $(BUILD_DIR)/guests
GUEST_IMAGE  ?= $(GUEST_DIR)/testguest.Image
GUEST_DTB    ?= $(GUEST_DIR)/virt.dtb
GUEST_INITRD ?=
# Extra cargo features of the VMM (e.g. VMM_FEATURES=broken-handler) and of the test guest.
# VMM_NO_DEFAULT_FEATURES=1 builds the PDs without their default features (the VMM's is
# console-runs).
VMM_FEATURES ?=
VMM_NO_DEFAULT_FEATURES ?=
GUEST_FEATURES ?=
# Extra cargo features of the other PDs (e.g. blk-driver/fault-injection), and the environment
# their build sees (e.g. BLK_CRASH_EVERY=15): test-qemu-restart's crashing drivers.
PD_FEATURES ?=
PD_ENV ?=
# The system test-qemu boots: the test system (its expectations include the self-test PDs).
BOOT_SYSTEM ?= test
# Console expectations test-qemu asserts: build/expect/$(EXPECT).txt. EXPECT_EXIT: QEMU must
# also end by itself (the guest's PSCI SYSTEM_OFF reached the machine); not for a VM that stops.
EXPECT ?= $(MICROKIT_CONFIG)
EXPECT_EXIT ?= 1
# After the boot, test-qemu checks the disk image (fresh and zeroed before each boot) against the
# test guest's block plan (guests/blk-pattern): nothing the guest wrote through the VMM and the
# block driver domain may be lost. Empty for guests that do not run the block cases.
DISK_CHECK ?= $(if $(filter $(GUEST_DIR)/testguest.Image,$(GUEST_IMAGE)),1)

OUT      := $(BUILD_DIR)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
ELF_DIR  := $(OUT)/elf
IMAGE    := $(OUT)/loader.img
REPORT   := $(OUT)/report.txt
QEMU_LOG := $(OUT)/qemu.log

# The block driver domain's disk: a raw image QEMU presents as a modern virtio-blk-device on
# virtio-mmio (the first -device lands in the last transport, 0x0a003e00, INTID 79).
DISK_IMAGE ?= $(OUT)/disk.img
DISK_SIZE  ?= 16M
QEMU_DISK  = -drive if=none,format=raw,file=$(DISK_IMAGE),id=hd0 \
             -device virtio-blk-device,drive=hd0 -global virtio-mmio.force-legacy=false

# -no-reboot: a guest's SYSTEM_RESET (passed to the firmware by the VMM) ends the run too.
QEMU_ARGS = -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
             -device loader,file=$(IMAGE),addr=0x70000000,cpu-num=0 $(QEMU_DISK)

SDK_HELP := no Microkit SDK: run make setup with the SDK tarball in ../shared (or \
MICROKIT_SDK_TARBALL=<microkit-sdk-$(SDK_VERSION)-linux-x86-64.tar.gz>), or pass \
MICROKIT_SDK=<unpacked Microkit $(SDK_VERSION) SDK> (a Microkit release from github.com/seL4/microkit, \
or built there with build_sdk.py at tag $(SDK_VERSION) with seL4 16.0.0)

.PHONY: all setup setup-toolchains setup-packages setup-sdk guest check-guest-dtb build image qemu test-qemu test-qemu-release \
	test-qemu-hvfault test-qemu-production test-qemu-restart test-linux-restart test-smp test-multivm test-multivm-crash test-multivm-linux test-linux-without-console-runs bench-net linux-smp-guest bench-smp system-file bench-qemu test-guest-native bench-native test test-host test-steps host-test loom \
	fuzz fuzz-cmin mutants pd-sizes abi-parity fmt-check clippy check-sdk check-qemu clean linux-guest linux-image linux test-linux linux-smp-image linux-smp bench-linux-idle bench-linux test-sdk-checksum
SHELL := /bin/bash

TOOLCHAIN := $(shell sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)

all: build

# Installs what a fresh machine lacks, each step only when it is missing: the pinned toolchain
# with its target and components (a pinned toolchain is not always installed on demand), the
# pinned nightly and cargo-fuzz for the fuzz step, Debian's packages the tests call (QEMU, dtc and
# fdtput, mke2fs), and the Microkit SDK from its tarball (checksum first).
setup: setup-toolchains setup-packages setup-sdk

# Nightly only for cargo-fuzz (libFuzzer needs -Zsanitizer); everything else builds on stable.
FUZZ_TOOLCHAIN     := nightly-2026-05-19
CARGO_FUZZ_VERSION := 0.13.2
setup-toolchains:
	rustup toolchain install $(TOOLCHAIN) --profile minimal --component rustfmt,clippy --target $(TARGET)
	rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	@if [ "$$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $(CARGO_FUZZ_VERSION)" ]; then \
		echo "setup: installing cargo-fuzz $(CARGO_FUZZ_VERSION) from crates.io"; \
		$(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked; fi

# Tool on PATH = Debian package that brings it.
DEB_TOOLS := qemu-system-aarch64=qemu-system-arm dtc=device-tree-compiler \
             fdtput=device-tree-compiler mke2fs=e2fsprogs
setup-packages:
	@missing=$$(for t in $(DEB_TOOLS); do command -v $${t%%=*} >/dev/null || echo $${t#*=}; done | sort -u); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing Debian's" $$missing; \
		command -v apt-get >/dev/null || { echo "setup: no apt-get: install" $$missing "by hand"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; fi

# Unpacks the SDK tarball into $(SDK_LOCAL) after checking its SHA-256 against the .sha256 file
# beside it (or MICROKIT_SDK_SHA256); a mismatch is refused and nothing is unpacked. Skipped when
# MICROKIT_SDK is given, and when the same tarball is already unpacked (its checksum is recorded).
# MICROKIT_SDK is expanded here only when given: expanding the lazy lookup would fix it, empty,
# before the SDK is unpacked, and `make setup test` would then find no SDK.
setup-sdk:
	@if [ "$(SDK_GIVEN)" != undefined ]; then echo "setup: using MICROKIT_SDK=$(if $(filter-out undefined,$(SDK_GIVEN)),$(MICROKIT_SDK))"; exit 0; fi; \
	if [ -z "$(MICROKIT_SDK_TARBALL)" ]; then \
		echo "setup: no Microkit SDK tarball in ../shared and no MICROKIT_SDK: images and boots will need one ($(SDK_HELP))"; exit 0; fi; \
	if [ ! -f "$(MICROKIT_SDK_TARBALL)" ]; then echo "setup: MICROKIT_SDK_TARBALL=$(MICROKIT_SDK_TARBALL) does not exist"; exit 1; fi; \
	if [ -z "$(MICROKIT_SDK_SHA256)" ]; then \
		echo "setup: no checksum for $(MICROKIT_SDK_TARBALL): put its .sha256 beside it or pass MICROKIT_SDK_SHA256=<hex>"; exit 1; fi; \
	if [ -x $(SDK_LOCAL)/bin/microkit ] && [ "$$(cat $(SDK_LOCAL)/.tarball-sha256 2>/dev/null)" = "$(MICROKIT_SDK_SHA256)" ]; then \
		echo "setup: Microkit SDK $(SDK_VERSION) already unpacked in $(SDK_LOCAL)"; exit 0; fi; \
	actual=$$(sha256sum "$(MICROKIT_SDK_TARBALL)" | cut -d' ' -f1); \
	if [ "$$actual" != "$(MICROKIT_SDK_SHA256)" ]; then \
		echo "setup: REFUSED $(MICROKIT_SDK_TARBALL): SHA-256 $$actual, expected $(MICROKIT_SDK_SHA256); nothing unpacked"; exit 1; fi; \
	tmp=$$(mktemp -d build/.sdk-unpack.XXXXXX) && tar -xzf "$(MICROKIT_SDK_TARBALL)" -C $$tmp && \
	test -x $$tmp/microkit-sdk-$(SDK_VERSION)/bin/microkit || { echo "setup: $(MICROKIT_SDK_TARBALL) holds no microkit-sdk-$(SDK_VERSION)/bin/microkit"; rm -rf $$tmp; exit 1; }; \
	echo "$$actual" > $$tmp/microkit-sdk-$(SDK_VERSION)/.tarball-sha256 && \
	rm -rf $(SDK_LOCAL) && mv $$tmp/microkit-sdk-$(SDK_VERSION) $(SDK_LOCAL) && rmdir $$tmp && \
	echo "setup: Microkit SDK $(SDK_VERSION) (SHA-256 $$actual) unpacked into $(SDK_LOCAL)"

guest:
	GUEST_FEATURES=$(GUEST_FEATURES) guests/testguest/build-image.sh $(GUEST_DIR)
	@mkdir -p $(GUEST_DIR)
	dtc -q -I dts -O dtb -o $(GUEST_DIR)/virt.dtb guests/platform/virt.dts

# The test system: system.xml with the overlay spliced in, validated (rewritten only on change).
# The VMs of SYSTEM=multivm: the first is system.xml's own vmm.
VMS ?= vmm vmm2
system-file:
	@if [ "$(SYSTEM)" = test ]; then \
		$(CARGO) run -q -p sdf --bin sdf-compose -- system.xml system-test.xml $(SYSTEM_FILE) && \
		echo "system: $(SYSTEM_FILE) (system.xml + system-test.xml)"; fi
	@if [ "$(SYSTEM)" = multivm ]; then \
		$(CARGO) run -q -p sdf --bin sdf-multivm -- system.xml $(SYSTEM_FILE) $(VMS) && \
		echo "system: $(SYSTEM_FILE) (system.xml for the VMs $(VMS))"; fi

# The VMM's virtio devices are cache-coherent (it skips cache maintenance once the guest's caches
# are on: vmm/pd/src/guest_memory.rs), so a guest DTB that has these transports must mark them
# dma-coherent (a DTB without them does not use them).
VIRTIO_NODES := /virtio_mmio@a003e00 /virtio_mmio@a003c00 /virtio_mmio@a003a00
check-guest-dtb: guest
	@for n in $(VIRTIO_NODES); do \
		props=$$(fdtget -p $(GUEST_DTB) $$n 2>/dev/null) || continue; \
		grep -qx dma-coherent <<< "$$props" || { \
		echo "build: $(GUEST_DTB): $$n is not marked dma-coherent; the VMM's virtio devices are cache-coherent and skip cache maintenance while the guest's caches are on (vmm/pd/src/guest_memory.rs)"; exit 1; }; done

build: guest system-file check-guest-dtb
	$(SYSTEM_ENV) MICROKIT_CONFIG=$(MICROKIT_CONFIG) CARGO_TARGET_DIR=$(PD_TARGET_DIR) \
	GUEST_IMAGE=$(abspath $(GUEST_IMAGE)) GUEST_DTB=$(abspath $(GUEST_DTB)) \
	GUEST_INITRD=$(if $(GUEST_INITRD),$(abspath $(GUEST_INITRD))) $(PD_ENV) \
		$(CARGO) build --release --target $(TARGET) $(addprefix -p ,$(SYSTEM_PDS)) \
		$(if $(VMM_FEATURES),--features vmm/$(VMM_FEATURES)) \
		$(if $(VMM_NO_DEFAULT_FEATURES),--no-default-features) \
		$(if $(PD_FEATURES),--features "$(PD_FEATURES)")
	@mkdir -p $(ELF_DIR)
	@for pd in $(SYSTEM_PDS); do cp $(PD_TARGET_DIR)/$(TARGET)/release/$$pd $(ELF_DIR)/$$pd.elf; done
	@echo "built $(words $(SYSTEM_PDS)) PD ELFs of the $(SYSTEM) system for $(MICROKIT_CONFIG) in $(ELF_DIR)"

# Each PD's memory (sdf's pd-sizes, build/sdf/src/sizes.rs): its ELF's PT_LOAD segments (text,
# rodata, data, bss; 4 KiB pages segment by segment, as the Microkit tool allocates them), stack
# and IPC buffer, and the regions system.xml maps into it (shared, device, guest RAM, private),
# against issue 14's goals: the VMM without its guest under 256 KiB, each driver under 64 KiB
# (PASS/OVER; OVER does not fail the target, a missing or malformed ELF does). The VMM embeds
# its guest (include_bytes!): the guest's files are found in its ELF by content and left out.
PD_SIZES := $(BUILD_DIR)/pd-sizes.md
pd-sizes: build
	$(CARGO) run -q -p sdf --bin pd-sizes -- --system $(SYSTEM_FILE) --elf-dir $(ELF_DIR) \
		$(foreach f,$(GUEST_IMAGE) $(GUEST_DTB) $(GUEST_INITRD),--embedded vmm=$(f)) --out $(PD_SIZES)

# Boots need QEMU: a missing one fails the target (`make setup` installs Debian's).
check-qemu:
	@command -v $(QEMU) >/dev/null || { echo "$(QEMU) not found: run make setup (Debian: qemu-system-arm)"; exit 1; }

check-sdk:
	@if [ -z "$(MICROKIT_SDK)" ]; then echo "$@: $(SDK_HELP)"; exit 1; fi
	@if [ ! -x "$(MICROKIT_SDK)/bin/microkit" ]; then \
		echo "MICROKIT_SDK=$(MICROKIT_SDK) has no bin/microkit: point it at an unpacked Microkit 2.3 SDK"; exit 1; fi
	@if [ ! -d "$(MICROKIT_SDK)/board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)" ]; then \
		echo "MICROKIT_SDK=$(MICROKIT_SDK) has no board/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)"; exit 1; fi

# A PD its monitor restarts in place keeps no state in its image's writable memory beyond what
# the Microkit tool patches (sdf::restartable): checked on every image.
image: check-sdk build
	@$(CARGO) run -q -p sdf --bin check-restartable -- --system $(SYSTEM_FILE) --elf-dir $(ELF_DIR)
	@test -f $(DISK_IMAGE) || truncate -s $(DISK_SIZE) $(DISK_IMAGE)
	$(MICROKIT_SDK)/bin/microkit $(SYSTEM_FILE) --search-path $(ELF_DIR) \
		--board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) -o $(IMAGE) -r $(REPORT)
	@echo "image: $(IMAGE) of $(SYSTEM_FILE) (report: $(REPORT))"

qemu: image
	$(QEMU) $(QEMU_ARGS) -serial mon:stdio

test-qemu: check-sdk check-qemu
	@if [ ! -f build/expect/$(EXPECT).txt ]; then \
		echo "test-qemu: no console expectations build/expect/$(EXPECT).txt"; exit 1; fi; \
	rm -f $(DISK_IMAGE) && $(MAKE) --no-print-directory image SYSTEM=$(BOOT_SYSTEM) && \
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/$(EXPECT).txt --log $(QEMU_LOG) \
		--timeout $(QEMU_TIMEOUT) --linger 2 $(if $(EXPECT_EXIT),--expect-exit) -- $(QEMU) $(QEMU_ARGS) -serial stdio -monitor none && \
	if [ -n "$(DISK_CHECK)" ]; then $(CARGO) run -q -p blk-pattern --bin blk-disk-check -- $(DISK_IMAGE); fi

# Two VMs side by side (issue 18): the system sdf-multivm generates from system.xml for VMS (vmm
# and vmm2), each VM running the test guest on its own half of a 32 MiB disk (blk_virt's equal
# partitions), its console lines prefixed with its VMM's name by the serial driver, typed input
# switched to vmm2 with Ctrl-\ 1 (build/expect/multivm.txt). Then each half of the disk image is
# checked against the test guest's block plan on its own: each VM wrote its whole plan, and
# only into its own partition.
MULTIVM_BUILD := $(BUILD_DIR)/multivm
MULTIVM_OUT   := $(MULTIVM_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
test-multivm: check-sdk check-qemu
	$(MAKE) --no-print-directory test-qemu BOOT_SYSTEM=multivm BUILD_DIR=$(MULTIVM_BUILD) \
		EXPECT=multivm EXPECT_EXIT= DISK_SIZE=32M DISK_CHECK= && \
	for i in 0 1; do \
		dd if=$(MULTIVM_OUT)/disk.img of=$(MULTIVM_OUT)/disk-vm$$i.img bs=1M skip=$$((i * 16)) count=16 status=none && \
		echo "test-multivm: VM $$i's half of the disk:" && \
		$(CARGO) run -q -p blk-pattern --bin blk-disk-check -- $(MULTIVM_OUT)/disk-vm$$i.img || exit 1; done

# A VMM that crashes leaves the other VM running: the same two-VM system, the VMMs built with
# fault injection (vmm/fault-injection). The runner first makes vmm ask blk_virt for the first
# block of vmm2's half (blk_virt refuses it), then types the crash command at vmm's console
# prompt: that VMM takes a VM fault (the Microkit monitor reports it), its guest stops, and vmm2's
# guest passes every case and powers off (build/expect/multivm-crash.txt); vmm2's half of the
# disk is checked.
MULTIVM_CRASH_BUILD := $(BUILD_DIR)/multivm-crash
MULTIVM_CRASH_OUT   := $(MULTIVM_CRASH_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
test-multivm-crash: check-sdk check-qemu
	$(MAKE) --no-print-directory test-qemu BOOT_SYSTEM=multivm BUILD_DIR=$(MULTIVM_CRASH_BUILD) \
		PD_TARGET_DIR=target/pd-multivm-crash-$(MICROKIT_CONFIG) VMM_FEATURES=fault-injection \
		EXPECT=multivm-crash EXPECT_EXIT= DISK_SIZE=32M DISK_CHECK= && \
	dd if=$(MULTIVM_CRASH_OUT)/disk.img of=$(MULTIVM_CRASH_OUT)/disk-vm1.img bs=1M skip=16 count=16 status=none && \
	echo "test-multivm-crash: vmm2's half of the disk:" && \
	$(CARGO) run -q -p blk-pattern --bin blk-disk-check -- $(MULTIVM_CRASH_OUT)/disk-vm1.img

# Driver restarts: the test system with drivers built with fault injection (their own target
# dir and BUILD_DIR). The block driver crashes in its first life on the request that finds two
# already on the device (the guest's batch of four: several in flight), then on every
# BLK_CRASH_EVERY-th request of each later life; the test guest (feature serial-crash) writes
# the serial driver's crash command first. driver_monitor restarts each; every block case must
# pass, blk-disk-check must find every byte the plan wrote, and the console must come back
# (build/expect/restart.txt). The restart time is the figure between the monitor's fault line
# and the VMM's first response (timer ticks; 16 instructions each under -icount shift=0).
RESTART_BUILD := $(BUILD_DIR)/restart
RESTART_OUT   := $(RESTART_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
BLK_CRASH_EVERY ?= 15
RESTART_IMAGE_ARGS = SYSTEM=test BUILD_DIR=$(RESTART_BUILD) PD_TARGET_DIR=target/pd-restart-$(MICROKIT_CONFIG) \
	GUEST_FEATURES=serial-crash PD_FEATURES="blk-driver/fault-injection serial-driver/fault-injection" \
	PD_ENV="BLK_CRASH_BUSY=2 BLK_CRASH_EVERY=$(BLK_CRASH_EVERY)"
test-qemu-restart: check-sdk check-qemu
	@rm -f $(RESTART_OUT)/disk.img && $(MAKE) --no-print-directory image $(RESTART_IMAGE_ARGS) && \
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/restart.txt --log $(RESTART_OUT)/qemu.log \
		--timeout $(QEMU_TIMEOUT) --linger 2 --expect-exit -- \
		$(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
		-device loader,file=$(RESTART_OUT)/loader.img,addr=0x70000000,cpu-num=0 \
		-drive if=none,format=raw,file=$(RESTART_OUT)/disk.img,id=hd0 -device virtio-blk-device,drive=hd0 \
		-global virtio-mmio.force-legacy=false -icount shift=0,sleep=off -serial stdio -monitor none && \
	$(CARGO) run -q -p blk-pattern --bin blk-disk-check -- $(RESTART_OUT)/disk.img && \
	build/bench/restart-time.sh --icount $(RESTART_OUT)/qemu.log

# Exit-cost benchmark: the bench build of the test guest measures round trips with the virtual
# counter, under -icount (virtual time counts instructions, so the figures are deterministic),
# with the full VMM, the floor VMM (the least a correct MMIO emulation does on seL4: read the
# register prefix, write the result and the PC, reply) and the null VMM (PC + 4, reply); the
# table goes to $(BENCH_DIR)/exit-costs-$(MICROKIT_CONFIG).md (MICROKIT_CONFIG=release for the
# release kernel).
BENCH_DIR     := $(BUILD_DIR)/bench
BENCH_TIMEOUT ?= 600
BENCH_VMMS    ?= full floor null
bench-qemu: check-sdk check-qemu
	guests/testguest/build-image.sh --bench $(BENCH_DIR)/guest
	@for v in $(BENCH_VMMS); do \
		$(MAKE) --no-print-directory image BUILD_DIR=$(BENCH_DIR)/$$v \
			GUEST_IMAGE=$(abspath $(BENCH_DIR))/guest/testguest-bench.Image \
			VMM_FEATURES=$$( [ $$v = full ] || echo $$v-vmm ) || exit 1; \
		echo "bench-qemu: booting the $$v VMM ($(MICROKIT_CONFIG)) under -icount"; \
		$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/bench.txt \
			--log $(BENCH_DIR)/$$v-$(MICROKIT_CONFIG).log --timeout $(BENCH_TIMEOUT) --linger 3 -- \
			$(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic \
			-device loader,file=$(BENCH_DIR)/$$v/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)/loader.img,addr=0x70000000,cpu-num=0 \
			-drive if=none,format=raw,file=$(BENCH_DIR)/$$v/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)/disk.img,id=hd0 \
			-device virtio-blk-device,drive=hd0 -global virtio-mmio.force-legacy=false \
			-icount shift=0,sleep=off -serial stdio -monitor none > /dev/null || exit 1; \
	done
	@$(MAKE) --no-print-directory bench-native
	$(CARGO) run -q -p qemu-expect --bin bench-table -- $(BENCH_DIR)/full-$(MICROKIT_CONFIG).log \
		$(if $(filter floor,$(BENCH_VMMS)),$(BENCH_DIR)/floor-$(MICROKIT_CONFIG).log,-) \
		$(BENCH_DIR)/null-$(MICROKIT_CONFIG).log $(BENCH_DIR)/exit-costs-$(MICROKIT_CONFIG).md $(BENCH_DIR)/native.log
	@cat $(BENCH_DIR)/exit-costs-$(MICROKIT_CONFIG).md | sed -n '1,/^## Block/p'

# The bench guest natively on QEMU virt (no seL4, no SDK), under the same -icount, with two CPUs
# (the IPI round trip's second): the exit benchmarks need the VMM and are skipped; the block
# throughput runs against QEMU's own virtio-blk-device on a fresh zeroed disk. Log in
# $(BENCH_DIR)/native.log, table in $(BENCH_DIR)/blk-native.md.
NATIVE_BENCH_DISK := $(BENCH_DIR)/native-disk.img
bench-native: check-qemu
	@guests/testguest/build-image.sh --bench $(BENCH_DIR)/guest && \
	rm -f $(NATIVE_BENCH_DISK) && truncate -s $(DISK_SIZE) $(NATIVE_BENCH_DISK) && \
	echo "bench-native: booting the bench guest natively under -icount" && \
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/bench-native.txt \
		--log $(BENCH_DIR)/native.log --timeout $(BENCH_TIMEOUT) --linger 1 -- \
		$(QEMU) -machine virt -cpu cortex-a53 -smp 2 -m 2G -nographic -kernel $(BENCH_DIR)/guest/testguest-bench.Image \
		-drive if=none,format=raw,file=$(NATIVE_BENCH_DISK),id=hd0 -device virtio-blk-device,drive=hd0 \
		-global virtio-mmio.force-legacy=false -icount shift=0,sleep=off -serial stdio -monitor none > /dev/null && \
	$(CARGO) run -q -p qemu-expect --bin bench-table -- --native $(BENCH_DIR)/native.log $(BENCH_DIR)/blk-native.md

# The test guest natively on QEMU virt (no seL4, no SDK): its own virtio-blk driver against QEMU's
# virtio-blk-device (slot 31, INTID 79) on a fresh zeroed disk; the guest finds it runs natively
# and runs only the cases that need no VMM (build/expect/native.txt; two CPUs for smp-ipi); then
# blk-disk-check checks the disk image against the plan (guests/blk-pattern).
NATIVE_DIR  := $(BUILD_DIR)/native
NATIVE_DISK := $(NATIVE_DIR)/disk.img
test-guest-native: check-qemu
	@guests/testguest/build-image.sh $(GUEST_DIR) && \
	mkdir -p $(NATIVE_DIR) && rm -f $(NATIVE_DISK) && truncate -s $(DISK_SIZE) $(NATIVE_DISK) && \
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/native.txt \
		--log $(NATIVE_DIR)/qemu.log --timeout $(QEMU_TIMEOUT) --linger 1 -- \
		$(QEMU) -machine virt -cpu cortex-a53 -smp 2 -m 512M -nographic -kernel $(GUEST_DIR)/testguest.Image \
		-drive if=none,format=raw,file=$(NATIVE_DISK),id=hd0 -device virtio-blk-device,drive=hd0 \
		-global virtio-mmio.force-legacy=false -serial stdio -monitor none && \
	$(CARGO) run -q -p blk-pattern --bin blk-disk-check -- $(NATIVE_DISK)

# The Linux guest: Debian's arm64 kernel and busybox-static (fetched with apt once; the .debs are
# cached in $(LINUX_DIR)/debs), an initramfs that loads the virtio and ext4 modules and starts a
# shell on the console, and an ext4 disk image made from guests/linux/disk (mke2fs -d, no root).
# `make linux` boots it for a person to type into (Ctrl-A x quits); `make test-linux` types a
# session itself (build/expect/linux.txt), powers the guest off, then checks the disk on the host.
LINUX_DIR      := $(BUILD_DIR)/linux
LINUX_BUILD    := $(BUILD_DIR)/linux-vm
LINUX_BOOTARGS ?= console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init nokaslr
LINUX_TIMEOUT  ?= 300
LINUX_DISK     := $(LINUX_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)/disk.img
LINUX_PD_TARGET ?= target/pd-linux-$(MICROKIT_CONFIG)
LINUX_IMAGE_ARGS = BUILD_DIR=$(LINUX_BUILD) PD_TARGET_DIR=$(LINUX_PD_TARGET) \
	GUEST_IMAGE=$(LINUX_DIR)/Image GUEST_INITRD=$(LINUX_DIR)/initramfs-shell.cpio.gz \
	GUEST_DTB=$(LINUX_DIR)/virt-shell.dtb DISK_IMAGE=$(LINUX_DISK)
LINUX_QEMU_ARGS = -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
	-device loader,file=$(LINUX_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)/loader.img,addr=0x70000000,cpu-num=0 \
	-drive if=none,format=raw,file=$(LINUX_DISK),id=hd0 -device virtio-blk-device,drive=hd0 \
	-global virtio-mmio.force-legacy=false

linux-guest:
	guests/linux/fetch-debian-guest.sh $(LINUX_DIR)
	dtc -q -I dts -O dtb -o $(LINUX_DIR)/virt-shell.dtb guests/platform/virt.dts
	fdtput -t s $(LINUX_DIR)/virt-shell.dtb /chosen bootargs "$(LINUX_BOOTARGS)"

# A fresh copy of the pristine ext4 image for each boot: what the guest writes is checked after.
linux-image: check-sdk linux-guest
	@mkdir -p $(dir $(LINUX_DISK)) && cp $(LINUX_DIR)/disk.img $(LINUX_DISK)
	@$(MAKE) --no-print-directory image $(LINUX_IMAGE_ARGS)

linux: check-qemu linux-image
	$(QEMU) $(LINUX_QEMU_ARGS) -serial mon:stdio

test-linux: check-qemu linux-image
	sed "s/@DISK_MD5@/$$(md5sum < $(LINUX_DISK) | cut -d' ' -f1)/" build/expect/linux.txt > $(LINUX_BUILD)/linux.txt
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect $(LINUX_BUILD)/linux.txt \
		--log $(LINUX_BUILD)/qemu.log --timeout $(LINUX_TIMEOUT) --linger 1 --expect-exit -- \
		$(QEMU) $(LINUX_QEMU_ARGS) -serial stdio -monitor none
	guests/linux/check-disk.sh $(LINUX_DISK) \
		/hello.txt $$(md5sum < guests/linux/disk/hello.txt | cut -d' ' -f1) \
		/from-guest/seq.txt $$(seq 1 20000 | md5sum | cut -d' ' -f1)
	$(if $(VMM_NO_DEFAULT_FEATURES),,grep -a 'vmm: console runs: runs=' $(LINUX_BUILD)/qemu.log | \
		grep -v 'instructions=0 ' || { echo "test-linux: no console run interpreted anything"; exit 1; })

# test-linux's session checks that console runs (the default feature console-runs: after an exit
# on the PL011 the guest's console loop is interpreted in the VMM, vmm/pd/src/console_run.rs)
# interpreted instructions. The same session with the VMM built without them
# (--no-default-features): every console register access an exit; its own build, image and
# disk; its counters must show no run.
test-linux-without-console-runs: check-sdk check-qemu
	@$(MAKE) --no-print-directory test-linux VMM_NO_DEFAULT_FEATURES=1 \
		LINUX_BUILD=$(BUILD_DIR)/linux-vm-exits LINUX_PD_TARGET=target/pd-linux-exits-$(MICROKIT_CONFIG)
	@grep -a 'vmm: console runs: runs=0 instructions=0 ' $(BUILD_DIR)/linux-vm-exits/qemu.log || \
		{ echo "test-linux-without-console-runs: console runs ran, or no counters"; exit 1; }

# Two Linux VMs side by side (issue 18): the generated two-VM system with Debian's kernel and the
# shell initramfs in both VMs, each on its own copy of the ext4 image (a 32 MiB disk: blk_virt
# gives each VM one half); the runner types into vmm2's shell first (Ctrl-\ 1), then into vmm's
# (Ctrl-\ 0): each mounts its /dev/vda (16 MiB), writes a file, unmounts
# (build/expect/multivm-linux.txt); then each half of the disk is checked on the host (clean,
# its own file, not the other's), and the md5 vmm's guest printed of the 32 MiB it sent through
# the virtual network against the md5 vmm2's guest printed of what it received. Last, both
# guests power off, and each VMM's idle statistics must show vCPUs parked and woken by the
# timer driver (none may be 0).
MVL_BUILD := $(BUILD_DIR)/multivm-linux
MVL_OUT   := $(MVL_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
test-multivm-linux: check-sdk check-qemu linux-guest
	@mkdir -p $(MVL_OUT) && cat $(LINUX_DIR)/disk.img $(LINUX_DIR)/disk.img > $(MVL_OUT)/disk.img
	@$(MAKE) --no-print-directory image SYSTEM=multivm BUILD_DIR=$(MVL_BUILD) \
		PD_TARGET_DIR=target/pd-multivm-linux-$(MICROKIT_CONFIG) GUEST_IMAGE=$(LINUX_DIR)/Image \
		GUEST_INITRD=$(LINUX_DIR)/initramfs-shell.cpio.gz GUEST_DTB=$(LINUX_DIR)/virt-shell.dtb \
		DISK_IMAGE=$(MVL_OUT)/disk.img
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/multivm-linux.txt \
		--log $(MVL_BUILD)/qemu.log --timeout $(LINUX_TIMEOUT) --linger 1 -- \
		$(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
		-device loader,file=$(MVL_OUT)/loader.img,addr=0x70000000,cpu-num=0 \
		-drive if=none,format=raw,file=$(MVL_OUT)/disk.img,id=hd0 -device virtio-blk-device,drive=hd0 \
		-global virtio-mmio.force-legacy=false -serial stdio -monitor none
	dd if=$(MVL_OUT)/disk.img of=$(MVL_OUT)/disk-vmm.img bs=1M count=16 status=none
	dd if=$(MVL_OUT)/disk.img of=$(MVL_OUT)/disk-vmm2.img bs=1M skip=16 count=16 status=none
	guests/linux/check-disk.sh $(MVL_OUT)/disk-vmm.img /vm.txt $$(echo vmm | md5sum | cut -d' ' -f1)
	guests/linux/check-disk.sh $(MVL_OUT)/disk-vmm2.img /vm.txt $$(echo vmm2 | md5sum | cut -d' ' -f1)
	@# sort -u: the serial driver writes a guest's line again after one of its own (the input
	@# switch that powers vmm2 off can come right after the rx-md5 line); two different sums
	@# still fail.
	@tx=$$(grep -ao 'tx-md5=[0-9a-f]\{32\}' $(MVL_BUILD)/qemu.log | cut -d= -f2 | sort -u); \
	rx=$$(grep -ao 'rx-md5=[0-9a-f]\{32\}' $(MVL_BUILD)/qemu.log | cut -d= -f2 | sort -u); \
	if [ -n "$$tx" ] && [ "$$tx" = "$$rx" ]; then \
		echo "test-multivm-linux: 32 MiB vmm -> vmm2 over nc: md5 $$tx at both ends: PASS"; \
	else echo "test-multivm-linux: FAIL: md5 sent '$$tx', received '$$rx'"; exit 1; fi

# The virtual network's throughput and latency under -icount shift=0,sleep=off
# (build/bench/net.sh): the two-Linux system (release configuration by default, its own build),
# ping and busybox nc between the VMs against loopback in one guest; table in
# $(BUILD_DIR)/bench/net/net.md (recorded in vmm/pd/BENCHMARKS.md).
BENCH_NET_BUILD := $(BUILD_DIR)/bench/net-image
BENCH_NET_OUT    = $(BENCH_NET_BUILD)/$(MICROKIT_BOARD)/$(BENCH_LINUX_CONFIG)
bench-net: check-sdk check-qemu linux-guest
	@mkdir -p $(BENCH_NET_OUT) && cat $(LINUX_DIR)/disk.img $(LINUX_DIR)/disk.img > $(BENCH_NET_OUT)/disk.img
	@$(MAKE) --no-print-directory image SYSTEM=multivm BUILD_DIR=$(BENCH_NET_BUILD) \
		MICROKIT_CONFIG=$(BENCH_LINUX_CONFIG) PD_TARGET_DIR=target/pd-multivm-linux-$(BENCH_LINUX_CONFIG) \
		GUEST_IMAGE=$(LINUX_DIR)/Image GUEST_INITRD=$(LINUX_DIR)/initramfs-shell.cpio.gz \
		GUEST_DTB=$(LINUX_DIR)/virt-shell.dtb DISK_IMAGE=$(BENCH_NET_OUT)/disk.img
	build/bench/net.sh $(BUILD_DIR)/bench/net $(BENCH_NET_OUT)/loader.img $(BENCH_NET_OUT)/disk.img

# The block driver crashing under Linux: the Linux image with a block driver built with fault
# injection (writes only: its 4th write request, then the 3rd of its second life, no third
# crash), in a build of its own. The runner writes a file of known md5 onto ext4 with dd while
# the driver crashes twice (build/expect/linux-restart.txt); the host then checks the image:
# e2fsck -fn clean, the file byte for byte. Under -icount shift=0,sleep=off, so the restart
# times that follow from the console are instructions (an idle wait for host I/O is skipped).
LINUX_RESTART_BUILD := $(BUILD_DIR)/linux-restart
LINUX_RESTART_OUT   := $(LINUX_RESTART_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
LINUX_RESTART_LINES := 400000
test-linux-restart: check-qemu check-sdk linux-guest
	@mkdir -p $(LINUX_RESTART_OUT) && cp $(LINUX_DIR)/disk.img $(LINUX_RESTART_OUT)/disk.img
	@$(MAKE) --no-print-directory image BUILD_DIR=$(LINUX_RESTART_BUILD) \
		PD_TARGET_DIR=target/pd-linux-restart-$(MICROKIT_CONFIG) GUEST_IMAGE=$(LINUX_DIR)/Image \
		GUEST_INITRD=$(LINUX_DIR)/initramfs-shell.cpio.gz GUEST_DTB=$(LINUX_DIR)/virt-shell.dtb \
		DISK_IMAGE=$(LINUX_RESTART_OUT)/disk.img PD_FEATURES=blk-driver/fault-injection \
		PD_ENV="BLK_CRASH_WRITES_ONLY=1 BLK_CRASH_AFTER=4 BLK_CRASH_EVERY=3 BLK_CRASH_LIVES=2"
	sed "s/@SRC_MD5@/$$(seq 1 $(LINUX_RESTART_LINES) | md5sum | cut -d' ' -f1)/" build/expect/linux-restart.txt \
		> $(LINUX_RESTART_BUILD)/linux-restart.txt
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect $(LINUX_RESTART_BUILD)/linux-restart.txt \
		--log $(LINUX_RESTART_BUILD)/qemu.log --timeout $(LINUX_TIMEOUT) --linger 1 --expect-exit -- \
		$(QEMU) -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
		-device loader,file=$(LINUX_RESTART_OUT)/loader.img,addr=0x70000000,cpu-num=0 \
		-drive if=none,format=raw,file=$(LINUX_RESTART_OUT)/disk.img,id=hd0 -device virtio-blk-device,drive=hd0 \
		-global virtio-mmio.force-legacy=false -icount shift=0,sleep=off -serial stdio -monitor none
	guests/linux/check-disk.sh $(LINUX_RESTART_OUT)/disk.img \
		/big.txt $$(seq 1 $(LINUX_RESTART_LINES) | md5sum | cut -d' ' -f1)
	build/bench/restart-time.sh --icount $(LINUX_RESTART_BUILD)/qemu.log

# SMP: the same Linux guest with SMP_VCPUS (4) CPUs in its device tree (guests/platform/smp-dtb.sh
# adds cpu@1.. to the shell guest's); system.xml's VM has four vCPUs, all served by the VMM PD,
# and the guest starts vCPUs 1..3 with PSCI CPU_ON. `make test-smp` types a session
# (build/expect/linux-smp.txt): nproc, per-CPU timer and IPI counts, a stress run on every CPU
# with ext4 on the disk meanwhile, CPU hotplug off and on, power-off; the disk image is checked
# on the host after (e2fsck clean, the file written byte for byte). Its own build dir, the Linux
# guest's PD target dir.
SMP_VCPUS ?= 4
SMP_BUILD := $(BUILD_DIR)/linux-smp
SMP_OUT   := $(SMP_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)
SMP_QEMU_ARGS = -machine virt,virtualization=on -cpu cortex-a53 -m 2G -nographic -no-reboot \
	-device loader,file=$(SMP_OUT)/loader.img,addr=0x70000000,cpu-num=0 \
	-drive if=none,format=raw,file=$(SMP_OUT)/disk.img,id=hd0 -device virtio-blk-device,drive=hd0 \
	-global virtio-mmio.force-legacy=false
linux-smp-guest: linux-guest
	guests/platform/smp-dtb.sh $(SMP_VCPUS) $(LINUX_DIR)/virt-shell.dtb $(LINUX_DIR)/virt-smp.dtb

linux-smp-image: check-sdk linux-smp-guest
	@mkdir -p $(SMP_OUT) && cp $(LINUX_DIR)/disk.img $(SMP_OUT)/disk.img
	@$(MAKE) --no-print-directory image BUILD_DIR=$(SMP_BUILD) PD_TARGET_DIR=target/pd-linux-$(MICROKIT_CONFIG) \
		GUEST_IMAGE=$(LINUX_DIR)/Image GUEST_INITRD=$(LINUX_DIR)/initramfs-shell.cpio.gz \
		GUEST_DTB=$(LINUX_DIR)/virt-smp.dtb DISK_IMAGE=$(SMP_OUT)/disk.img

test-smp: check-qemu linux-smp-image
	$(CARGO) run -q -p qemu-expect --bin qemu-expect -- --expect build/expect/linux-smp.txt \
		--log $(SMP_BUILD)/qemu.log --timeout $(LINUX_TIMEOUT) --linger 1 --expect-exit -- \
		$(QEMU) $(SMP_QEMU_ARGS) -serial stdio -monitor none
	guests/linux/check-disk.sh $(SMP_OUT)/disk.img /smp.txt $$(seq 1 20000 | md5sum | cut -d' ' -f1)

# The SMP boot side by side (issue 17): the same kernel, initramfs and bootargs with SMP_VCPUS
# CPUs natively (`-smp`) and under the VMM (release configuration), both under -icount
# shift=0,sleep=off, to the shell prompt; table in $(BUILD_DIR)/bench/linux-smp-boot/linux-boot.md.
bench-smp:
	@$(MAKE) --no-print-directory linux-smp-image MICROKIT_CONFIG=$(BENCH_LINUX_CONFIG)
	SMP=$(SMP_VCPUS) DD_RUNS=0 build/bench/linux-boot.sh $(BUILD_DIR)/bench/linux-smp-boot \
		$(SMP_BUILD)/$(MICROKIT_BOARD)/$(BENCH_LINUX_CONFIG)/loader.img $(LINUX_DIR) "$(LINUX_BOOTARGS)" \
		$(LINUX_DIR)/virt-smp.dtb

# `make linux-smp`: the SMP guest for a person to type into (Ctrl-A x quits).
linux-smp: check-qemu linux-smp-image
	$(QEMU) $(SMP_QEMU_ARGS) -serial mon:stdio

# The idle Linux guest's cost: QEMU's host CPU time and the VMM's exits while the shell sleeps
# IDLE_S seconds (30), against the same kernel natively (build/bench/linux-idle.sh); table in
# $(BUILD_DIR)/bench/linux-idle/linux-idle.md. Wall-clock time (no -icount): run it alone.
bench-linux-idle: check-qemu linux-image
	build/bench/linux-idle.sh $(BUILD_DIR)/bench/linux-idle \
		$(LINUX_BUILD)/$(MICROKIT_BOARD)/$(MICROKIT_CONFIG)/loader.img $(LINUX_DIR) $(LINUX_DIR)/virt-shell.dtb

# Linux boot time side by side (issue: <= 1.05x): the same kernel, initramfs, bootargs, device
# tree and RAM natively and under the VMM (release configuration by default), both under -icount
# shift=0,sleep=off, to the shell prompt (build/bench/linux-boot.sh); table in
# $(BUILD_DIR)/bench/linux-boot/linux-boot.md. First the same with `quiet` added (no boot
# messages on the console; $(BUILD_DIR)/bench/linux-boot-quiet/linux-boot.md): the difference
# between the two ratios is what the console's output costs.
bench-linux:
	@$(MAKE) --no-print-directory linux-image MICROKIT_CONFIG=$(BENCH_LINUX_CONFIG) \
		LINUX_BOOTARGS="$(LINUX_BOOTARGS) quiet"
	DD_RUNS=0 build/bench/linux-boot.sh $(BUILD_DIR)/bench/linux-boot-quiet \
		$(LINUX_BUILD)/$(MICROKIT_BOARD)/$(BENCH_LINUX_CONFIG)/loader.img $(LINUX_DIR) \
		"$(LINUX_BOOTARGS) quiet" $(LINUX_DIR)/virt-shell.dtb
	@$(MAKE) --no-print-directory linux-image MICROKIT_CONFIG=$(BENCH_LINUX_CONFIG)
	build/bench/linux-boot.sh $(BUILD_DIR)/bench/linux-boot \
		$(LINUX_BUILD)/$(MICROKIT_BOARD)/$(BENCH_LINUX_CONFIG)/loader.img $(LINUX_DIR) "$(LINUX_BOOTARGS)" \
		$(LINUX_DIR)/virt-shell.dtb
BENCH_LINUX_CONFIG ?= release

# The production system (system.xml, what a user boots), debug configuration: the VMM, its guest
# and the driver domains; no self-test PD runs (build/expect/production.txt).
test-qemu-production:
	@$(MAKE) --no-print-directory test-qemu BOOT_SYSTEM=production EXPECT=production

# The release configuration: no kernel printing; the guest's console reaches the UART only through
# the serial driver domain.
test-qemu-release:
	@$(MAKE) --no-print-directory test-qemu MICROKIT_CONFIG=release

# The deliberately broken case: a VMM built with `broken-handler` and a guest that reads the broken
# register must stop the VM with a diagnostic while the VMM PD keeps serving (it still takes a
# notification afterwards).
test-qemu-hvfault: check-sdk
	@$(MAKE) --no-print-directory test-qemu EXPECT=hvfault EXPECT_EXIT= VMM_FEATURES=broken-handler \
		GUEST_FEATURES=hvfault-probe BUILD_DIR=$(BUILD_DIR)/hvfault

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	MICROKIT_CONFIG=$(MICROKIT_CONFIG) CARGO_TARGET_DIR=$(PD_TARGET_DIR) \
		$(CARGO) clippy --release --target $(TARGET) $(addprefix -p ,$(PDS) $(TEST_PDS)) -p vmm-core -p vmm-devices -p sddf-queue -p serial-client -p testguest -- -D warnings
	# The drivers with fault injection (test-qemu-restart's build), host and target.
	$(CARGO) clippy -p serial-driver -p blk-driver --all-targets --features serial-driver/fault-injection,blk-driver/fault-injection -- -D warnings
	$(CARGO) clippy -p vmm --all-targets --no-default-features -- -D warnings
	MICROKIT_CONFIG=$(MICROKIT_CONFIG) CARGO_TARGET_DIR=target/pd-linux-exits-$(MICROKIT_CONFIG) \
		$(CARGO) clippy --release --target $(TARGET) -p vmm --no-default-features -- -D warnings
	MICROKIT_CONFIG=$(MICROKIT_CONFIG) CARGO_TARGET_DIR=target/pd-restart-$(MICROKIT_CONFIG) \
		$(CARGO) clippy --release --target $(TARGET) -p serial-driver -p blk-driver \
		--features serial-driver/fault-injection,blk-driver/fault-injection -- -D warnings

host-test:
	$(CARGO) test --workspace
	# The drivers' fault injection (off by default): host builds count the crashes they would make.
	$(CARGO) test -p serial-driver -p blk-driver --features serial-driver/fault-injection,blk-driver/fault-injection
	# The VMM's tests without its default feature console-runs.
	$(CARGO) test -p vmm --no-default-features

# Model checking of the shared-memory queue protocol with loom (its own target dir: --cfg loom
# changes every crate's build).
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release -p sddf-queue --test loom

# Every cargo-fuzz target for FUZZ_SECONDS (20 s each: 5 min for the 15 targets, plus the
# sanitizer builds), each starting from its corpus in the repository (fuzz/corpus/<target>,
# what earlier runs found); any crash fails the run, the reproducer left in fuzz/artifacts.
# `make fuzz-cmin` minimises the corpora before they are committed.
FUZZ_SECONDS ?= 20
FUZZ_DIRS    := vmm/core/fuzz vmm/devices/fuzz vmm/pd/fuzz drivers/blk-virt/fuzz drivers/net-virt/fuzz
FUZZ          = $(CARGO) +$(FUZZ_TOOLCHAIN) fuzz
fuzz:
	@$(FUZZ) --version >/dev/null 2>&1 || { echo "fuzz: needs $(FUZZ_TOOLCHAIN) and cargo-fuzz: run make setup"; exit 1; }; \
	for d in $(FUZZ_DIRS); do \
		for t in $$(cd $$d && $(FUZZ) list); do \
			mkdir -p $$d/corpus/$$t; \
			echo "fuzz: $$d $$t for $(FUZZ_SECONDS)s from $$(ls $$d/corpus/$$t | wc -l) corpus inputs"; \
			(cd $$d && $(FUZZ) run $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=20000 2>&1) | grep -E "^(Done|==|SUMMARY)|panicked|crash-" ; \
			test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz: $$t FAILED (reproducer in $$d/artifacts/$$t)"; exit 1; }; \
		done; \
	done

fuzz-cmin:
	@for d in $(FUZZ_DIRS); do for t in $$(cd $$d && $(FUZZ) list); do \
		(cd $$d && $(FUZZ) cmin $$t 2>&1 | tail -n 1) || exit 1; done; done

# Mutation testing (cargo-mutants, `cargo install cargo-mutants --locked`; .cargo/mutants.toml
# says what is left out): each crate's own tests (`cargo test -p <crate>`) against every mutant of
# its code, MUTANTS_JOBS at a time (each job builds a copy of the tree; 1 on a small machine).
# Results in $(BUILD_DIR)/mutants/<crate>/mutants.out (missed.txt: the survivors, diff/: each
# mutant), the score table in build/mutants/SCORES.md with each crate's wall time. Too slow for
# make test (see SCORES.md for the times); MUTANTS_CRATES=<crate> re-measures one crate. The two
# drivers are tested with their `fault-injection` feature, as `make host-test` also does: the
# crash plans' tests only exist with it (host builds count the crash instead of making it).
MUTANTS_JOBS   ?= 1
MUTANTS_CRATES ?= sddf-queue serial-driver blk-driver driver-monitor vmm-devices vmm-core
MUTANTS_ARGS   ?=
mutants:
	@$(CARGO) mutants --version >/dev/null 2>&1 || { echo "mutants: needs cargo-mutants: cargo install cargo-mutants --locked"; exit 1; }
	@for c in $(MUTANTS_CRATES); do \
		d=$(BUILD_DIR)/mutants/$$c; rm -rf $$d; mkdir -p $$d; start=$$(date +%s); \
		echo "mutants: $$c"; \
		case $$c in blk-driver|serial-driver) feat="--features fault-injection";; *) feat=;; esac; \
		$(CARGO) mutants -p $$c --jobs $(MUTANTS_JOBS) --output $$d $$feat $(MUTANTS_ARGS); rc=$$?; \
		echo $$(( $$(date +%s) - start )) > $$d/seconds; \
		case $$rc in 0|2|3) ;; *) echo "mutants: $$c: cargo-mutants failed (exit $$rc)"; exit 1;; esac; \
	done
	python3 build/mutants/scores.py $(BUILD_DIR)/mutants build/mutants/SCORES.md

# The runtime against the SDK's generated headers and JSON, both configurations (needs the SDK;
# plain `cargo test` lists it as ignored).
abi-parity: check-sdk
	MICROKIT_SDK=$(MICROKIT_SDK) $(CARGO) test -q -p microkit-rt --test abi_parity -- --ignored

# setup-sdk refuses a tarball whose SHA-256 does not match, and unpacks nothing: checked on a
# copy of the SDK tarball with one byte appended (and the genuine checksum beside it).
test-sdk-checksum:
	@test -f "$(MICROKIT_SDK_TARBALL)" || { echo "$@: no SDK tarball (MICROKIT_SDK_TARBALL) to check with"; exit 1; }
	@tmp=$$(mktemp -d) && cp "$(MICROKIT_SDK_TARBALL)" $$tmp/bad.tar.gz && printf x >> $$tmp/bad.tar.gz && \
	echo "$(MICROKIT_SDK_SHA256)  bad.tar.gz" > $$tmp/bad.tar.gz.sha256 && \
	if env -u MICROKIT_SDK $(MAKE) --no-print-directory -s setup-sdk MICROKIT_SDK_TARBALL=$$tmp/bad.tar.gz \
		SDK_LOCAL=$$tmp/sdk > $$tmp/out 2>&1; then \
		echo "$@: FAILED: a corrupted tarball was accepted"; cat $$tmp/out; rm -rf $$tmp; exit 1; fi; \
	if ! grep -q "REFUSED $$tmp/bad.tar.gz: SHA-256" $$tmp/out || [ -e $$tmp/sdk ] || ls -d build/.sdk-unpack.* >/dev/null 2>&1; then \
		echo "$@: FAILED: no refusal line, or something was unpacked"; cat $$tmp/out; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "$@: a tarball whose SHA-256 does not match is refused, nothing unpacked"

# `make test` is these steps in this order; .ci/run runs them one by one and times each.
HOST_STEPS := fmt-check clippy host-test loom build fuzz
TEST_STEPS := $(HOST_STEPS) test-sdk-checksum abi-parity test-guest-native test-qemu test-qemu-production test-qemu-release test-qemu-hvfault test-qemu-restart test-linux test-linux-without-console-runs test-linux-restart test-smp test-multivm test-multivm-crash test-multivm-linux
test: $(TEST_STEPS)
test-host: $(HOST_STEPS)
test-steps:
	@echo $(TEST_STEPS)

clean:
	rm -rf $(BUILD_DIR) target
