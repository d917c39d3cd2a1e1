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

.PHONY: run test install install-test bench bench-quick lint clean contracts

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Easy AI Builder into $(VENV) (first time: a few minutes)…"
	$(PIP) install --quiet --disable-pip-version-check -e . $(COMPAT)
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

install: $(VENV)/.installed node_modules/.installed

install-test: $(VENV)/.installed-test node_modules/.installed

## make run: install, then train the FAQ chatbot template, serve it and print a ready curl line.
run: install
	$(AIB) quickstart

## make test: install test extras and run every test.
test: install-test node_modules/.installed
	$(PY) -m pytest

lint: install-test
	$(VENV)/bin/ruff check builder blocks runtime chain tests bench

bench: install-test
	$(PY) bench/serve.py
	$(PY) bench/orchestration.py
	$(PY) bench/settlement.py

bench-quick: install-test
	$(PY) bench/serve.py --quick
	$(PY) bench/orchestration.py --quick
	$(PY) bench/settlement.py --quick

clean:
	rm -rf $(VENV) .aib .pytest_cache
