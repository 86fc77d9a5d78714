"""Every screen opens on an empty root, one run, a run with no metrics yet and an evaluation with
only error items; SVG snapshots of each screen and a modal at 120x36 and 80x24 (a frozen clock and
a deterministic demo ROOT); a tmux session at 80x24."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tui_helpers import in_tmux, ready, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.demo import NOW, build_demo

DEMO = Path("/tmp/trainmon-snapshots/experiments")  # a fixed path: the header shows ROOT


async def open_all(app, pilot, with_eval: bool):
    await ready(pilot)
    await pilot.press("question_mark")
    await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen", what="help")
    await pilot.press("escape")
    if not app.model.runs:
        await pilot.press("enter", "c", "a", "slash", "escape")
        assert type(app.screen).__name__ == "WorkspaceScreen"
        return
    await pilot.press("enter")
    await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="detail")
    await until(pilot, lambda: app.screen.history is not None, what="history")
    await pilot.press("S")
    await until(pilot, lambda: type(app.screen).__name__ == "SamplesScreen" and not app.screen.reading,
                what="samples")
    await pilot.press("escape")
    await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="detail again")
    await pilot.press("y", "x", "l", "plus", "i")
    if with_eval:
        await until(pilot, lambda: type(app.screen).__name__ == "InspectorScreen", what="inspector")
        await pilot.press("e", "w", "n", "p", "escape")
    await pilot.press("escape")
    await pilot.press("space", "c")  # one run marked: compare says to mark two
    await pilot.press("escape", "x")
    await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="modal")
    await pilot.press("n")


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["empty", "one-run", "no-metrics", "only-errors"])
async def test_every_screen_opens(tmp_path, case):
    root = tmp_path / "experiments"
    root.mkdir()
    with_eval = False
    if case == "one-run":
        synthetic_run(root, "2026-01-01-one", total=3, scores=[1.0, 0.5], state="finished")
    elif case == "no-metrics":
        paths = synthetic_run(root, "2026-01-01-fresh", total=3, scores=[], state="running")
        paths.metrics.unlink()
    elif case == "only-errors":
        paths = synthetic_run(root, "2026-01-01-eval", total=3, scores=[1.0], state="finished")
        ev = paths.eval_paths("bad")
        ev.conversations.mkdir(parents=True)
        ev.responses.write_text('{"question_id": 0, "sample_number": 0, "status": "error", "error": "boom", '
                                '"attempts": 3}\n')
        with_eval = True
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_all(app, pilot, with_eval)


def demo_app() -> TrainmonApp:
    build_demo(DEMO)
    return TrainmonApp(Options(str(DEMO), clock=lambda: NOW, watch=False))


async def at_workspace(pilot):
    await ready(pilot)


async def at_detail(pilot):
    await at_workspace(pilot)
    await pilot.press("enter")
    await until(pilot, lambda: getattr(pilot.app.screen, "history", None) is not None
                and pilot.app.screen.query("ChartView"), what="history")
    await pilot.pause()


async def at_inspector(pilot):
    await at_detail(pilot)
    await pilot.press("i")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "InspectorScreen", what="inspector")
    await pilot.press("down", "down", "down")


async def at_compare(pilot):
    await at_workspace(pilot)
    await pilot.press("space", "space", "c")
    await until(pilot, lambda: getattr(pilot.app.screen, "comparison", None) is not None, what="compare")
    await pilot.pause()


async def at_modal(pilot):
    """Stop the running run: the modal names it, Cancel has the focus (Enter alone never confirms)."""
    await at_workspace(pilot)
    await pilot.press("down", "down", "x")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen", what="modal")


async def at_help(pilot):
    await at_workspace(pilot)
    await pilot.press("question_mark")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen", what="help")


async def at_monitor(pilot):
    """The detail scrolled to the training monitor's tables (samples, alerts, layer health)."""
    await at_workspace(pilot)
    pilot.app.screen.query_one("#runs").select_key(str(DEMO / "2026-11-22-bad-lr"))  # it has alerts
    await pilot.press("enter")
    await until(pilot, lambda: getattr(pilot.app.screen, "monitor", None) is not None, what="monitor")
    await pilot.press("3")  # the samples section (the monitor's tables follow it)
    await pilot.pause()


async def at_samples(pilot):
    await at_detail(pilot)
    await pilot.press("S")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "SamplesScreen" and not pilot.app.screen.reading,
                what="samples")


SCREENS = {"workspace": at_workspace, "detail": at_detail, "inspector": at_inspector, "compare": at_compare,
           "modal": at_modal, "help": at_help, "monitor": at_monitor, "samples": at_samples}


@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_snapshot(snap_compare, screen, size):
    assert snap_compare(demo_app(), run_before=SCREENS[screen], terminal_size=size)


@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
def test_snapshot_without_colour(snap_compare, monkeypatch, size):
    """NO_COLOR=1: every state reads by its symbol, its word and bold/reverse/dim (failed, crashed
    and stopped were dark grey on near-black)."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(demo_app(), run_before=at_workspace, terminal_size=size)


@in_tmux
def test_tmux_80x24(tmp_path):
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-tmux-run", total=4, scores=[1.0, 0.5, 0.4, 0.3], state="finished")
    session = f"trainmon-{uuid.uuid4().hex[:8]}"
    exe = Path(sys.executable).with_name("trainmon")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    f"{exe} {root}"], check=True, env={**os.environ, "TERM": "xterm-256color"})

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def wait(pred, what, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = screen()
            if pred(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{screen()}")

    try:
        text = wait(lambda s: "2026-01-01-tmux-run" in s and "finished" in s, "the workspace")
        assert all(len(line) <= 80 for line in text.splitlines())
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        wait(lambda s: "Metrics" in s and "Epochs" in s or "config:" in s, "the run detail")
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        wait(lambda s: "RUN" in s and "STATE" in s, "the workspace again")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, "q did not quit"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
