# imagekit — the two commands of the README are `make demo` and `make test`.
# Both set up everything themselves: system packages (as root), the venv, the test disk.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := build
TEST_DISK := $(BUILD)/test-disk/disk.raw

# What the test disk, QEMU boots, emulators and benchmark peers need from Debian.
SYSTEM_PACKAGES := qemu-utils qemu-system-x86 ipxe-qemu fdisk dosfstools mtools syslinux \
	syslinux-common busybox-static dropbear-bin cpio \
	mmdebstrap grub-pc-bin grub-efi-amd64-bin ovmf e2fsprogs dnsmasq-base iproute2 \
	libguestfs-tools python3-guestfs
# Real Debian 12 guests, one per cloud's configuration (testbed/debian/build.py), for the twins.
DEBIAN_IMAGES := $(BUILD)/debian/.built
# libguestfs (the guest stage) builds its appliance from a kernel; hosts with none in /boot
# (containers) get Debian's cloud kernel unpacked here (testbed/guestfs_kernel.py).
GUESTFS_KERNEL := $(BUILD)/guestfs/kernel
export IMAGEKIT_GUESTFS_KERNEL := $(if $(wildcard /boot/vmlinuz-*),,$(abspath $(GUESTFS_KERNEL)))

.PHONY: all setup demo demo-real test test-fast lint format bench test-image debian-images \
	guestfs-kernel reliability soak soak-guests fuzz clean distclean

all: test

setup: $(VENV)/.installed

$(BUILD)/.system-packages: scripts/ensure-system-packages Makefile
	scripts/ensure-system-packages $(SYSTEM_PACKAGES)
	@mkdir -p $(BUILD) && touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(BUILD)/.system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

test-image: $(TEST_DISK)

$(TEST_DISK): $(VENV)/.installed $(wildcard testbed/testdisk/*)
	$(BIN)/python testbed/testdisk/build.py --out $(BUILD)/test-disk

debian-images: $(DEBIAN_IMAGES)

# Building them needs root (the root tree keeps its owners); without it the real-guest tests skip.
$(DEBIAN_IMAGES): $(VENV)/.installed testbed/debian/build.py
	@if [ "$$(id -u)" -eq 0 ]; then \
		$(BIN)/python testbed/debian/build.py --out $(BUILD)/debian && touch $@; \
	else echo "debian: not root: the real-guest twin tests will skip"; fi

# Azurite (Azure Blob emulator) from the npm registry, kept inside build/.
AZURITE := $(BUILD)/npm/node_modules/.bin/azurite-blob
$(AZURITE):
	@command -v npm >/dev/null || scripts/ensure-system-packages nodejs npm
	npm install --silent --no-audit --no-fund --prefix $(BUILD)/npm azurite@3

$(GUESTFS_KERNEL)/.ready: $(TEST_DISK) testbed/guestfs_kernel.py
	$(BIN)/python testbed/guestfs_kernel.py --cache $(BUILD)/cache/test-disk --out $(GUESTFS_KERNEL)

guestfs-kernel: $(if $(wildcard /boot/vmlinuz-*),,$(GUESTFS_KERNEL)/.ready)

test: $(VENV)/.installed $(TEST_DISK) $(AZURITE) $(DEBIAN_IMAGES) guestfs-kernel
	$(BIN)/python -m pytest -q

# The reliability suites (tests/reliability, also part of `make test`), and docs/reliability.md
# written from what they did; `soak` is the long version (200 kill -9 seeds an operation, more
# fuzz examples). `fuzz` runs the atheris target over every parser for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
reliability: $(VENV)/.installed $(TEST_DISK) $(AZURITE)
	$(BIN)/python scripts/reliability.py

soak: $(VENV)/.installed $(TEST_DISK) $(AZURITE)
	$(BIN)/python scripts/reliability.py --soak

fuzz: $(VENV)/.installed
	@mkdir -p $(BUILD)/fuzz/corpus
	cd $(BUILD)/fuzz && ../../$(BIN)/python ../../tests/reliability/fuzz_targets.py \
		-max_total_time=$(FUZZ_SECONDS) corpus

# Pure-core tests only: no QEMU, no emulators.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

# mypy cannot follow setuptools' package-dir mapping (providers/ → imagekit.providers), so it
# checks a tree of links laid out the way the package is imported.
TYPECHECK := $(BUILD)/typecheck/imagekit
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@rm -rf $(BUILD)/typecheck && mkdir -p $(TYPECHECK)
	@for f in imagekit/*; do ln -s "$$PWD/$$f" $(TYPECHECK)/; done
	@ln -s "$$PWD/providers" $(TYPECHECK)/providers && ln -s "$$PWD/templates" $(TYPECHECK)/templates
	cd $(BUILD)/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p imagekit

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(VENV)/.installed $(TEST_DISK)
	$(BIN)/python scripts/demo.py

# Every Debian customer AMI adapted on local and each twin (24 boots, ~25 min): root.
soak-guests: $(VENV)/.installed $(DEBIAN_IMAGES) guestfs-kernel
	IMAGEKIT_SOAK=1 $(BIN)/python -m pytest -q -s tests/guest/test_matrix.py

# The demo's flow on real Debian AMIs, rehearsed (adapted) on the GCE twin: root, ~10 min.
demo-real: $(VENV)/.installed $(DEBIAN_IMAGES) guestfs-kernel
	$(BIN)/python scripts/demo_real.py

bench: $(VENV)/.installed $(TEST_DISK)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(BUILD)/demo $(BUILD)/bench .pytest_cache .mypy_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) $(BUILD)
