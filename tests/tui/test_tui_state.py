"""What a run is doing right now (issue 24, part 4): an evaluation running after training, a
folder trainmon cannot read, a metrics log that is not a regular file or holds a huge line,
archived runs, a run Slurm holds in its queue, and a starting run's lock seen under inotify."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, write_jsonl
from tui_helpers import Tmux, cell, ready, until

from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp

SIZE = (120, 36)
TRAINMON = Path(sys.executable).with_name("trainmon")


@pytest.mark.asyncio
async def test_a_run_being_evaluated_reads_evaluating_with_its_items(real_root, env, tmp_path):
    """After training, `trainkit eval` runs: the row read `finished`. Now `evaluating` and the items
    done of planned, live; back to finished when it ends. A report without gates says so."""
    run = real_root / "2026-01-01-base"
    gate = tmp_path / "gate"
    gate.mkdir()
    questions = write_jsonl(tmp_path / "q.jsonl", arith_questions(8))
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "eval", str(run), "--name", "slow", "--model",
                             "eval_models:gated", "--questions", str(questions)], cwd=tmp_path,
                            env=eval_env(env, EVAL_GATE_DIR=str(gate), EVAL_GATE_FROM="3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    app = TrainmonApp(Options(str(real_root)))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            key = str(run)
            seen = []

            def evaluating_3() -> bool:
                seen.append((cell(app, key, "state"), cell(app, key, "why"), app.model.runs[key].reason))
                return seen[-1][:2] == ("◆ evaluating", "slow 3/8")
            try:
                await until(pilot, evaluating_3, timeout=60, what="evaluating 3/8")
            except AssertionError:
                raise AssertionError(f"seen: {sorted(set(seen))}; the evaluation's exit code: {proc.poll()}") from None
            (gate / "3").touch()
            await until(pilot, lambda: cell(app, key, "why") == "slow 4/8", timeout=30, what="evaluating 4/8")
            for i in range(4, 8):
                (gate / str(i)).touch()
            assert proc.wait(timeout=60) in (0, 1), proc.stderr.read()
            await until(pilot, lambda: cell(app, key, "state").endswith("finished"), timeout=10, what="finished")
            await pilot.press("enter")
            detail = await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen" and app.screen,
                                 what="the detail")
            await until(pilot, lambda: any(e.name == "slow" for e in detail.evals), what="the evaluation")
            for e in detail.evals:
                text = e.text()
                if e.report is not None and e.report.get("gates_passed") is None:
                    assert "no gates" in text and "gates passed" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def _no_dac_works() -> bool:
    if shutil.which("setpriv") is None or shutil.which("tmux") is None:
        return False
    return subprocess.run([*NO_DAC, "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _no_dac_works(), reason="needs tmux and setpriv (a user without the permission to read)")
def test_a_run_folder_trainmon_cannot_read_is_a_row_with_the_reason(tmp_path):
    """A run folder this user cannot read vanished from the list. Now it is a row with ⚠ and the
    reason (trainmon in a real terminal, as a user without the right to read the folder: root
    without its DAC capabilities)."""
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-mine", total=3, scores=[1.0], state="finished")
    locked = synthetic_run(root, "2026-01-02-theirs", total=3, scores=[1.0], state="finished").root
    locked.chmod(0)
    term = Tmux(" ".join([*NO_DAC, str(TRAINMON), str(root)]), SIZE)
    try:
        screen = term.wait(lambda s: "2026-01-02-theirs" in s and "mine" in s, "both rows")
        row = next(line for line in screen.splitlines() if "2026-01-02-theirs" in line)
        assert "⚠" in row and "cannot read" in row, screen
    finally:
        term.close()
        locked.chmod(stat.S_IRWXU)


@pytest.mark.asyncio
async def test_a_metrics_log_that_cannot_be_read_is_a_warning_not_an_empty_log(tmp_path):
    """metrics.jsonl as a FIFO, and one whose last line is longer than 4 MiB, read 'no metrics
    logged yet'. Now the row has ⚠ with the reason, and so has the detail's chart."""
    root = tmp_path / "experiments"
    fifo = synthetic_run(root, "2026-01-01-fifo", total=3, scores=[1.0], state="finished")
    fifo.metrics.unlink()
    os.mkfifo(fifo.metrics)
    huge = synthetic_run(root, "2026-01-02-huge", total=3, scores=[1.0], state="finished")
    huge.metrics.write_bytes(b'{"kind": "step", "step": 0, "loss": 1.0, "t": 1.0, "x": "' + b"y" * (5 * 2 ** 20))
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for paths, why in ((fifo, "not a regular file"), (huge, "longer than 4 MiB")):
            view = app.model.runs[str(paths.root)]
            assert cell(app, str(paths.root), "warn") == "⚠" and why in " ".join(view.problems()), view.problems()
        app.screen.query_one("#runs").select_key(str(fifo.root))
        await pilot.press("enter")
        detail = await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen" and app.screen, what="detail")
        await until(pilot, lambda: detail.history is not None, what="the history")
        charts = detail.query("ChartView")
        title = str(charts.first().title) if hasattr(charts.first(), "title") else ""
        rendered = " ".join(str(c.render()) for c in charts) + title
        assert "not a regular file" in rendered and "no metrics logged yet" not in rendered


@pytest.mark.asyncio
async def test_archived_runs_look_archived_and_once_lists_them(tmp_path):
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-here", total=3, scores=[1.0, 0.5, 0.4], state="finished")
    synthetic_run(tmp_path / "experiments-archive", "2026-01-02-gone", total=3, scores=[1.0, 0.5, 0.4],
                  state="finished")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("A")
        key = str(tmp_path / "experiments-archive" / "2026-01-02-gone")
        await until(pilot, lambda: key in app.model.runs and app.screen.query_one("#runs").row_count == 2,
                    what="the archived run")
        table = app.screen.query_one("#runs")
        assert cell(app, key, "why").startswith("archived") and "dim" in str(table.get_cell(key, "name").style)
        assert "archived shown" in str(app.screen.query_one("#summary").render())
    r = subprocess.run([sys.executable, "-m", "tui.cli", "--once", "--archived", str(root)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "2026-01-01-here" in r.stdout and "archived (" in r.stdout
    assert "2026-01-02-gone" in r.stdout.split("archived (")[1]
    plain = subprocess.run([sys.executable, "-m", "tui.cli", "--once", str(root)], capture_output=True, text=True,
                           timeout=60)
    assert "2026-01-02-gone" not in plain.stdout


FAKE_SQUEUE = """#!/bin/sh
# squeue of a cluster whose only job is held in the queue; counts its calls
echo call >> "{calls}"
echo "4242|PENDING||JobHeldUser"
"""


@pytest.mark.asyncio
async def test_a_run_slurm_holds_reads_queued_as_in_trainkit_status(tmp_path, monkeypatch):
    """One Slurm view for both: the row reads `queued` with the job, as `trainkit status` does;
    squeue is asked every few seconds in a thread, never once per refresh. (Slurm is not installed
    here: an squeue on PATH prints what squeue prints for a held job.)"""
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-held", total=3, scores=[], state=None)
    write_json(paths.launch, {"version": 1, "given_up": None, "launches": [
        {"t": time.time(), "action": "launch", "slurm": {"job_id": 4242, "node": None, "submitted_at": time.time()}}]})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "squeue").write_text(FAKE_SQUEUE.format(calls=calls))
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    status = subprocess.run([sys.executable, "-m", "trainkit", "status", str(root), "--json"], capture_output=True,
                            text=True, timeout=60)
    [r] = orjson.loads(status.stdout)
    assert r["state"] == "queued"
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        key = str(paths.root)
        await until(pilot, lambda: cell(app, key, "state").endswith("queued"), timeout=10, what="queued")
        assert app.model.runs[key].short_reason() == "job 4242 pending (JobHeldUser)"
        assert cell(app, key, "why").startswith("job 4242") and r["reason"].startswith("Slurm job 4242 pending")
        before = calls.read_text().count("call")
        for i in range(40):  # 40 refreshes (a heartbeat every 50 ms) ask squeue nothing
            write_json(paths.progress, {"version": 1, "completed_epochs": 0, "total_epochs": 3 + i % 2,
                                        "progress_percentage": 0.0, "early_stopped": False,
                                        "early_stopped_at_epoch": None, "finished": False})
            await pilot.pause(0.05)
        assert calls.read_text().count("call") - before <= 1


@pytest.mark.asyncio
async def test_a_starting_runs_lock_refreshes_its_row_under_inotify(tmp_path):
    """The watcher dropped `.trainkit.lock` events (a dot-file rule came first): a run whose trainer
    took the lock but wrote nothing yet stayed `pending`."""
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-start", total=3, scores=[], state=None, progress=False)
    paths.metrics.unlink()  # a config and resolved_config.json only: never started
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    app = TrainmonApp(Options(str(root)))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            assert app.watch_mode == "inotify"
            key = str(paths.root)
            assert cell(app, key, "state").endswith("pending")
            (paths.root / ".trainkit.lock").write_bytes(orjson.dumps(
                {"pid": sleeper.pid, "host": socket.gethostname(), "purpose": "train", "started_at": time.time()}))
            await until(pilot, lambda: cell(app, key, "state").endswith("running"), timeout=3, what="starting")
            assert "locked by pid" in app.model.runs[key].reason
    finally:
        sleeper.kill()
        sleeper.wait()
