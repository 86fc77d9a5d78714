# The two commands of the README: `make demo` and `make test`.
# TORCH_SPEC pins the CPU build by default; on a GPU machine use e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# the stamp names the torch build: `make demo TORCH_SPEC=...cu126` after a CPU install reinstalls torch
STAMP := $(VENV)/.installed-$(shell printf '%s' '$(TORCH_SPEC)' | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help demo test test-fast test-tui test-slurm slurm-deps screenshots install system-deps lint clean

help:  ## this list
	@echo "make targets (the README's two commands: make demo, make test):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)  ## the virtualenv .venv with torch (TORCH_SPEC) and the project (editable, dev extras)

# three real runs in the background (one early-stops, one trains longer, one arith-chat train +
# evaluation with conversations that reaches 99-100 % and passes its gate) into experiments/, then
# trainmon on them (on a terminal; otherwise `trainmon --once` prints the table), then the next
# commands to try. The runs go on after trainmon quits: `.venv/bin/trainkit stop --all` stops them.
demo: $(STAMP)  ## three real runs into experiments/, then trainmon (they go on after it quits: trainkit stop --all)
	$(BIN)/python tools/demo_runs.py --root experiments

system-deps:  ## AS ROOT installs chromium and tmux with apt-get for the tests that drive them (else they skip)
	@bash tools/system-deps.sh

lint: $(STAMP)  ## ruff over the tree (make test runs it first)
	$(BIN)/ruff check trainkit tui tests benchmarks tools examples

# as root on a Debian-like machine, `make test` first installs chromium and tmux with apt-get
# (system-deps); otherwise the tests that need them skip with the reason
# The files run on 3 workers (pytest-xdist; a file's tests stay together on one worker, so a
# module's trained fixture is made once); PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: $(STAMP) system-deps lint  ## lint + the whole suite, as CI runs it (as root: apt-get installs chromium, tmux)
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)

# the suite without the slow tests (marked slow: they train real models, drive tmux or a browser)
test-fast: $(STAMP)  ## the suite without the slow tests (no training in subprocesses, no tmux, no browser)
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not slow"

# The Slurm tests on a one-node cluster that the tests start and stop themselves in a temp folder
# (tests/slurm_cluster.py): slurm-wlm is installed where it can be (root + apt-get); without it this
# target fails (in `make test` the same tests skip with the reason).
slurm-deps:
	@bash tools/slurm-deps.sh

test-slurm: $(STAMP) slurm-deps  ## the Slurm tests on a one-node cluster they start themselves (installs slurm-wlm as root)
	TRAINKIT_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q tests/test_slurm.py

# trainmon's tests alone (Pilot, snapshots, tmux)
test-tui: $(STAMP) system-deps  ## trainmon's tests alone (Pilot, snapshots, tmux)
	$(BIN)/python -m pytest -q tests/tui

# screenshots/*.svg from real runs that trainkit trains and evaluates in a temp folder (the README shows them)
screenshots: $(STAMP)  ## screenshots/*.svg for the README, from real runs (about a minute)
	$(BIN)/python tools/make_screenshots.py --out screenshots

clean:  ## remove the virtualenv and build outputs
	rm -rf $(VENV) build *.egg-info
