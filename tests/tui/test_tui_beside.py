"""The loss curves beside the runs table (issue 26, section 1): at 160 columns the highlighted run's
loss chart sits beside the table and follows the cursor (debounced), the marked runs' curves
overlaid; at 120 columns it is neither shown nor read; a resize switches it off and on; a run's
appended steps reach it; a TensorBoard run's loss is drawn too. The choice of runs and the cache
of histories as tables, without an app."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from helpers import TESTS_DIR
from tui_helpers import ready, until

from tui.app import Options, TrainmonApp
from tui.demo import NOW, build_demo
from tui.model.beside import Histories, loss_points, overlaid
from tui.model.history import History

WIDE, NARROW = (160, 40), (120, 36)


# ---------------------------------------------------------------- which runs are drawn (pure)
@pytest.mark.parametrize("current, marked, order, limit, expected", [
    ("b", set(), ["a", "b", "c"], 6, ["b"]),
    ("b", {"a", "c"}, ["a", "b", "c"], 6, ["b", "a", "c"]),
    ("b", {"b", "c"}, ["a", "b", "c"], 6, ["b", "c"]),  # the highlighted run once, marked or not
    (None, {"c", "a"}, ["a", "b", "c"], 6, ["a", "c"]),  # a group's header row: the marked runs only
    ("a", {"x"}, ["a", "b"], 6, ["a"]),  # a marked run filtered out of the table is not drawn
    ("a", {"b", "c", "d"}, ["a", "b", "c", "d"], 3, ["a", "b", "c"]),
    (None, set(), [], 6, []),
])
def test_the_highlighted_run_then_the_marked_ones_in_table_order(current, marked, order, limit, expected):
    assert overlaid(current, marked, order, limit) == expected


def _demo(tmp_path):
    root = tmp_path / "experiments"
    build_demo(root)
    return root


def test_histories_keep_those_drawn_and_follow_appends(tmp_path):
    root = _demo(tmp_path)
    keys = sorted(str(p) for p in root.iterdir() if (p / "metrics.jsonl").exists())
    opened = []

    def open_(key):
        opened.append(key)
        return History.open(key)

    hs = Histories(open_, size=2)
    for k in keys[:3]:
        hs.put(k, hs.open(k), keep=[keys[0], k])
    assert keys[0] in hs and keys[2] in hs and keys[1] not in hs  # the oldest not kept went
    assert hs.missing(keys[:3]) == [keys[1]]
    before = len(loss_points(hs.get(keys[2])))
    assert not hs.follow(keys[2])  # nothing appended
    last = max(p[0] for p in loss_points(hs.get(keys[2])))
    with open(os.path.join(keys[2], "metrics.jsonl"), "ab") as f:
        f.write(orjson.dumps({"kind": "step", "step": int(last) + 1, "epoch": 0, "loss": 0.125, "t": NOW}) + b"\n")
    assert hs.follow(keys[2])
    pts = loss_points(hs.get(keys[2]))
    assert len(pts) == before + 1 and pts[-1] == (last + 1, 0.125)
    open(os.path.join(keys[2], "metrics.jsonl"), "wb").close()  # truncated: dropped, to be opened again
    assert hs.follow(keys[2]) and keys[2] not in hs


# ---------------------------------------------------------------- through the app
def _app(root, watch: bool = False) -> TrainmonApp:
    return TrainmonApp(Options(str(root), clock=lambda: NOW, watch=watch))


def _chart(app):
    return app.screen.query_one("#beside")


def _labels(app) -> list[str]:
    return [s.label for s in _chart(app).series]


@pytest.mark.asyncio
async def test_wide_the_chart_is_beside_the_table_and_follows_the_cursor(tmp_path, monkeypatch):
    import tui.screens.workspace as ws

    # The cursor rests when the debounce says so: a debounce of an hour while it passes over runs
    # (on a busy machine Pilot's presses came more than half a second apart, and a run passed over
    # was read), a hundredth of a second for the press it rests after.
    passing, resting = (lambda: monkeypatch.setattr(ws, "BESIDE_DEBOUNCE_S", 3600.0),  # noqa: E731
                        lambda: monkeypatch.setattr(ws, "BESIDE_DEBOUNCE_S", 0.01))
    resting()
    root = _demo(tmp_path)
    app = _app(root)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        screen = app.screen
        table, chart = screen.query_one("#runs"), _chart(app)
        opened = []
        real_open = screen.histories.open
        screen.histories.open = lambda key: opened.append(key) or real_open(key)
        first = table.current_key()
        await until(pilot, lambda: _labels(app) == [os.path.basename(first)], what="the first run's loss")
        assert chart.display and chart.region.width >= 40
        assert chart.region.x >= table.region.right  # beside the table, to its right
        assert chart.region.y == table.region.y
        assert chart.series[0].points == loss_points(History.open(first))
        assert chart.series[0].points  # a real curve
        opened.clear()
        passing()
        await pilot.press("down", "down")
        await pilot.pause()
        assert opened == []
        resting()
        await pilot.press("down")
        third = table.current_key()
        assert third != first
        await until(pilot, lambda: _labels(app) == [os.path.basename(third)], what="the cursor's run's loss")
        assert chart.series[0].points == loss_points(History.open(third))
        assert opened == [third]  # the runs passed over were never read
        passing()
        await pilot.press("up", "up")
        resting()
        await pilot.press("up")  # back on the first run: its history is kept, no read
        await until(pilot, lambda: _labels(app) == [os.path.basename(first)], what="the first run again")
        assert opened == [third]


@pytest.mark.asyncio
async def test_marked_runs_are_overlaid_under_their_distinguishing_names(tmp_path):
    root = _demo(tmp_path)
    app = _app(root)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        table = app.screen.query_one("#runs")
        names = [v.name for v in table.visible_views()]
        await pilot.press("space", "space")  # marks the first two runs; the cursor moves to the third
        await until(pilot, lambda: len(_labels(app)) == 3, what="three curves")
        labels = _labels(app)
        assert labels[0].endswith(names[2][-8:]) and labels[1].endswith(names[0][-8:])
        assert labels[2].endswith(names[1][-8:])
        assert all(lab.startswith("…") for lab in labels)  # the shared date prefix left out
        styles = [s.style for s in _chart(app).series]
        assert len(set(styles)) == 3
        assert "3 runs" in _chart(app).title
        await pilot.press("escape")  # marks cleared: the highlighted run alone
        await until(pilot, lambda: _labels(app) == [names[2]], what="one curve again")


@pytest.mark.asyncio
async def test_narrow_there_is_no_chart_and_nothing_is_read(tmp_path):
    root = _demo(tmp_path)
    app = _app(root)
    async with app.run_test(size=NARROW) as pilot:
        await ready(pilot)
        screen = app.screen
        opened = []
        screen.histories.open = lambda key: opened.append(key) or History.open(key)
        await pilot.press("down", "down", "space")
        await pilot.pause(0.5)
        assert not _chart(app).display and not _chart(app).series
        assert not opened and not screen.histories.missing([]) and not list(screen.workers)
        assert screen.query_one("#runs").region.width == NARROW[0]  # the table has the whole width


@pytest.mark.asyncio
async def test_resize_wide_narrow_wide(tmp_path):
    root = _demo(tmp_path)
    app = _app(root)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        table = app.screen.query_one("#runs")
        first = os.path.basename(table.current_key())
        await until(pilot, lambda: _labels(app) == [first], what="the chart")
        await pilot.resize_terminal(*NARROW)
        await until(pilot, lambda: not _chart(app).display, what="the chart hidden")
        assert not _chart(app).series and table.region.width == NARROW[0]
        await pilot.press("down")
        second = os.path.basename(table.current_key())
        await pilot.resize_terminal(*WIDE)
        await until(pilot, lambda: _chart(app).display and _labels(app) == [second], what="the chart back")
        assert table.region.width < WIDE[0]
        # resized while another screen is on view: the workspace lays out again when it returns
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="the detail")
        await pilot.resize_terminal(*NARROW)
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "WorkspaceScreen" and not _chart(app).display,
                    what="the workspace, narrow")


@pytest.mark.asyncio
async def test_a_live_runs_appended_steps_reach_the_chart(tmp_path):
    root = _demo(tmp_path)
    app = _app(root, watch=True)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        key = app.screen.query_one("#runs").current_key()
        await until(pilot, lambda: _chart(app).series, what="the chart")
        last = _chart(app).series[0].points[-1][0]
        with open(os.path.join(key, "metrics.jsonl"), "ab") as f:
            f.write(orjson.dumps({"kind": "step", "step": int(last) + 5, "epoch": 0, "loss": 0.0625, "t": NOW})
                    + b"\n")
        await until(pilot, lambda: _chart(app).series[0].points[-1] == (last + 5, 0.0625), timeout=10,
                    what="the appended step on the chart")
        # a run kept but not on view is followed too: back on it, its new steps are there, not read again
        screen = app.screen
        opened = []
        real_open = screen.histories.open
        screen.histories.open = lambda k: opened.append(k) or real_open(k)
        await pilot.press("down")
        other = screen.query_one("#runs").current_key()
        await until(pilot, lambda: _labels(app) == [os.path.basename(other)], what="the next run's loss")
        with open(os.path.join(key, "metrics.jsonl"), "ab") as f:
            f.write(orjson.dumps({"kind": "step", "step": int(last) + 9, "epoch": 0, "loss": 0.03125, "t": NOW})
                    + b"\n")
        await until(pilot, lambda: loss_points(screen.histories.get(key))[-1] == (last + 9, 0.03125), timeout=10,
                    what="the kept history followed")
        assert _labels(app) == [os.path.basename(other)]  # not drawn: it is not on view
        await pilot.press("up")
        await until(pilot, lambda: _labels(app) == [os.path.basename(key)], what="the first run again")
        assert _chart(app).series[0].points[-1] == (last + 9, 0.03125) and opened == [other]


@pytest.mark.asyncio
async def test_a_tensorboard_runs_loss_is_drawn_beside_the_table(tmp_path, env):
    root = tmp_path / "experiments"
    root.mkdir()
    r = subprocess.run([sys.executable, str(TESTS_DIR / "foreign_scripts.py"), "writer", str(root / "tb-run"),
                        "--steps", "30"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    app = _app(root)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: _labels(app) == ["tb-run"], timeout=20, what="the TensorBoard run's loss")
        pts = _chart(app).series[0].points
        assert pts == [(float(s), pytest.approx(1 / (s + 1), rel=1e-6)) for s in range(30)]


# ---------------------------------------------------------------- the picture
class FixedHost:
    """The header's host figures, fixed (the picture does not depend on the machine)."""

    def sample(self):
        from tui.model.system import GiB, GpuFigures, HostFigures

        return HostFigures(37.0, 5.14 * GiB, 15.6 * GiB, (GpuFigures(0, 86.0, 20.13 * GiB, 80 * GiB),))


def test_snapshot_wide_workspace(snap_compare):
    """160x40: the host's figures in the header, the highlighted run's loss beside the table with
    a marked run overlaid (the demo ROOT, a frozen clock)."""
    from pathlib import Path

    root = Path("/tmp/trainmon-snapshots-wide/experiments")  # a fixed path: the header shows ROOT
    build_demo(root)
    app = TrainmonApp(Options(str(root), clock=lambda: NOW, watch=False, system=FixedHost))

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("space")  # the first run marked, the cursor on the second
        await until(pilot, lambda: len(_labels(app)) == 2, what="two curves")
        await until(pilot, lambda: "CPU" in app.screen.query_one("#summary").text(), what="the host's figures")
        await pilot.pause()
    assert snap_compare(app, run_before=run_before, terminal_size=WIDE)
