"""Fixtures of trainmon's tests: real run folders made by trainkit (trained once per session and
copied per test), an app factory, and a deadline wait for Pilot tests."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest
from helpers import arith_questions, eval_env, trainkit, write_config, write_jsonl


@pytest.fixture(scope="session")
def template(tmp_path_factory, cache_dir) -> Path:
    """ROOT with one real trained run (3 epochs) holding two real evaluations: ``mixed`` (one
    error, one wrong answer) and ``broken`` (only error items). Made once for the whole session:
    under pytest-xdist the first worker makes it (the others wait on a file lock) in the folder the
    workers' temp folders share; tests use copies (``real_root``)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-of-USER/pytest-N: every worker's basetemp is inside it
    base = shared / "trainmon-template"
    with open(shared / "trainmon-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / "made").exists():
            shutil.rmtree(base, ignore_errors=True)  # a worker that failed half-way
            _make_template(base, cache_dir)
            (base / "made").touch()
    return base / "experiments"


def _make_template(base: Path, cache_dir: Path) -> None:
    root = base / "experiments"
    env = dict(os.environ, TRAINKIT_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    run = root / "2026-01-01-base"
    write_config(run / "config.yaml")
    r = trainkit("train", run / "config.yaml", cwd=base, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    questions = arith_questions(12)
    questions[3]["answer"] = "wrong on purpose"
    write_jsonl(base / "mixed.jsonl", questions)
    # (--backoff 0: the failing items are retried as usual, without the waits between the tries,
    # which made this fixture, awaited by every worker's first trainmon test, 20 s longer)
    r = trainkit("eval", run, "--name", "mixed", "--model", "eval_models:flaky", "--questions", base / "mixed.jsonl",
                 "--backoff", "0", cwd=base, env=eval_env(env, EVAL_FAIL_IDS="5"))
    assert r.returncode == 0, r.stderr[-2000:]
    r = trainkit("eval", run, "--name", "broken", "--model", "eval_models:flaky", "--questions",
                 base / "mixed.jsonl", "--backoff", "0", cwd=base,
                 env=eval_env(env, EVAL_FAIL_IDS=",".join(map(str, range(12)))))
    assert r.returncode in (0, 1), r.stderr[-2000:]


@pytest.fixture
def real_root(template, tmp_path) -> Path:
    """A fresh copy of the template ROOT with two runs (``...-base`` and ``...-copy``)."""
    root = tmp_path / "experiments"
    shutil.copytree(template, root, symlinks=True)
    shutil.copytree(root / "2026-01-01-base", root / "2026-01-02-copy", symlinks=True)
    return root
