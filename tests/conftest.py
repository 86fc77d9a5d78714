"""Fixtures shared by every test (the helpers are in helpers.py, imported by name)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One thread per process: `make test` runs the files on several workers (pytest-xdist) and many
# tests start trainers of their own; torch's default (a thread per core in every process) makes
# them all fight over the same cores. Subprocesses inherit it through the environment.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def env(cache_dir) -> dict:
    e = dict(os.environ)
    e["TRAINKIT_CACHE_DIR"] = str(cache_dir)
    e["PYTHONUNBUFFERED"] = "1"
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    return e


# Fixtures that train or evaluate real models in subprocesses before their test starts: a test that
# uses one is slow (`make test-fast` leaves it out), as a test marked @pytest.mark.slow is.
TRAINING_FIXTURES = frozenset({
    "runs",  # test_lifecycle: two experiments from `trainkit run`
    "trained",  # test_reports, test_resume_locked: a trained run
    "evaluated",  # test_two_commands: a trained and evaluated experiment
    "session",  # test_readme: the README's blocks run in order (they train and evaluate)
})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if TRAINING_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
