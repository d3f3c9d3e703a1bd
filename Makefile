# codeqd — every target installs what it needs first (venv, packages, redis-server).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# Arguments for the bench and soak scripts: make bench ARGS="--only d --profile"
ARGS ?=

.PHONY: install run test lint bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server via apt"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server redis-tools; }
	@# The dashboard's browser tests drive Debian's chromium (Playwright's download is not used).
	@command -v chromium >/dev/null || { \
	  echo "installing chromium via apt"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@# The line above installs a copy of client/ (codeqd-client, a dependency by path); make it
	@# editable so changes to client/codeqd_client show at once.
	$(BIN)/pip install -q --no-deps -e ./client
	@touch $(STAMP)

run: install
	$(BIN)/codeqd run $(if $(CONFIG),--config $(CONFIG),)

test: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check codeqd client tests examples
	$(BIN)/ruff format --check codeqd client tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m tests.bench.run $(ARGS)

soak: install
	$(BIN)/python -m tests.bench.soak $(ARGS)

clean:
	rm -rf $(VENV) .codeqd .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache
