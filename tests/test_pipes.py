"""A reader that leaves early (``trainkit status | head``, ``trainmon --once | head -1``): the command
ends quietly with exit 0, no traceback, no "Exception ignored" at exit."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory):
    """1,500 pending runs: every table is far larger than a pipe's buffer."""
    root = tmp_path_factory.mktemp("pipes") / "experiments"
    for i in range(1500):
        run = root / f"2026-01-01-run-{i:04d}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("task: burgers\nepochs: 3\n")
    return root


COMMANDS = {
    "trainkit status": [sys.executable, "-m", "trainkit", "status"],
    "trainkit status --json": [sys.executable, "-m", "trainkit", "status", "--json"],
    "trainmon --once": [sys.executable, "-m", "tui.cli", "--once"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_reader_that_leaves_after_one_line_ends_the_command_quietly(many_runs, command):
    for _ in range(3):  # the reader leaves at a different moment of the writing each time
        proc = subprocess.Popen([*COMMANDS[command], str(many_runs)], cwd=many_runs.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err.decode()
        assert first and err == b"", err.decode()
