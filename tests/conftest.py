"""Fixtures shared by every test (the helpers are in helpers.py, imported by name)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
