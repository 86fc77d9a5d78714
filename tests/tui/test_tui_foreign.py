"""trainmon shows the runs other tools wrote, read-only, like trainkit's own: a live SummaryWriter's
event file (appends reach the row and the detail's charts), a real Hugging Face Trainer output
folder (steps of max_steps, best metric, the actions that need trainkit's files off with the
reason, archive moving the folder), and a TensorBoard run overlaid with a trainkit run in compare."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import TESTS_DIR, read_json
from tui_helpers import age_tree, cell, ready, until

from tui.app import Options, TrainmonApp
from tui.model.views import RunView


class LiveWriter:
    """A real ``SummaryWriter`` in another process (tests/foreign_scripts.py live) that appends N
    steps when asked and says the last step it flushed."""

    def __init__(self, out: Path, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, str(TESTS_DIR / "foreign_scripts.py"), "live", str(out)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready"

    def write(self, n: int) -> int:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        assert line.startswith("wrote "), line
        return int(line.split()[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def chart_titles(app) -> list[str]:
    return [cv.title for cv in app.screen.query("ChartView")]


def chart_points(app, title_start: str) -> list[list[tuple[float, float]]]:
    for cv in app.screen.query("ChartView"):
        if cv.title.startswith(title_start):
            return [list(s.points) for s in cv.series]
    return []


@pytest.mark.asyncio
async def test_a_live_summary_writer_is_a_running_row_whose_appends_reach_the_row_and_the_detail(tmp_path, env):
    root = tmp_path / "experiments"
    root.mkdir()
    writer = LiveWriter(root / "runs" / "sweep1", env)
    try:
        assert writer.write(20) == 19
        app = TrainmonApp(Options(str(root)))
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(pilot)
            key = str(root / "runs" / "sweep1")
            await until(pilot, lambda: key in app.model.runs, timeout=20, what="the TensorBoard run's row")
            assert cell(app, key, "name").strip() == "runs/sweep1"
            assert "running" in cell(app, key, "state")
            assert "step 19" in cell(app, key, "progress")
            assert float(cell(app, key, "loss")) == pytest.approx(1 / 20, rel=1e-3)
            assert app.model.runs[key].source == "tensorboard"

            assert writer.write(5) == 24  # appended while trainmon watches: the row follows by itself
            await until(pilot, lambda: "step 24" in cell(app, key, "progress"), timeout=20,
                        what="the appended steps in the row")
            assert float(cell(app, key, "loss")) == pytest.approx(1 / 25, rel=1e-3)
            assert list(app.model.runs[key].losses)[-1] == pytest.approx(1 / 25, rel=1e-6)

            await pilot.press("enter")  # the detail: every scalar tag as a chart
            await until(pilot, lambda: any(t.startswith("train/loss") for t in chart_titles(app)),
                        what="the detail's train/loss chart")
            [points] = chart_points(app, "train/loss")
            assert [x for x, _ in points] == [float(s) for s in range(25)]
            assert writer.write(3) == 27
            await until(pilot, lambda: len((chart_points(app, "train/loss") or [[]])[0]) == 28,
                        what="the appended steps in the detail's chart")
            head = str(app.screen.query_one("#head").render())
            assert "read-only tensorboard run" in head and "step 27" in head
    finally:
        writer.close()


@pytest.fixture(scope="module")
def hf_output(tmp_path_factory, cache_dir) -> Path:
    """A real Hugging Face Trainer output folder (20 steps, evaluation and checkpoints every 10)."""
    base = tmp_path_factory.mktemp("hf-output")
    env = dict(os.environ, TRAINKIT_CACHE_DIR=str(cache_dir), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, str(TESTS_DIR / "foreign_scripts.py"), "hf", str(base / "hf-run"), "--steps",
                        "20"], cwd=base, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return base / "hf-run"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_an_hf_output_folder_is_a_finished_row_in_steps_with_trainkits_actions_off(tmp_path, hf_output):
    pytest.importorskip("transformers")
    root = tmp_path / "experiments"
    root.mkdir()
    shutil.copytree(hf_output, root / "hf-run", symlinks=True)
    age_tree(root / "hf-run")
    state = read_json(root / "hf-run" / "checkpoint-20" / "trainer_state.json")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    app = TrainmonApp(Options(str(root)))
    notes: list[str] = []
    async with app.run_test(size=(120, 36)) as pilot:
        app.notify = lambda message, **kw: notes.append(str(message))
        await ready(pilot)
        key = str(root / "hf-run")
        await until(pilot, lambda: key in app.model.runs, timeout=20, what="the HF run's row")
        assert "finished" in cell(app, key, "state")
        assert "20/20 steps" in cell(app, key, "progress") and "100%" in cell(app, key, "progress")
        losses = [h["loss"] for h in state["log_history"] if "loss" in h]
        assert app.model.runs[key].last_loss == losses[-1]
        assert list(app.model.runs[key].losses) == losses[-16:]
        assert app.model.runs[key].best_value == state["best_metric"]
        assert "eval_loss" in cell(app, key, "best")
        for k, verb in (("x", "stop"), ("p", "pause"), ("r", "relaunch"), ("P", "promote")):
            notes.clear()
            await pilot.press(k)
            await until(pilot, lambda: notes, timeout=20, what=f"the {verb} notice")
            assert notes == [f"hf-run: {verb} is off for a Hugging Face run ("
                             f"{'its trainer reads no trainkit control file' if verb in ('stop', 'pause') else ''}"
                             f"{'trainkit does not know the command that trained it' if verb == 'relaunch' else ''}"
                             f"{'it has no trainkit config to promote' if verb == 'promote' else ''})"], notes
            assert len(app.screen_stack) == 2  # no modal: nothing to confirm
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written

        await pilot.press("a")  # archive: a folder like any other
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=20, what="the archive modal")
        await pilot.press("y")
        archived = root.parent / "experiments-archive" / "hf-run"
        await until(pilot, lambda: archived.is_dir() and key not in app.model.runs, timeout=30,
                    what="the HF folder archived")
        assert (archived / "checkpoint-20" / "trainer_state.json").is_file()

        await pilot.press("A")  # the archive shown: the HF folder is a row there, and R restores it
        await until(pilot, lambda: str(archived) in app.model.runs, timeout=20, what="the archived HF run's row")
        assert app.model.runs[str(archived)].archived and app.model.runs[str(archived)].state == "finished"
        app.screen.marked.clear()
        app.screen.marked.add(str(archived))
        await pilot.press("R")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=20, what="the restore modal")
        await pilot.press("y")
        await until(pilot, lambda: (root / "hf-run").is_dir() and key in app.model.runs, timeout=30,
                    what="the HF folder restored")
        await until(pilot, lambda: "finished" in cell(app, key, "state"), timeout=20, what="the restored row")
        assert "20/20 steps" in cell(app, key, "progress")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_compare_overlays_a_tensorboard_run_with_a_trainkit_run(real_root, env):
    root = real_root
    trained = root / "2026-01-01-base"
    steps = [orjson.loads(line) for line in (trained / "metrics.jsonl").read_bytes().splitlines()]
    steps = [r for r in steps if r.get("kind") == "step"]
    writer = LiveWriter(root / "tb-run", env)
    try:
        writer.write(30)
    finally:
        writer.close()
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        tb = str(root / "tb-run")
        await until(pilot, lambda: tb in app.model.runs, timeout=20, what="the TensorBoard run's row")
        app.screen.marked.update({str(trained), tb})
        await pilot.press("c")
        await until(pilot, lambda: chart_points(app, "loss (x: step)"), timeout=20, what="the compare's loss chart")
        series = {cv_series.label: list(cv_series.points) for cv in app.screen.query("ChartView")
                  if cv.title.startswith("loss (x: step)") for cv_series in cv.series}
        assert series["2026-01-01-base"] == [(float(r["step"]), float(r["loss"])) for r in steps]
        assert series["tb-run"] == [(float(s), pytest.approx(1 / (s + 1), rel=1e-6)) for s in range(30)]
        assert any(t.startswith("train/loss") for t in chart_titles(app))


@pytest.mark.parametrize("verb, name, source, expected", [
    ("stop", "hf-run", "hf", "hf-run: stop is off for a Hugging Face run (its trainer reads no trainkit control file)"),
    ("relaunch", "runs/a", "tensorboard", "runs/a: relaunch is off for a TensorBoard run (trainkit does not know the "
                                          "command that trained it)"),
    ("archive", "hf-run", "hf", None),
    ("restore", "tb", "tensorboard", None),
    ("archive", "pl/lightning_logs/version_0", "lightning",
     "pl/lightning_logs/version_0: archive moves folders directly under ROOT; this Lightning run is inside pl/ "
     "(archive pl with trainkit experiments archive pl)"),
    ("stop", "2026-01-01-base", "trainkit", None),
])
def test_which_actions_a_foreign_run_refuses_and_why(verb, name, source, expected):
    from tui.model.foreign import refusal

    assert refusal(verb, RunView(name, f"/r/{name}", source=source)) == expected


@pytest.mark.parametrize("path, seen", [
    ("runs/a/events.out.tfevents.1733580000.host.123.0", True),
    ("hf-run/checkpoint-10/trainer_state.json", True),
    ("pl/lightning_logs/version_0/metrics.csv", True),
    ("pl/lightning_logs/version_0/hparams.yaml", True),
    ("hf-run/checkpoint-10/model.safetensors", False),
    ("hf-run/checkpoint-10/optimizer.pt", False),
    ("pl/lightning_logs/version_0/checkpoints/epoch=2-step=48.ckpt", False),
])
def test_the_watcher_sees_foreign_runs_files_but_never_checkpoint_weights(tmp_path, path, seen):
    from watchfiles import Change

    from tui.watcher import ContractFilter

    assert ContractFilter(str(tmp_path))(Change.modified, str(tmp_path / path)) is seen


@pytest.mark.asyncio
async def test_a_tensorboard_run_reads_running_while_its_writer_lives_then_stopped_once_quiet(tmp_path, env):
    import time

    now = [time.time()]
    root = tmp_path / "experiments"
    root.mkdir()
    writer = LiveWriter(root / "tb", env)
    try:
        writer.write(10)
        app = TrainmonApp(Options(str(root), clock=lambda: now[0]))
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(pilot)
            key = str(root / "tb")
            await until(pilot, lambda: key in app.model.runs, timeout=20, what="the TensorBoard run's row")
            assert app.model.runs[key].state == "running"
            assert f"pid {writer.proc.pid} writes it" in app.model.runs[key].reason
            writer.close()
            now[0] += 600  # ten minutes later, nothing more written and its writer gone
            app.check_liveness()
            await until(pilot, lambda: "stopped" in cell(app, key, "state"), timeout=20,
                        what="the quiet run to read stopped")
            assert "no write for " in app.model.runs[key].reason
            assert "does not record a target" in app.model.runs[key].reason
    finally:
        writer.close()


@pytest.mark.parametrize("state, step, total, pace, eta", [
    ("running", 40, 100, (0.0, 10, 30.0, 40), 60.0),  # 30 steps in 30 s: 60 steps left
    ("running", 40, None, (0.0, 10, 30.0, 40), None),  # no target: no ETA
    ("running", 40, 100, None, None),  # one record only: no pace yet
    ("crashed", 40, 100, (0.0, 10, 30.0, 40), None),  # not running: no ETA
    ("running", 120, 100, (0.0, 10, 30.0, 40), 0.0),
])
def test_a_foreign_runs_eta_comes_from_its_pace_toward_a_known_target(state, step, total, pace, eta):
    from trainkit import foreign as F

    f = F.Foreign("hf", "/r/x", "x", step=step, total_steps=total, pace=pace)
    assert F.eta_s(f, state) == eta


@pytest.mark.slow
@pytest.mark.asyncio
async def test_trainmon_watches_several_roots_with_unique_names(real_root, tmp_path, env):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(real_root / "2026-01-01-base", other / "2026-01-01-base", symlinks=True)  # a name ROOT holds too
    app = TrainmonApp(Options(str(real_root), extra_roots=(str(other),)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        mine, theirs = str(real_root / "2026-01-01-base"), str(other / "2026-01-01-base")
        await until(pilot, lambda: mine in app.model.runs and theirs in app.model.runs, timeout=20,
                    what="both ROOTs' runs")
        assert app.model.runs[mine].name == "2026-01-01-base"
        assert app.model.runs[theirs].name == "other/2026-01-01-base"
        assert "finished" in cell(app, theirs, "state")
        writer = LiveWriter(other / "tb", env)  # a new run under the second ROOT: its watcher sees it
        try:
            writer.write(4)
            await until(pilot, lambda: str(other / "tb") in app.model.runs, timeout=20,
                        what="the new TensorBoard run under the second ROOT")
            assert "step 3" in cell(app, str(other / "tb"), "progress")
        finally:
            writer.close()


def test_trainmon_once_lists_several_roots(real_root, tmp_path):
    from tui.cli import main

    other = tmp_path / "other"
    shutil.copytree(real_root / "2026-01-01-base", other / "2026-01-01-base", symlinks=True)
    r = subprocess.run([sys.executable, "-m", "tui.cli", str(real_root), str(other), "--once"], capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()[1:4]]
    assert names == ["2026-01-01-base", "2026-01-02-copy", "other/2026-01-01-base"]
    assert main([str(real_root), str(tmp_path / "nope")]) == 2
