# Every target installs what it needs into .venv first: a fresh clone needs only Python 3.11+ and git.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
TEMPLATE := reconciler/templates/biglearn-stack.json

.PHONY: demo test lint typecheck unit test-slow test-browser bench bench-quick bench-scale image clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## The whole rollout on an embedded AWS emulator (no account, no network).
demo: $(STAMP)
	$(BIN)/reconciler demo

## The default test command: lint (code, layers, the shipped template), types, and every
## test not marked slow or browser.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests
	$(BIN)/ruff format --check reconciler tests
	$(BIN)/lint-imports
	$(BIN)/cfn-lint $(TEMPLATE)

typecheck: $(STAMP)
	$(BIN)/mypy --strict reconciler

# Four workers on two cores: most tests wait on a daemon, a subprocess or the emulator's
# clock, so two per core keep both busy (docs/decisions/0012-parallel-tests.md).
unit: $(STAMP)
	$(BIN)/pytest -m "not slow and not browser" -q -n 4

## Long sweeps (crash points, scale); CI runs them as a separate step.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow -q

## The status page in headless Chromium (Debian's `chromium`; the tests skip without it).
## Screenshots land in .artifacts/browser/.
test-browser: $(STAMP)
	$(BIN)/pytest -m browser -q -rs

## Benchmark, quick: N=10, no peers (about 40 s; its test runs in `make test-slow`).
bench-quick: $(STAMP)
	$(BIN)/python -m tests.bench

## Benchmark (docs/benchmarks.md): the fleet job on plain moto behind a counting proxy, the
## daemon, `reconciler apply` and sceptre at N=50, then the daemon alone at N=1000.
bench: $(STAMP) .bench/peers/bin/sceptre
	$(BIN)/python -m tests.bench --fleet --fleet-sizes 50,1000 --json .bench/fleet.json

## Benchmark, scale: N=10,100,1000 on the embedded emulator and the peers at N=10.
bench-scale: $(STAMP) .bench/peers/bin/sceptre
	$(BIN)/python -m tests.bench --full --json .bench/bench.json

# The peers (the AWS CLI, sceptre) live in their own venv, never in the project's.
.bench/peers/bin/sceptre:
	$(PYTHON) -m venv .bench/peers
	.bench/peers/bin/pip install -q awscli sceptre

## Build the Dockerfile without Docker (buildah + a debootstrap base; root) and run the demo in it.
image:
	.ci/image

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
