"""Helpers of the trainmon tests (deadline waits, readiness, aging a folder, reading a row)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest


async def until(pilot, predicate, timeout: float = 5.0, what: str = "condition"):
    """Let the app run until ``predicate()`` holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def ready(pilot, timeout: float = 10.0) -> None:
    """The first full read is on screen and, when the app watches ROOT, its watches are in place
    (the watcher's ``WatchMode(ready=True)`` signal): a file written from now on shows by itself."""
    app = pilot.app
    await until(pilot, lambda: app.model.loaded and app.screen.query("#runs"), timeout, "the first paint")
    if app.options.watch:
        await until(pilot, lambda: app.watching, timeout, "the watcher to be up")
    await pilot.pause()


async def open_detail(pilot, key: str):
    """Enter on the run ``key`` in the workspace: its detail, once its history is read."""
    app = pilot.app
    await ready(pilot)
    app.screen.query_one("#runs").select_key(key)
    await pilot.press("enter")
    detail = await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen" and app.screen, what="detail")
    await until(pilot, lambda: detail.history is not None, what="the history")
    await pilot.pause()
    return detail


def age_tree(folder: Path, days: float = 40) -> None:
    """Set every mtime under ``folder`` back (the lifecycle treats recent changes as active)."""
    t = time.time() - days * 86400
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
    os.utime(folder, (t, t))


def row_text(app, key: str) -> str:
    from textual.widgets.data_table import RowKey

    table = app.screen.query_one("#runs")
    return " | ".join(getattr(c, "plain", str(c)) for c in table.get_row(RowKey(key)))


def cell(app, key: str, column: str) -> str:
    """One cell of a run's row by its column key (name, state, progress, spark, loss, best, why, warn...)."""
    from textual.widgets.data_table import RowKey

    table = app.screen.query_one("#runs")
    value = table.get_cell(RowKey(key), column)
    return getattr(value, "plain", str(value))


def columns(app) -> list[str]:
    return [c.key.value for c in app.screen.query_one("#runs").ordered_columns]


def in_tmux(test):
    """Mark a test that drives trainmon in a real terminal (tmux): slow (`make test-fast` leaves it
    out), and skipped with the reason where tmux is not installed."""
    test = pytest.mark.slow(test)
    return pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make system-deps)")(test)


class Tmux:
    """``trainmon`` (or any command) in a real terminal: a detached tmux session of a given size;
    keys go in with ``send-keys`` (``-l``: a literal burst, as an SSH link delivers fast typing)."""

    def __init__(self, command: str, size: tuple[int, int], env: dict | None = None) -> None:
        import subprocess
        import uuid

        self.session = f"trainmon-{uuid.uuid4().hex[:8]}"
        cols, rows = size
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(cols), "-y", str(rows), command],
                       check=True, env={**os.environ, "TERM": "xterm-256color", **(env or {})})

    def screen(self) -> str:
        import subprocess

        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True,
                              text=True).stdout

    def wait(self, predicate, what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def keys(self, *keys: str, literal: bool = False) -> None:
        import subprocess

        subprocess.run(["tmux", "send-keys", "-t", self.session, *(["-l"] if literal else []), *keys], check=True)

    def alive(self) -> bool:
        import subprocess

        return subprocess.run(["tmux", "has-session", "-t", self.session], capture_output=True).returncode == 0

    def close(self) -> None:
        import subprocess

        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


class CpuBurners:
    """``n`` processes spinning on the CPU (a loaded machine), stopped by :meth:`stop` (by pid)."""

    def __init__(self, n: int = 2) -> None:
        import subprocess
        import sys

        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
