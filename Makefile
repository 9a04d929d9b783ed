# ntkbook: `make book` builds the HTML book, `make test` runs every check.
# Both create .venv first (Python 3.11 and access to PyPI are all a fresh machine needs).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PRESET ?= book
VENV := .venv
BIN := $(VENV)/bin
# Records that the install below succeeded; pip runs again when pyproject.toml or the lock is newer.
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# `make lock`: the uv release that writes the lock, and the Python and platform it is for.
UV_VERSION := 0.13.8
LOCK_PYTHON := 3.11
LOCK_PLATFORM := x86_64-manylinux_2_28
# python3.11, or python3 when that is 3.11 (requirements.lock is for 3.11; the package also
# supports 3.12).
PYTHON ?= $(shell for p in python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && \
	   $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	   echo $$p; break; fi; done)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# JAX's persistent compilation cache, shared by nbval and the book's chapter runs on this machine
# (never across machines: compiled programs depend on the CPU and the jaxlib version).
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.ntkbook/jax-cache
# Cache programs that took 0.1 s or more to compile (JAX's default of 1 s keeps too few).
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0.1

.PHONY: help venv test lint unit nbval book check-html bench clean distclean

help:
	@echo "make book     execute every chapter (PRESET=$(PRESET)) and build _build/html"
	@echo "make test     ruff, unit tests and nbval on every notebook at smoke size"
	@echo "make venv     create $(VENV): requirements.lock (book and test extras), then the package"
	@echo "make lock     regenerate requirements.lock from pyproject.toml (maintainers, see Makefile)"
	@echo "make check-html  open every page of _build/html in headless Chromium, offline"
	@echo "make bench    run the benchmarks in bench/"
	@echo "make clean    remove build outputs and executed chapters (keeps $(VENV))"
	@echo "PRESET=smoke make book   the fast book (minutes)"

venv: $(STAMP)

# The exact versions come from requirements.lock (hash-checked); the package itself is installed
# editable without dependencies, and `pip check` then fails if the lock lacks one of them.
$(STAMP): pyproject.toml $(LOCK)
	@if [ ! -x $(BIN)/python ]; then \
	  if [ -z "$(PYTHON)" ]; then \
	    echo "error: Python 3.11 is required (tried python3.11 and python3)" >&2; exit 1; \
	  fi; \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: $(VENV) is not Python 3.11; run 'make distclean' and try again" >&2; exit 1; }
	$(BIN)/python -m pip install --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

# requirements.lock pins every package of the CPU install (pyproject's dependencies and its book
# and test extras) with hashes, for CPython $(LOCK_PYTHON) on Linux x86_64. Maintainers only: run
# `make lock` after changing a dependency or a bound in pyproject.toml (tests/test_lock.py fails
# until the lock covers pyproject again), commit the new lock, and `make venv` installs it. Pins
# that still fit are kept; `make lock UPGRADE=1` moves every package to its newest release. uv
# (pinned below) resolves for the target platform, so any machine with Python 3 and PyPI will do.
.PHONY: lock
lock:
	@tools=$$(mktemp -d); trap 'rm -rf "$$tools"' EXIT; \
	python3 -m venv "$$tools"; \
	"$$tools/bin/python" -m pip install -q "uv==$(UV_VERSION)"; \
	"$$tools/bin/uv" pip compile pyproject.toml --extra book --extra test --generate-hashes \
	  --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) $(if $(UPGRADE),--upgrade) \
	  --no-header --quiet -o $(LOCK); \
	{ echo "# ntkbook's CPU install, pinned with hashes: pyproject.toml's dependencies and its book and"; \
	  echo "# test extras, for CPython $(LOCK_PYTHON) on $(LOCK_PLATFORM). Do not edit by hand."; \
	  echo "# Written by make lock with uv $(UV_VERSION): uv pip compile pyproject.toml --extra book"; \
	  echo "#   --extra test --generate-hashes --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM)"; \
	  echo "# make venv installs it with pip --require-hashes, then ntkbook with --no-deps."; \
	  cat $(LOCK); } > $(LOCK).tmp; \
	mv $(LOCK).tmp $(LOCK); \
	echo "wrote $(LOCK): $$(grep -c '==' $(LOCK)) packages"

test: lint unit nbval

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: venv
	$(BIN)/pytest tests

# nbval executes each chapter at smoke size (the values in its `parameters` cell) in this
# environment's kernel (--nbval-current-env). It runs copies under _build/nbval so that the
# figures and summary.json a chapter writes do not land beside the committed sources.
nbval: venv
	@rm -rf _build/nbval && mkdir -p _build/nbval
	@shopt -s nullglob; notebooks=(notebooks/*.ipynb); \
	if [ $${#notebooks[@]} -eq 0 ]; then echo "nbval: no notebooks/*.ipynb to check"; exit 0; fi; \
	cp "$${notebooks[@]}" _build/nbval/; \
	$(BIN)/pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 \
	  -p no:cacheprovider _build/nbval

book: venv
	$(BIN)/ntkbook build --preset $(PRESET)

# Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver).
check-html: venv
	$(BIN)/python -m ntkbook.book.browser_check _build/html

bench: venv
	@shopt -s nullglob; scripts=(bench/[!_]*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "bench: no bench/*.py"; exit 0; fi; \
	for script in "$${scripts[@]}"; do echo "== $$script"; $(BIN)/python "$$script"; done

clean:
	rm -rf _build executed .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .ntkbook
