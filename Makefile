# ntkbook: `make book` builds the HTML book, `make test` runs every check.
# Both create .venv first (Python 3.11 and access to PyPI are all a fresh machine needs).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PRESET ?= book
VENV := .venv
BIN := $(VENV)/bin
# Records that the install below succeeded; pip runs again only when pyproject.toml is newer.
STAMP := $(VENV)/.installed
# python3.11, or python3 when that is 3.11 (the project supports exactly 3.11).
PYTHON ?= $(shell for p in python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && \
	   $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	   echo $$p; break; fi; done)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# JAX's persistent compilation cache, shared by nbval and the book's chapter runs on this machine
# (never across machines: compiled programs depend on the CPU and the jaxlib version).
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.ntkbook/jax-cache

.PHONY: help venv test lint unit nbval book check-html bench clean distclean

help:
	@echo "make book     execute every chapter (PRESET=$(PRESET)) and build _build/html"
	@echo "make test     ruff, unit tests and nbval on every notebook at smoke size"
	@echo "make venv     create $(VENV) and install the package with its book and test extras"
	@echo "make check-html  open every page of _build/html in headless Chromium, offline"
	@echo "make bench    run the benchmarks in bench/"
	@echo "make clean    remove build outputs and executed chapters (keeps $(VENV))"
	@echo "PRESET=smoke make book   the fast book (minutes)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  if [ -z "$(PYTHON)" ]; then \
	    echo "error: Python 3.11 is required (tried python3.11 and python3)" >&2; exit 1; \
	  fi; \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: $(VENV) is not Python 3.11; run 'make distclean' and try again" >&2; exit 1; }
	$(BIN)/python -m pip install -e ".[book,test]"
	@touch $@

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
