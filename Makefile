# rollcall — one Makefile for set-up, tests, benchmarks and the demo. `make help` lists the targets.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test lint typecheck unit integration reliability deploy-test bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rollcall needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

venv: $(STAMP) ## create .venv and install rollcall with every extra the tests need

lint: $(STAMP) ## ruff (lint and format check), the import contracts (lint-imports) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

typecheck: $(STAMP) ## mypy only
	$(BIN)/mypy

test: lint ## set up if needed, then ruff, lint-imports, mypy and the whole pytest suite
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP) ## unit tests only
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) ## integration tests only (real broker, real SQLite)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

reliability: $(STAMP) ## kills, network cuts, full disk, damaged files, flood, power loss (~15 min; JSON last)
	$(BIN)/pytest -q -m reliability tests/reliability/test_tools.py tests/reliability/test_soak.py
	$(BIN)/python -m tests.reliability $(RELIABILITY_ARGS)

$(VENV)/.installed-deploy: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),deploy]'
	@touch $@

deploy-test: $(VENV)/.installed-deploy ## Ansible against throwaway systemd-nspawn targets (root; ~10 min, see docs/testing.md)
	$(BIN)/pytest -m deploy tests/deploy $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks with figures and ratios against a baseline (grows with each part)
	$(BIN)/rollcall bench wire
	$(BIN)/rollcall bench edge --clip street
	$(BIN)/rollcall bench edge --clip door
	$(BIN)/rollcall bench link
	$(BIN)/rollcall bench hub
	$(BIN)/rollcall bench agent
	$(BIN)/rollcall bench tui

demo: $(STAMP) ## the whole system on this machine: broker, hub, a door device replaying a door clip, the TUI
	$(BIN)/rollcall demo $(DEMO_ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
