"""trainmon over several ROOTs (issue 28): every action acts on a run under its own ROOT (archive into
that ROOT's archive and restore from it, promote beside it, relaunch with its launcher), every
ROOT's archive is shown alike, and the header names every ROOT (shortened when narrow). Real runs
made by trainkit, the real app through Pilot."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, trainkit, write_jsonl
from test_tui_actions import open_modal, promote_with
from tui_helpers import cell, ready, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp

SIZE = (120, 36)
BASE, COPY = "2026-01-01-base", "2026-01-02-copy"


def second_root(real_root: Path, tmp_path: Path) -> Path:
    """``elsewhere/other`` (beside a folder of its own: its archive and configs/ are its own) holding
    a copy of the first ROOT's BASE: the same name under two ROOTs."""
    other = tmp_path / "elsewhere" / "other"
    shutil.copytree(real_root / BASE, other / BASE, symlinks=True)
    return other


def header(app) -> str:
    return app.screen.query_one("#summary").text().splitlines()[0]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_archive_and_restore_move_each_run_within_its_own_root(real_root, tmp_path):
    """One plan over the runs of two ROOTs: each archived into its ROOT's archive, shown from there
    (named apart as the ROOTs' runs are), and restored back to its ROOT."""
    other = second_root(real_root, tmp_path)
    mine_archive, their_archive = real_root.parent / "experiments-archive", other.parent / "other-archive"
    shutil.copytree(real_root / BASE, mine_archive / BASE, symlinks=True)  # archived earlier: a name taken there
    app = TrainmonApp(Options(str(real_root), extra_roots=(str(other),)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        mine, theirs = str(real_root / COPY), str(other / BASE)
        await until(pilot, lambda: mine in app.model.runs and theirs in app.model.runs, timeout=20,
                    what="both ROOTs' runs")
        app.screen.marked.update({mine, theirs})
        text = await open_modal(pilot, "a")
        assert f"{COPY}: moves to experiments-archive/" in text, text
        assert f"other/{BASE}: moves to other-archive/" in text, text
        await pilot.press("y")
        await until(pilot, lambda: (mine_archive / COPY).is_dir() and (their_archive / BASE).is_dir()
                    and mine not in app.model.runs and theirs not in app.model.runs, timeout=30, what="both archived")
        assert (real_root / BASE).is_dir() and not (other / BASE).exists()
        meta = orjson.loads((their_archive / BASE / "metadata.json").read_bytes())
        assert "named explicitly" in meta["archive"]["reason"]

        await pilot.press("A")  # every ROOT's archive shown, its runs named apart as the ROOTs' are
        keys = [str(mine_archive / COPY), str(mine_archive / BASE), str(their_archive / BASE)]
        await until(pilot, lambda: all(k in app.model.runs for k in keys), timeout=20, what="the archived rows")
        assert [cell(app, k, "name").strip() for k in keys] == [COPY, BASE, f"other-archive/{BASE}"]
        assert all(app.model.runs[k].archived for k in keys)
        app.screen.marked.clear()
        app.screen.marked.update({keys[0], keys[2]})
        text = await open_modal(pilot, "R")
        assert f"{COPY}: moves back to experiments/" in text and f"other-archive/{BASE}: moves back to other/" in text
        await pilot.press("y")
        await until(pilot, lambda: mine in app.model.runs and theirs in app.model.runs, timeout=30,
                    what="both restored")
        assert (real_root / COPY).is_dir() and (other / BASE).is_dir() and not (their_archive / BASE).exists()
        await until(pilot, lambda: app.model.runs[theirs].name == f"other/{BASE}", what="its name under its ROOT")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_promote_and_relaunch_act_with_the_runs_own_root(real_root, tmp_path, env):
    """A run of the second ROOT is promoted into the configs/ beside that ROOT; a failed run there
    is relaunched by that ROOT's launcher (the plan says what it would do; cancelled)."""
    other = second_root(real_root, tmp_path)
    run = other / BASE
    questions = write_jsonl(tmp_path / "clean.jsonl", arith_questions(8))
    r = trainkit("eval", run, "--name", "clean", "--model", "eval_models:arith", "--questions", questions,
                 cwd=other.parent, env=eval_env(env))
    assert r.returncode == 0, r.stderr[-2000:]
    synthetic_run(other, "2026-01-03-dead", total=10, scores=[1.0], state="failed")
    app = TrainmonApp(Options(str(real_root), extra_roots=(str(other),)))
    notes: list[str] = []
    app.notify = lambda message, **kw: notes.append(str(message))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: str(run) in app.model.runs and str(other / "2026-01-03-dead") in app.model.runs,
                    timeout=20, what="the second ROOT's runs")
        app.screen.query_one("#runs").select_key(str(run))
        text = await promote_with(pilot, report="clean", threshold="0.5")
        assert f"other/{BASE}: accuracy " in text and "-> configs/train_base.yaml" in text, text
        await pilot.press("y")
        promoted = other.parent / "configs" / "train_base.yaml"
        await until(pilot, lambda: promoted.is_file() and promoted.read_bytes() == (run / "config.yaml").read_bytes(),
                    timeout=20, what=f"the promotion beside the second ROOT (notes: {notes})")
        assert not (real_root.parent / "configs").exists()
        assert orjson.loads((run / "metadata.json").read_bytes())["promoted_to"]

        app.screen.query_one("#runs").select_key(str(other / "2026-01-03-dead"))
        text = await open_modal(pilot, "r")
        assert "2026-01-03-dead: resumes in the background (failed: training failed)" in text, text
        await pilot.press("n")
        await until(pilot, lambda: any("cancelled, nothing written" in n for n in notes), what="the cancel")


@pytest.mark.asyncio
async def test_the_header_names_every_root_and_shortens_them_when_narrow(real_root, tmp_path):
    other = second_root(real_root, tmp_path)
    app = TrainmonApp(Options(str(real_root), extra_roots=(str(other),), watch=False))
    async with app.run_test(size=(240, 30)) as pilot:
        await ready(pilot)
        assert header(app).startswith(f"trainmon {real_root}, {other}  ·  static"), header(app)
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: header(app).startswith("trainmon experiments, other  ·  static"),
                    what=f"the ROOTs by their folders' names (header: {header(app)!r})")
        await pilot.resize_terminal(240, 30)
        await until(pilot, lambda: header(app).startswith(f"trainmon {real_root}, {other}"), what="the full ROOTs")


@pytest.mark.parametrize("roots, room, expected", [
    (["/data/exp"], 3, "/data/exp"),  # one ROOT: as it is (the line's end gives way)
    (["/data/exp", "/mnt/hf-out"], None, "/data/exp, /mnt/hf-out"),
    (["/data/exp", "/mnt/hf-out"], 22, "/data/exp, /mnt/hf-out"),
    (["/data/exp", "/mnt/hf-out"], 21, "/data/exp, hf-out"),
    (["/data/exp", "/mnt/hf-out"], 16, "exp, hf-out"),
    (["/data/exp", "/mnt/hf-out", "/mnt/pl/"], 12, "exp +2 more"),
    (["/data/exp", "/mnt/hf-out", "/mnt/pl/"], 0, "exp +2 more"),
])
def test_the_roots_as_the_header_names_them_in_the_room_it_has(roots, room, expected):
    from tui.widgets.summary import roots_text

    assert roots_text(roots, room) == expected


def test_once_with_archived_lists_every_roots_archive(real_root, tmp_path, capsys):
    from tui.cli import print_once

    other = second_root(real_root, tmp_path)
    shutil.copytree(real_root / BASE, real_root.parent / "experiments-archive" / BASE, symlinks=True)
    shutil.copytree(real_root / BASE, other.parent / "other-archive" / BASE, symlinks=True)
    print_once([str(real_root), str(other)], archived=True)
    archived = capsys.readouterr().out.split("\narchived (")[1]
    title, table = archived.split("\n", 1)
    assert title == f"{real_root}-archive, {other}-archive):"
    assert [line.split()[0] for line in table.splitlines()[1:3]] == [BASE, f"other-archive/{BASE}"]


def test_a_foreign_run_of_a_later_root_named_apart_moves_as_a_folder_of_that_root():
    """Its name carries its ROOT's name (``other/hf-run``); it lies directly under its ROOT all the same."""
    from tui.model.foreign import refusal
    from tui.model.views import RunView

    assert refusal("archive", RunView("other/hf-run", "/data/other/hf-run", source="hf"), base="/data/other") is None
    nested = RunView("other/pl/lightning_logs/version_0", "/data/other/pl/lightning_logs/version_0", source="lightning")
    assert refusal("restore", nested, base="/data/other") == (
        "other/pl/lightning_logs/version_0: restore moves folders directly under ROOT; this Lightning run is inside "
        "pl/ (restore pl with trainkit experiments restore pl)")
    assert refusal("archive", nested, base="/data/other", root="/data/my other").endswith(
        "(archive pl with trainkit experiments archive pl --root '/data/my other')")  # the command names its ROOT


def test_per_root_plans_each_roots_runs_with_that_root_and_joins_them():
    """Lines ROOT after ROOT, one title for all, each ROOT's part done in turn; a ROOT whose part
    fails leaves the others' done and says so."""
    from tui.actions import ActionPlan, TargetLine, per_root
    from tui.model.views import RunView

    done: list[str] = []

    def plan_one(root: str, views: list[RunView]) -> ActionPlan:
        plan = ActionPlan("archive", f"Archive {len(views)}",
                          [TargetLine(v.name, f"under {root}", True) for v in views])

        def run(report) -> list[str]:
            if root == "/b":
                raise OSError("disk full")
            done.extend(v.name for v in views)
            return [f"archived {v.name}" for v in views]
        plan.execute = run
        return plan

    views = [RunView("x", "/a/x"), RunView("b/x", "/b/x"), RunView("y", "/a-archive/y")]
    home = {"/a/x": "/a", "/b/x": "/b", "/a-archive/y": "/a"}
    plan = per_root(plan_one, views, home.get)
    assert plan.title == "Archive 3 runs" and plan.verb == "archive"
    assert [(t.name, t.what) for t in plan.lines] == [("x", "under /a"), ("y", "under /a"), ("b/x", "under /b")]
    assert plan.execute(lambda msg: None) == ["archived x", "archived y", "archive under /b not done: disk full"]
    assert done == ["x", "y"]
    assert per_root(plan_one, views[:1], home.get).title == "Archive 1"  # one ROOT: its own plan


@pytest.mark.asyncio
async def test_compare_reads_each_run_in_its_own_root(tmp_path):
    """Two runs of one name under two ROOTs: compare reads each one's own config and figures (it read
    the first ROOT's folder of that name for both)."""
    from tui.screens.compare import CompareScreen

    first, second = tmp_path / "experiments", tmp_path / "elsewhere" / "other"
    mine = synthetic_run(first, "2026-01-01-a", total=3, scores=[0.9, 0.5, 0.4], state="finished").root
    theirs = synthetic_run(second, "2026-01-01-a", total=3, scores=[0.8, 0.7, 0.6], state="finished").root
    resolved = theirs / "resolved_config.json"
    cfg = orjson.loads(resolved.read_bytes())
    resolved.write_bytes(orjson.dumps({**cfg, "lr": 0.5}))
    app = TrainmonApp(Options(str(first), extra_roots=(str(second),), watch=False))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.screen.marked.update({str(mine), str(theirs)})
        await pilot.press("c")
        cmp = await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
                          and app.screen, what="compare")
        assert [e.path for e in cmp.comparison.experiments] == [Path(k) for k in cmp.keys]
        assert sorted(cmp.keys) == sorted([str(mine), str(theirs)])
        assert "lr" in cmp.comparison.differing
        by_path = {str(e.path): e.config.get("lr") for e in cmp.comparison.experiments}
        assert by_path[str(theirs)] == 0.5 and by_path[str(mine)] == cfg.get("lr")
