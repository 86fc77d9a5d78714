"""Helpers of the trainmon tests (deadline waits, aging a folder, reading a row)."""

from __future__ import annotations

import os
import time
from pathlib import Path


async def until(pilot, predicate, timeout: float = 5.0, what: str = "condition"):
    """Let the app run until ``predicate()`` holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


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

