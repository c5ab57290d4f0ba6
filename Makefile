# Every target installs what it needs into .venv first: a fresh clone needs only Python 3.11+ and git.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## The whole rollout on an embedded AWS emulator (no account, no network).
demo: $(STAMP)
	$(BIN)/reconciler demo

## The default test command: lint, types, layers, and every test not marked slow.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests
	$(BIN)/ruff format --check reconciler tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy --strict reconciler

unit: $(STAMP)
	$(BIN)/pytest -m "not slow" -q

## Long sweeps (crash points, scale); CI runs them as a separate step.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
