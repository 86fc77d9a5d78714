# The two commands of the README: `make demo` and `make test`.
# TORCH_SPEC pins the CPU build by default; on a GPU machine use e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-tui test-slurm slurm-deps screenshots install system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# three real runs in the background (one early-stops, one trains longer, one arith-chat train +
# evaluation with conversations) into experiments/, then trainmon on them (on a terminal; otherwise
# `trainmon --once` prints the table). The runs go on after trainmon quits.
demo: $(STAMP)
	$(BIN)/python tools/demo_runs.py --root experiments

system-deps:
	@bash tools/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

# the suite without the slow tests (those that train real models in subprocesses)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The Slurm tests on a one-node cluster that the tests start and stop themselves in a temp folder
# (tests/slurm_cluster.py): slurm-wlm is installed where it can be (root + apt-get); without it this
# target fails (in `make test` the same tests skip with the reason).
slurm-deps:
	@bash tools/slurm-deps.sh

test-slurm: $(STAMP) slurm-deps
	TRAINKIT_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q tests/test_slurm.py

# trainmon's tests alone (Pilot, snapshots, tmux)
test-tui: $(STAMP) system-deps
	$(BIN)/python -m pytest -q tests/tui

# screenshots/*.svg from a deterministic demo folder (the README shows them)
screenshots: $(STAMP)
	$(BIN)/python tools/make_screenshots.py --out screenshots

clean:
	rm -rf $(VENV) build *.egg-info
