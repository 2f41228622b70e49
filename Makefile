# Electrical-fire detector: firmware, protocol and host tooling.
# `make test` and `make sim` set themselves up on a fresh machine (a .venv with pinned versions).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

.PHONY: help venv test lint typecheck pytest sim bench clean mutate console

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@# Put the device filesystem's lib/ and the repo root on the venv's path: host code imports
	@# the firmware modules themselves, never a copy.
	$(PY) -c "import site,os; open(os.path.join(site.getsitepackages()[0],'efd-repo.pth'),'w').write(os.path.abspath('firmware/lib')+'\n'+os.path.abspath('.')+'\n')"
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)  ## create .venv with the pinned tools

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy on host code
	$(BIN)/mypy

# The Kaitai Struct compiler (npm; its JS build has no CLI, tools/ksc.js drives it) for the
# protocol/efd_frame.ksy check. package-lock.json pins it; the test fails if it is missing.
KSC := node_modules/kaitai-struct-compiler/kaitai-struct-compiler.js
$(KSC): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# tshark (Debian package) for the Wireshark dissector's test, tests/protocol/test_wireshark.py:
# scripts/tshark.sh installs it when run as root; elsewhere that test is skipped with the reason.
TSHARK := /usr/bin/tshark
$(TSHARK):
	-scripts/tshark.sh install

# Chromium (Debian package) for the console's browser test, tests/console/test_browser.py
# (Playwright drives it): scripts/chromium.sh installs it when run as root; elsewhere that test
# is skipped with the reason.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	-scripts/chromium.sh install

# Three pytest-xdist workers on the 2-core machines: most of the suite waits on subprocesses
# (MicroPython, the board twin in real time, gateways, brokers), so a third worker fills the
# idle time (~7 min instead of ~12 for the whole suite). PYTEST_WORKERS=0 runs it serially.
PYTEST_WORKERS ?= 3
pytest: $(STAMP) $(KSC) $(TSHARK) $(CHROMIUM)
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck pytest  ## everything CI runs

sim: $(STAMP)  ## run the demo scenario: events and plot in out/ (docs/simulator.md)
	$(PY) -m host_sim run host_sim/scenarios/demo.toml --events out/demo.jsonl --plot out/demo.png

bench: $(STAMP)  ## benchmarks: prints a table, writes bench/results.json
	$(PY) -m bench

CONSOLE_DB ?= efd-gateway.db
CONSOLE_USERS ?= console-users.json
console: $(STAMP)  ## the supervision console on 127.0.0.1:8080 (docs/console.md): make console CONSOLE_DB=efd.db
	$(PY) -m tools.console run --db $(CONSOLE_DB) --users $(CONSOLE_USERS) $(ARGS)

# Mutation testing (docs/testing.md): a benchmark of the tests, not part of `make test`. Cosmic Ray
# is pinned in requirements-mutate.txt, installed on top of the pinned venv.
MUTATE_STAMP := $(VENV)/.mutate-$(shell sha1sum requirements-mutate.txt 2>/dev/null | cut -c1-12)
$(MUTATE_STAMP): $(STAMP) requirements-mutate.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-mutate.txt
	@rm -f $(VENV)/.mutate-*
	@touch $@

mutate: $(MUTATE_STAMP)  ## mutation score of efd + protocol (~20 min on 2 cores; ARGS="--only ror.py")
	$(PY) scripts/mutate.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis node_modules

# -- firmware (docs/firmware.md) ------------------------------------------------------------------
PORT ?=
DEVICE ?=
KEY_FILE ?=
CONFIG ?=
SCENARIO ?= host_sim/scenarios/demo.toml
.PHONY: firmware virtual-device deploy provision key check-esp32 twin calibrate test-board

twin: $(STAMP)  ## the ESP32 image on the board twin: make twin SCENARIO=file.toml [ARGS="--vref-mv 1000"]
	$(PY) -m tools.twin run $(SCENARIO) $(ARGS)

firmware: $(STAMP)  ## build the ESP32 image (lib as xtensawin .mpy) into build/fw
	$(PY) -m tools.fwbuild --arch xtensawin --out build/fw

# BOARD=esp32: the ESP32 image (hal_esp32) on the board twin in real time (tools/twin/vdev.py);
# without it, the simulated HAL (tools/virtual_device.py). Both: `python -m ... --help`.
BOARD ?=
VDEV_MODULE = $(if $(BOARD),$(if $(filter esp32,$(BOARD)),tools.twin.vdev,bad),tools.virtual_device)
# Its state file (ports, pids) defaults to build/vdev-flash.state.json, where
# `python -m tools.virtual_device ctl res 400` finds it.
virtual-device: $(STAMP)  ## run the firmware on a pty (ARGS="--scenario ..."; BOARD=esp32: on the board twin)
	@test "$(VDEV_MODULE)" != bad || { echo "BOARD=$(BOARD): expected BOARD=esp32 (the board twin) or no BOARD (the simulated HAL)"; exit 2; }
	$(PY) -m $(VDEV_MODULE) $(ARGS)

deploy: $(STAMP)  ## compile + copy the firmware with mpremote, then reset: make deploy PORT=/dev/ttyUSB0 [VENDOR_PUB=vendor.key.pub]
	@test -n "$(PORT)" || { echo "usage: make deploy PORT=/dev/ttyUSB0 (or the virtual console pty)"; exit 2; }
	$(PY) -m tools.deploy $(PORT) $(if $(VENDOR_PUB),--vendor-pub $(VENDOR_PUB))

provision: $(STAMP)  ## write device id, key, config, then reset: make provision PORT=.. DEVICE=0x.. KEY_FILE=..|NEW_KEY=.. [REGISTRY=fleet.csv] [CONFIG=x.json] [WIFI=wifi.json]
	@test -n "$(PORT)" -a -n "$(DEVICE)" -a -n "$(KEY_FILE)$(NEW_KEY)" || { echo "usage: make provision PORT=.. DEVICE=0x12345678 KEY_FILE=key.hex [CONFIG=settings.json]"; echo "   or: make provision PORT=.. DEVICE=0x12345678 NEW_KEY=new-key.hex [REGISTRY=fleet.csv]  (rotate the key: SPEC.md 7.4)"; exit 2; }
	$(PY) -m tools.deploy $(PORT) --provision --device $(DEVICE) $(if $(NEW_KEY),--new-key $(NEW_KEY),--key-file $(KEY_FILE)) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(CONFIG),--config $(CONFIG)) $(if $(WIFI),--wifi $(WIFI))

key: $(STAMP)  ## a new random device key file (mode 600, never over a file): make key KEY_FILE=key.hex
	@test -n "$(KEY_FILE)" || { echo "usage: make key KEY_FILE=key.hex"; exit 2; }
	$(PY) -m tools.keys new $(KEY_FILE)

REF_MA ?= 300
REF_A ?= 10
AMBIENT_C ?=
calibrate: $(STAMP)  ## per-unit CT gains from a reference current: make calibrate PORT=<link> DEVICE=0x.. KEY_FILE=.. [REF_MA=300] [REF_A=10] [AMBIENT_C=23.5]
	@test -n "$(PORT)" -a -n "$(DEVICE)" -a -n "$(KEY_FILE)" || { echo "usage: make calibrate PORT=<link port> DEVICE=0x12345678 KEY_FILE=key.hex [REF_MA=300] [REF_A=10] [AMBIENT_C=23.5]  (python -m tools.calibrate --help)"; exit 2; }
	$(PY) -m tools.calibrate $(PORT) --device $(DEVICE) --key-file $(KEY_FILE) --ref-ma $(REF_MA) --ref-a $(REF_A) $(if $(AMBIENT_C),--ambient-c $(AMBIENT_C))

test-board: $(STAMP)  ## on-target tests (core vectors + HAL figures), pass/fail table: make test-board PORT=/dev/ttyUSB0 (or a virtual console pty)
	@test -n "$(PORT)" || { echo "usage: make test-board PORT=/dev/ttyUSB0 (the device's REPL; python -m tools.board_test --help)"; exit 2; }
	$(PY) -m tools.board_test $(PORT)

# -- signed updates (docs/firmware.md "Signed over-the-air update", docs/gateway.md) -----------------
VENDOR_KEY ?=
VERSION ?=
IMAGE ?= build/update.efu
ARCH ?= xtensawin
.PHONY: vendor-key image-sign update
vendor-key: $(STAMP)  ## a vendor signing key pair (FILE mode 600 + FILE.pub, never over a file): make vendor-key VENDOR_KEY=vendor.key
	@test -n "$(VENDOR_KEY)" || { echo "usage: make vendor-key VENDOR_KEY=vendor.key   (keep it offline; vendor.key.pub goes into the firmware)"; exit 2; }
	$(PY) -m tools.keys vendor-new $(VENDOR_KEY)

image-sign: $(STAMP)  ## build + sign an update image: make image-sign VENDOR_KEY=vendor.key VERSION=0.2.0 [IMAGE=build/update.efu] [ARCH=xtensawin|x64]
	@test -n "$(VENDOR_KEY)" -a -n "$(VERSION)" || { echo "usage: make image-sign VENDOR_KEY=vendor.key VERSION=0.2.0 [IMAGE=build/update.efu] [ARCH=xtensawin|x64] [ARGS=\"--downgrade-from 0.3.0\"]"; exit 2; }
	$(PY) -m tools.fwimage build --key $(VENDOR_KEY) --version $(VERSION) --arch $(ARCH) $(ARGS) $(IMAGE)

update: $(STAMP)  ## roll an image out in waves: make update REGISTRY=fleet.csv DEVICES=0x..,0x.. (UDP=host:port ADDR=.. | PORT=/dev/ttyUSB0) [IMAGE=..] [DB=..]
	@test -n "$(REGISTRY)" -a -n "$(DEVICES)" -a -n "$(UDP)$(PORT)" || { echo "usage: make update REGISTRY=fleet.csv DEVICES=0x12345678,0x12345679 UDP=0.0.0.0:47100 [ADDR=\"0x12345678=10.0.0.7:47000 ...\"] [IMAGE=build/update.efu] [DB=efd-gateway.db]"; echo "   or: make update REGISTRY=fleet.csv DEVICES=... PORT=/dev/ttyUSB0 (RS-485)"; exit 2; }
	$(PY) -m tools.gateway update $(IMAGE) --registry $(REGISTRY) --devices $(DEVICES) $(if $(UDP),--udp $(UDP),--serial $(PORT)) $(foreach a,$(ADDR),--addr $(a)) $(if $(DB),--db $(DB)) $(ARGS)

check-esp32: $(STAMP)  ## ESP32 HAL: mpy-cross -march=xtensawin + mypy against micropython-esp32-stubs
	$(PY) -m tools.check_esp32
