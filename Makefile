# The two commands of the README: `make demo` and `make test`.
# TORCH_SPEC pins the CPU build by default; on a GPU machine use e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-tui screenshots install system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/trainkit run examples/burgers.yaml
	$(BIN)/trainkit status experiments

system-deps:
	@bash tools/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

# the suite without the slow tests (those that train real models in subprocesses)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# trainmon's tests alone (Pilot, snapshots, tmux)
test-tui: $(STAMP) system-deps
	$(BIN)/python -m pytest -q tests/tui

# screenshots/*.svg from a deterministic demo folder (the README shows them)
screenshots: $(STAMP)
	$(BIN)/python tools/make_screenshots.py --out screenshots

clean:
	rm -rf $(VENV) build *.egg-info
