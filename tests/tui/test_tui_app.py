"""Pilot tests over real run folders made by trainkit: live updates, warnings, every key,
actions through modals, read-only, and the plain-text output."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson
import pytest
from tui_helpers import age_tree, cell, ready, row_text, until

from trainkit.runfolder import RunPaths
from trainkit.runfolder.files import write_json
from tui.app import Options, TrainmonApp

pytestmark = pytest.mark.asyncio
SIZE = (120, 36)


def app_for(root, **kw) -> TrainmonApp:
    return TrainmonApp(Options(str(root), **kw))


def key(root, name) -> str:
    return os.path.abspath(root / name)


async def loaded(pilot):
    await ready(pilot)


async def test_live_append_and_status_rewrite_change_the_row_within_a_second(real_root):
    app = app_for(real_root)
    k = key(real_root, "2026-01-02-copy")
    paths = RunPaths(real_root / "2026-01-02-copy")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)  # the watcher is up
        before = row_text(app, k)
        status = orjson.loads(paths.status.read_bytes())
        status.update(state="running", pid=os.getpid(), heartbeat_at=time.time(), step=40, current_epoch=2,
                      loss=0.01)
        t0 = time.monotonic()
        write_json(paths.progress, {"version": 1, "completed_epochs": 2, "total_epochs": 3,
                                    "progress_percentage": 66.67, "early_stopped": False,
                                    "early_stopped_at_epoch": None, "finished": False})
        write_json(paths.status, status)
        with open(paths.metrics, "ab") as f:
            for i in range(5):
                f.write(orjson.dumps({"kind": "step", "epoch": 2, "step": 48 + i, "loss": 5.0 + i, "t": 1.0}) + b"\n")
        after = await until(pilot, lambda: "running" in row_text(app, k) and "66.7%" in row_text(app, k)
                            and row_text(app, k), timeout=1.0, what="the row to change")
        assert time.monotonic() - t0 < 1.0
        assert after != before and "2/3" in after and cell(app, k, "spark").endswith("█")  # the sparkline's new top


async def test_a_heartbeat_that_changes_nothing_shown_repaints_nothing(real_root):
    """A live run with nothing new rewrites training_status.json every few seconds (its heartbeat):
    the row is not repainted (it was, 607 bytes to the terminal each time: 121 B/s for one idle
    run, benchmarks/idle_output.py); a new loss is."""
    app = app_for(real_root)
    k = key(real_root, "2026-01-02-copy")
    paths = RunPaths(real_root / "2026-01-02-copy")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        status = orjson.loads(paths.status.read_bytes())
        status.update(state="running", pid=os.getpid(), heartbeat_at=time.time(), step=40, current_epoch=2, loss=0.01)
        write_json(paths.status, status)
        await until(pilot, lambda: "running" in row_text(app, k), timeout=2, what="the row to read running")
        table = app.screen.query_one("#runs")
        repaints: list[int] = []
        real_refresh_row = table.refresh_row

        def counted(index: int):
            repaints.append(index)
            return real_refresh_row(index)

        table.refresh_row = counted
        beat = time.time()
        write_json(paths.status, {**status, "heartbeat_at": beat})
        await until(pilot, lambda: app.model.runs[k].heartbeat_at == beat, timeout=2, what="the heartbeat read")
        await pilot.pause()
        assert repaints == []
        write_json(paths.status, {**status, "heartbeat_at": time.time(), "loss": 0.02})
        await until(pilot, lambda: "0.02" in cell(app, k, "loss"), timeout=2, what="the new loss")
        assert repaints


async def test_corrupt_status_shows_a_warning_mark_not_a_crash(real_root):
    app = app_for(real_root)
    k = key(real_root, "2026-01-01-base")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, k, "warn") == " "
        RunPaths(real_root / "2026-01-01-base").status.write_text('{"state": "runn')
        await until(pilot, lambda: cell(app, k, "warn") == "⚠", timeout=2, what="the warning mark")
        assert "finished" in row_text(app, k)  # the last good value stays


@pytest.mark.slow
async def test_every_workspace_key_and_screens(real_root):
    app = app_for(real_root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        ws = app.screen
        await pilot.press("s")
        assert ws.sort == "state"
        await pilot.press("slash", *"copy", "enter")
        table = ws.query_one("#runs")
        assert table.row_count == 1 and table.current_key() == key(real_root, "2026-01-02-copy")
        await pilot.press("slash", "escape")
        assert table.row_count == 2 and ws.filter_text == ""
        await pilot.press("G", *"task", "enter")
        assert ws.group == "task" and table.row_count == 3  # a group header row
        await pilot.press("G", "backspace", "backspace", "backspace", "backspace", "enter")
        assert ws.group is None
        await pilot.press("space")
        assert len(ws.marked) == 1
        await pilot.press("space")
        assert len(ws.marked) == 2
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "CompareScreen", what="compare")
        await until(pilot, lambda: app.screen.comparison is not None, what="the comparison")
        await pilot.press("y", "d", "escape")
        await pilot.press("escape")  # unmark
        assert not ws.marked
        await pilot.press("A")
        assert app.model.show_archived
        await pilot.press("A", "question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape", "home", "enter")
        await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="detail")
        await until(pilot, lambda: app.screen.history is not None, what="the history")
        for k in ("y", "x", "plus", "minus", "l", "l"):
            await pilot.press(k)
        await pilot.press("f", *"val", "enter")
        assert app.screen.metric_filter == "val"
        app.screen.query_one("#eval-list").move_cursor(row=[e.name for e in app.screen.evals].index("mixed"))
        await pilot.press("i")
        await until(pilot, lambda: type(app.screen).__name__ == "InspectorScreen", what="inspector")
        insp = app.screen
        assert len(insp.items.items) == 12
        await pilot.press("e")
        assert [str(i.question_id) for i in insp.shown] == ["5"]
        await pilot.press("w")
        assert [str(i.question_id) for i in insp.shown] == ["3"]
        text = insp.rendered
        await pilot.press("w")  # all items again: the cursor stays on the item it was on
        at = [str(i.question_id) for i in insp.shown].index("3")
        assert insp.query_one("#items").cursor_row == at and str(insp.current().question_id) == "3"
        await pilot.press("n", "n", "p")
        assert insp.query_one("#items").cursor_row == at + 1
        await pilot.press("escape", "escape")
        assert type(app.screen).__name__ == "WorkspaceScreen"
        assert text


async def test_inspector_shows_error_and_traceback_and_live_appends(real_root):
    app = app_for(real_root)
    run = real_root / "2026-01-01-base"
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="detail")
        await until(pilot, lambda: app.screen.evals, what="the evaluations")
        names = [e.name for e in app.screen.evals]
        table = app.screen.query_one("#eval-list")
        table.move_cursor(row=names.index("broken"))
        await pilot.press("i")
        await until(pilot, lambda: type(app.screen).__name__ == "InspectorScreen", what="inspector")
        insp = app.screen
        assert all(not i.ok for i in insp.items.items)
        shown = insp.rendered
        from rich.console import Console

        console = Console(width=100, record=True)
        console.print(shown)
        out = console.export_text()
        assert "error: ValueError: boom on item 0" in out and "Traceback" in out
        with open(run / "evals" / "broken" / "responses.jsonl", "ab") as f:
            f.write(orjson.dumps({"question_id": 99, "sample_number": 0, "status": "ok", "correct": True,
                                  "latency_s": 0.1, "attempts": 1, "error": None}) + b"\n")
        await until(pilot, lambda: len(insp.shown) == 13, timeout=2, what="the appended item")


async def test_filter_then_archive_yes_moves_and_no_leaves(real_root):
    age_tree(real_root / "2026-01-01-base")
    age_tree(real_root / "2026-01-02-copy")
    app = app_for(real_root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"copy", "enter", "a")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the modal")
        assert "2026-01-02-copy" in str(app.screen.query_one("#targets").render())
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "WorkspaceScreen", what="the modal to close")
        assert (real_root / "2026-01-02-copy").is_dir()
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the modal")
        await pilot.press("y")
        archived = real_root.parent / "experiments-archive" / "2026-01-02-copy"
        await until(pilot, archived.is_dir, timeout=10, what="the archive")
        assert not (real_root / "2026-01-02-copy").exists() and (real_root / "2026-01-01-base").is_dir()
        await until(pilot, lambda: key(real_root, "2026-01-02-copy") not in app.model.runs, what="the row to go")


async def test_live_run_is_never_archived_and_promote_refusal_shows_reason(tmp_path):
    from trainkit.testing import synthetic_run

    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-live", total=5, scores=[1.0], state="running", pid=os.getpid())
    app = app_for(root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the modal")
        text = str(app.screen.query_one("#targets").render())
        assert "a live run is never archived" in text
        await pilot.press("y")  # nothing to accept
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("escape", "P")
        await until(pilot, lambda: type(app.screen).__name__ == "PromoteScreen", what="the promote form")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the promote modal")
        text = str(app.screen.query_one("#targets").render())
        assert "refused" in text and "no evaluation report" in text
        await pilot.press("n")
    assert (root / "2026-01-01-live").is_dir() and not (root.parent / "configs").exists()


async def test_promote_shows_checks_threshold_and_holder(real_root):
    # the run's report is default.json, else the latest written: "broken" (only errors) was written
    # after "mixed"; without it, "mixed" is the report promote checks
    (real_root / "2026-01-01-base" / "reports" / "broken.json").unlink()
    age_tree(real_root / "2026-01-01-base")
    app = app_for(real_root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("home", "P")
        await until(pilot, lambda: type(app.screen).__name__ == "PromoteScreen", what="the promote form")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the promote modal")
        text = str(app.screen.query_one("#targets").render())
        assert "threshold" in text and "current holder" in text and "accuracy" in text


@pytest.mark.slow
async def test_stop_writes_the_request_and_a_real_run_stops(tmp_path, env):
    from helpers import write_config

    root = tmp_path / "experiments"
    run = root / "2026-01-01-long"
    write_config(run / "config.yaml", epochs=200, data={"n_train": 2048})
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "train", str(run / "config.yaml")], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        app = app_for(root)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: any(v.state == "running" for v in app.model.runs.values()), timeout=60,
                        what="the run to start")
            await until(pilot, lambda: app.screen.query_one("#runs").row_count == 1, what="its row")
            await pilot.press("x")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the stop modal")
            await pilot.press("y")
            await until(pilot, lambda: app.model.runs[str(run)].state == "stopped", timeout=60,
                        what="the run to stop")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def snapshot_tree(root) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root.parent):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


async def test_readonly_writes_nothing(real_root):
    from trainkit.testing import synthetic_run

    synthetic_run(real_root, "2026-01-03-live", total=5, scores=[1.0], state="running", pid=os.getpid())
    age_tree(real_root / "2026-01-02-copy")
    before = snapshot_tree(real_root)
    app = app_for(real_root, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "READ-ONLY" in str(app.screen.query_one("#summary").render())
        for _ in range(3):
            for k in ("a", "P", "x", "p", "r", "R", "y", "enter", "escape", "down", "space"):
                await pilot.press(k)
                if type(app.screen).__name__ != "WorkspaceScreen":
                    await pilot.press("escape")
        await pilot.pause()
        assert not any(type(s).__name__ == "ConfirmScreen" for s in app.screen_stack)
    after = snapshot_tree(real_root)
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    assert after == before, (changed, [k for k in before if k not in after])
