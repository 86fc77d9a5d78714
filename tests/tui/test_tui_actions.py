"""Every action possible from the keyboard (issue 24, part 3), on real runs made by trainkit:
archiving a just-finished run (classification and reason in the modal), promoting with the CLI's
options (a refusal names the failing check and its value; force backs the old config up), and
restarting a stopped run while a paused one's ETA stands still."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, trainkit, wait_for, write_config, write_jsonl
from tui_helpers import cell, ready, until

from trainkit.runfolder.lock import pid_alive
from tui.app import Options, TrainmonApp

pytestmark = pytest.mark.asyncio
SIZE = (120, 36)


def modal_text(app) -> str:
    return str(app.screen.query_one("#targets").render())


async def open_modal(pilot, key: str) -> str:
    await pilot.press(key)
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen", timeout=20, what="the modal")
    return modal_text(pilot.app)


@pytest.mark.slow
async def test_a_just_finished_run_is_archived_from_trainmon_with_its_class_and_reason(real_root):
    """Trained a minute ago: the 7-day rule called it active and trainmon refused it, always. Named
    with `a` it is archived whenever it is not live; the modal says how it is classified and why."""
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.screen.query_one("#runs").select_key(str(real_root / "2026-01-02-copy"))
        text = await open_modal(pilot, "a")
        assert "moves to experiments-archive/" in text and "classified " in text, text
        assert "named explicitly and not live" in text and "changed " in text
        await pilot.press("y")
        archived = real_root.parent / "experiments-archive" / "2026-01-02-copy"
        await until(pilot, archived.is_dir, timeout=20, what="the archive")
    meta = orjson.loads((archived / "metadata.json").read_bytes())
    assert "named explicitly" in meta["archive"]["reason"]
    assert (real_root / "2026-01-01-base").is_dir()


async def promote_with(pilot, **fields) -> str:
    """P, fill the form's fields (ids as the PromoteRequest options), Enter: the confirmation's text."""
    app = pilot.app
    await pilot.press("P")
    form = await until(pilot, lambda: type(app.screen).__name__ == "PromoteScreen" and app.screen, what="the form")
    for key, value in fields.items():
        if key == "force":
            await pilot.click("#force")
            continue
        form.query_one(f"#{key}").value = value
    await pilot.press("enter")
    await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=20, what="the checks")
    return modal_text(app)


async def test_promote_with_the_clis_options_from_trainmon(real_root, env):
    """A refusal names the failing check with its value, in the form's words (never "pass --force"
    where no flag can be passed); with force, the existing production config is backed up first."""
    run = real_root / "2026-01-01-base"
    configs = real_root.parent / "configs"
    questions = write_jsonl(real_root.parent / "clean.jsonl", arith_questions(8))
    r = trainkit("eval", run, "--name", "clean", "--model", "eval_models:arith", "--questions", questions,
                 cwd=real_root.parent, env=eval_env(env))
    assert r.returncode == 0, r.stderr[-2000:]
    app = TrainmonApp(Options(str(real_root)))
    notes: list[str] = []
    app.notify = lambda message, **kw: notes.append(str(message))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.screen.query_one("#runs").select_key(str(run))
        text = await promote_with(pilot, report="mixed", threshold="0.5")
        assert "gates: report reports/mixed.json: no gates, and accuracy was measured over 11 of 12 items" in text
        await pilot.press("n")
        text = await promote_with(pilot, report="clean", threshold="1.5")
        assert "refused" in text and "threshold: accuracy 1 is under the threshold 1.5" in text, text
        assert "pass --" not in text
        await pilot.press("n")
        configs.mkdir()
        (configs / "train_base.yaml").write_text("# somebody's production config\n")
        text = await promote_with(pilot, report="clean", threshold="0.5")
        assert "target: configs/train_base.yaml exists" in text and "choose 'force' in the promote form" in text
        assert "pass --force" not in text
        await pilot.press("n")
        text = await promote_with(pilot, report="clean", threshold="0.5", force=True)
        assert "backed up to train_base.yaml." in text and "-> configs/train_base.yaml" in text, text
        await pilot.press("y")
        await until(pilot, lambda: (configs / "train_base.yaml").read_bytes() == (run / "config.yaml").read_bytes(),
                    timeout=20, what=f"the promotion (notes: {notes})")
    backups = [p for p in configs.iterdir() if p.name.startswith("train_base.yaml.") and p.name.endswith(".bak")]
    assert len(backups) == 1 and backups[0].read_text() == "# somebody's production config\n"


def status_of(run: Path) -> dict:
    return orjson.loads((run / "training_status.json").read_bytes())


@pytest.mark.slow
async def test_a_stopped_run_restarts_and_a_paused_runs_eta_stands_still(tmp_path, env, monkeypatch):
    """`r` accepts a stopped run (it was failed/crashed only): it resumes from its checkpoint. Paused,
    its ETA does not count down; stopped again, the process ends."""
    root = tmp_path / "experiments"
    run = root / "2026-01-01-long"
    write_config(run / "config.yaml", epochs=200, data={"n_train": 2048})
    first = subprocess.Popen([sys.executable, "-m", "trainkit", "train", str(run / "config.yaml")], cwd=tmp_path,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = [first.pid]
    monkeypatch.setenv("TRAINKIT_CACHE_DIR", env["TRAINKIT_CACHE_DIR"])  # the restarted trainer inherits it
    try:
        wait_for(lambda: (run / "training_status.json").exists() and status_of(run).get("state") == "running",
                 timeout=120, what="the run to start")
        r = trainkit("stop", run, "--wait", cwd=tmp_path, env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert first.wait(timeout=60) == 0
        app = TrainmonApp(Options(str(root)))
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            key = str(run)
            await until(pilot, lambda: app.model.runs[key].state == "stopped", what="stopped")
            text = await open_modal(pilot, "r")
            assert "resumes in the background from its checkpoint" in text, text
            await pilot.press("y")
            await until(pilot, lambda: app.model.runs[key].state == "running" and status_of(run)["pid"] != first.pid,
                        timeout=120, what="the restarted run")
            pids.append(status_of(run)["pid"])
            await open_modal(pilot, "p")
            await pilot.press("y")
            await until(pilot, lambda: app.model.runs[key].state == "paused", timeout=60, what="paused")
            why = cell(app, key, "why")
            await pilot.pause(2.5)  # a paused run's figures must not move while it waits
            assert cell(app, key, "why") == why and ":" not in why.replace("paused on request", ""), why
            await pilot.press("enter")
            detail = await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen" and app.screen,
                                 what="detail")
            head = str(detail.query_one("#head").render())
            assert "ETA paused" in head, head
            await pilot.pause(1.5)
            assert str(detail.query_one("#head").render()).split("heartbeat")[0] == head.split("heartbeat")[0]
            await pilot.press("escape")
            await open_modal(pilot, "x")
            await pilot.press("y")
            await until(pilot, lambda: app.model.runs[key].state == "stopped", timeout=120, what="stopped again")
        wait_for(lambda: not pid_alive(pids[-1], None), timeout=60, what="the restarted trainer to exit")
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        if first.poll() is None:
            first.kill()
            first.wait()
