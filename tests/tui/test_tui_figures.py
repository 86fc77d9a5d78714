"""Every figure trainmon's screens show is the files' truth while the files change under the open
screen (Pilot over real run folders and real `trainkit eval` processes): items replaced by
`--retry-errors`, an evaluation killed midway, samples without a pattern, the wall-time axis, the
evaluations list's cursor, numbers by the one formatter, and the DDP rank of the system samples."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, write_jsonl
from rich.console import Console
from textual.widgets.data_table import RowKey
from tui_helpers import ready, until

from trainkit.formatting import fmt_progress, fmt_sig
from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.screens.inspector import latency_text
from tui.widgets.chart import Chart

pytestmark = pytest.mark.asyncio
SIZE = (120, 36)


def text_of(renderable, width: int = 110) -> str:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def cells(table) -> list[list[str]]:
    return [[getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def open_detail(app, pilot, run_key: str):
    await ready(pilot)  # painted, and the watcher is up
    app.screen.query_one("#runs").select_key(run_key)
    await pilot.press("enter")
    await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="the detail")
    await until(pilot, lambda: app.screen.history is not None, what="the history")
    return app.screen


def eval_rows(detail) -> dict[str, str]:
    return {row[0]: row[1] for row in cells(detail.query_one("#eval-list"))}


def start_eval(run: Path, name: str, questions: Path, model: str, env: dict, *extra: str, **env_extra: str):
    return subprocess.Popen([sys.executable, "-m", "trainkit", "eval", str(run), "--name", name, "--model", model,
                             "--questions", str(questions), *extra], cwd=run.parent,
                            env=eval_env(env, **env_extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


# ------------------------------------------------------------------ E15 (a): items replaced in place

async def test_retry_errors_redraws_replaced_items_and_the_open_conversation(real_root, template, env):
    """`trainkit eval RUN --retry-errors` rewrites all 12 error items of ``broken`` while the
    inspector is open on it: every row, the header and the right pane show the new records only."""
    run = real_root / "2026-01-01-base"
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        detail.query_one("#eval-list").move_cursor(row=[e.name for e in detail.evals].index("broken"))
        await pilot.press("i")
        insp = await until(pilot, lambda: type(app.screen).__name__ == "InspectorScreen" and app.screen,
                           what="the inspector")
        assert "12 items, 12 error(s), 0 wrong" in str(insp.query_one("#ihead").render())
        assert "error: ValueError: boom on item 0" in text_of(insp.rendered)
        proc = start_eval(run, "broken", template.parent / "mixed.jsonl", "eval_models:flaky", env,
                          "--retry-errors", EVAL_FAIL_IDS="")
        try:
            rc = proc.wait(timeout=120)
            err = proc.stderr.read().decode(errors="replace")
        finally:
            proc.stderr.close()
        assert rc in (0, 1) and "Traceback" not in err, err[-2000:]  # 1: a gate failed on the wrong answer
        head = await until(pilot, lambda: "0 error(s), 1 wrong" in str(insp.query_one("#ihead").render())
                           and str(insp.query_one("#ihead").render()), timeout=5, what="the new header")
        assert "12 items" in head
        lines = {(str(r["question_id"]), r["sample_number"]): r
                 for r in map(orjson.loads, (run / "evals" / "broken" / "responses.jsonl").read_bytes().splitlines())}
        rows = await until(pilot, lambda: (rs := cells(insp.query_one("#items")))
                           and all(r[2] == "ok" for r in rs) and rs, timeout=5, what="every row redrawn")
        for row in rows:  # id, sample, status, result, latency, tries: the latest line's
            rec = lines[(row[0], int(row[1]))]
            assert row[3] == ("correct" if rec["correct"] else "wrong") and row[5] == str(rec["attempts"])
            assert row[4] == latency_text(rec["latency_s"]) and len(row[4]) <= 8  # in its column, never cut
        pane = text_of(insp.rendered)
        first = lines[("0", 0)]
        assert "question 0  sample 0  correct" in pane and "error" not in pane.lower()
        assert f"latency {fmt_sig(first['latency_s'], 3)} s" in pane
        await pilot.press("e")  # errors only: none is left
        assert insp.shown == [] and "no item matches" in text_of(insp.rendered)
        await pilot.press("e", "down", "down", "down")
        pane = text_of(insp.rendered)
        assert "question 3  sample 0  wrong" in pane and "wrong on purpose" in pane and "error" not in pane.lower()


async def test_the_pane_shows_the_newer_of_the_line_and_the_conversation_file(real_root):
    """The conversation file is written just before its line: for that moment the file is the newer
    record, and the pane shows it whole (status, latency, error), never the old line's fields."""
    run = real_root / "2026-01-01-base"
    ev = run / "evals" / "broken"
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        detail.query_one("#eval-list").move_cursor(row=[e.name for e in detail.evals].index("broken"))
        await pilot.press("i")
        insp = await until(pilot, lambda: type(app.screen).__name__ == "InspectorScreen" and app.screen,
                           what="the inspector")
        conv = ev / "conversations" / "q0_s0.json"
        rec = orjson.loads(conv.read_bytes())
        write_json(conv, {**rec, "status": "ok", "error": None, "errors": [], "traceback": None, "response": "0",
                          "correct": True, "latency_s": 0.25, "attempts": 1, "t": rec["t"] + 60,
                          "messages": [{"role": "user", "content": "0+0"}, {"role": "assistant", "content": "0"}]})
        insp.show_current()
        pane = text_of(insp.rendered)
        assert "question 0  sample 0  correct" in pane and "latency 0.25 s  attempts 1" in pane
        assert "boom" not in pane and "error" not in pane.lower()
        write_json(conv, {**rec, "t": rec["t"] - 60, "messages": [{"role": "user", "content": "stale words"}]})
        insp.show_current()  # now the file is older than the line: only the line is shown
        pane = text_of(insp.rendered)
        assert "stale words" not in pane and "earlier attempt" in pane and "error: ValueError: boom" in pane


# ------------------------------------------------------------------ E15 (b) and (e): an evaluation written and killed

def questions_60(path: Path) -> Path:
    rows = arith_questions(60)
    for i in (5, 9):  # the model cannot parse these: error items
        rows[i]["question"] = "x+y"
    return write_jsonl(path, rows)


async def test_an_evaluation_killed_midway_reads_interrupted_with_its_counts(real_root, env, tmp_path):
    run = real_root / "2026-01-01-base"
    gates = tmp_path / "gates"
    gates.mkdir()
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        proc = start_eval(run, "killed", questions_60(tmp_path / "q60.jsonl"), "eval_models:gated", env,
                          "--retries", "0", EVAL_GATE_DIR=str(gates), EVAL_GATE_FROM="27")
        try:
            row = await until(pilot, lambda: "27/60 done" in eval_rows(detail).get("killed", "")
                              and eval_rows(detail)["killed"], timeout=60, what="27 items written")
            assert row.startswith(f"running (pid {proc.pid})") and "ok 25, error 2" in row, row
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        assert not (run / "evals" / "killed" / "test_summary.json").exists()
        row = await until(pilot, lambda: eval_rows(detail)["killed"].startswith("interrupted")
                          and eval_rows(detail)["killed"], timeout=10, what="the row to say interrupted")
        assert row.startswith("interrupted (no summary), incomplete: 27/60 done, ok 25, error 2"), row
        assert "accuracy 1" in row  # over the 25 ok items, as `trainkit score` computes it
        assert "running" not in row


async def test_the_evaluations_cursor_stays_on_its_evaluation_while_another_is_written(real_root, env, tmp_path):
    run = real_root / "2026-01-01-base"
    gates = tmp_path / "gates"
    gates.mkdir()
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        table = detail.query_one("#eval-list")
        table.move_cursor(row=[e.name for e in detail.evals].index("mixed"))
        await pilot.pause()
        # "a-live" sorts first: its rows appear above the cursor, then change as its items are written
        proc = start_eval(run, "a-live", questions_60(tmp_path / "q60.jsonl"), "eval_models:gated", env,
                          "--retries", "0", EVAL_GATE_DIR=str(gates), EVAL_GATE_FROM="0")
        try:
            await until(pilot, lambda: "a-live" in eval_rows(detail), timeout=60, what="the new evaluation")
            for i in range(0, 40, 4):
                for k in range(i, i + 4):
                    (gates / str(k)).touch()
                await until(pilot, lambda i=i: f"{i + 4}/60 done" in eval_rows(detail)["a-live"], timeout=20,
                            what=f"{i + 4} items")
                assert detail.chosen_eval().name == "mixed"
                assert cells(table)[table.cursor_row][0] == "mixed"
            await pilot.press("i")
            insp = await until(pilot, lambda: type(app.screen).__name__ == "InspectorScreen" and app.screen,
                               what="the inspector")
            assert insp.items.paths.name == "mixed"
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()


# ------------------------------------------------------------------ E15 (c): samples without a pattern

async def test_samples_without_a_pattern_say_so(tmp_path):
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-samples", total=3, scores=[1.0], state="finished")
    sample = {"step": 10, "prompt": "1+1", "output": "2", "expected": "2", "correct": True, "pattern_ok": None}
    paths.samples.write_bytes(b"".join(orjson.dumps({**sample, "step": 10 * i}) + b"\n" for i in range(24)))
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(app, pilot, str(paths.root))
        await pilot.press("S")
        screen = await until(pilot, lambda: type(app.screen).__name__ == "SamplesScreen" and not app.screen.reading
                             and app.screen, what="the samples")
        head = str(screen.query_one("#shead").render())
        assert "24 samples  ·  correct 24/24 (100%)  ·  no pattern" in head and "pattern ok" not in head
        with open(paths.samples, "ab") as f:  # a profile with a pattern from here on
            f.write(orjson.dumps({**sample, "step": 300, "pattern_ok": True, "correct": False}) + b"\n")
            f.write(orjson.dumps({**sample, "step": 310, "pattern_ok": False}) + b"\n")
        head = await until(pilot, lambda: "26 samples" in str(screen.query_one("#shead").render())
                           and str(screen.query_one("#shead").render()), timeout=5, what="the new samples")
        assert "correct 25/26 (96.2%)" in head and "pattern ok 1/2 (50%, 24 not checked)" in head


# ------------------------------------------------------------------ E15 (d): one zero on the wall-time axis

def timed_run(root: Path) -> tuple[Path, float]:
    paths = synthetic_run(root, "2026-01-01-timed", total=5, scores=[], state="finished")
    t0 = 1_700_000_000.0
    status = orjson.loads(paths.status.read_bytes())
    write_json(paths.status, {**status, "started_at": t0})
    # steps from 1 s on, epochs ending at 5.3, 10.6 and 17.5 s, system samples from 2 s on (rank 0 of 2)
    recs = [{"kind": "step", "epoch": e, "step": 10 * e + s, "loss": 1.0 / (1 + 10 * e + s),
             "t": t0 + 1.0 + 1.7 * e + 0.1 * s} for e in range(3) for s in range(10)]
    recs += [{"kind": "epoch", "epoch": e, "val_loss": 0.5 - 0.1 * e, "t": t0 + t}
             for e, t in enumerate((5.3, 10.6, 17.5))]
    recs.sort(key=lambda r: r["t"])
    paths.metrics.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    paths.system.write_bytes(b"".join(orjson.dumps({"t": t0 + 2.0 + 5 * i, "cpu_percent": 50.0 + i,
                                                    "rss_bytes": 2 ** 28, "rank": 0, "world_size": 2}) + b"\n"
                                      for i in range(4)))
    return paths.root, t0


async def test_every_wall_time_series_has_the_runs_start_as_its_zero(tmp_path):
    root = tmp_path / "experiments"
    run, t0 = timed_run(root)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        await pilot.press("x")

        def charts() -> dict[str, list[tuple[float, float]]]:
            return {cv.title.split(" (x")[0]: cv.series[0].points for cv in detail.query("ChartView") if cv.series}

        got = charts()
        assert [round(x, 6) for x, _ in got["val_loss"]] == [5.3, 10.6, 17.5]  # not 0, 5.3, 12.2
        assert round(got["loss"][0][0], 6) == 1.0 and round(got["cpu_percent"][0][0], 6) == 2.0
        chart = next(cv for cv in detail.query("ChartView") if cv.title.startswith("val_loss"))
        drawn = text_of(Chart(chart.series, height=10, title=chart.title), 60).splitlines()
        assert drawn[-2].split() == ["5.3", "17.5"] and "s since start" in chart.title  # the x range
        with open(run / "metrics.jsonl", "ab") as f:  # a new epoch while the screen is open
            f.write(orjson.dumps({"kind": "epoch", "epoch": 3, "val_loss": 0.1, "t": t0 + 23.1}) + b"\n")
        await until(pilot, lambda: len(charts()["val_loss"]) == 4, timeout=5, what="the new epoch")
        assert round(charts()["val_loss"][-1][0], 6) == 23.1


# ------------------------------------------------------------------ F16: DDP system samples, numbers

async def test_the_system_section_names_the_rank_under_ddp(tmp_path):
    root = tmp_path / "experiments"
    run, _ = timed_run(root)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        title = str(detail.query_one("#system-title").render())
        assert title.startswith("System (rank 0 of 2") and "rank 0's process" in title
        shown = [cv.title for cv in detail.query("ChartView") if cv.series]
        assert not any(t.startswith(("rank", "world_size")) for t in shown), shown
        with open(run / "system.jsonl", "ab") as f:  # one process from here on
            f.write(orjson.dumps({"t": time.time(), "cpu_percent": 1.0, "rank": 0, "world_size": 1}) + b"\n")
        await until(pilot, lambda: str(detail.query_one("#system-title").render()) == "System", timeout=5,
                    what="a single process's title")


async def test_trainmon_prints_the_formatters_text(tmp_path):
    """A run crashed at 199 of 200 epochs: 99.5% in the row, the detail and the header (never
    100%), its bar not full, its loss 3.344e-05 (never 0), and no ETA."""
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-crashed", total=200, scores=[1.0] * 199, heartbeat_age_s=100_000)
    write_json(paths.status, {**orjson.loads(paths.status.read_bytes()), "loss": 3.344e-05, "eta_s": 12.0})
    key = os.path.abspath(paths.root)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        table = app.screen.query_one("#runs")

        def cell(column: str) -> str:
            return table.get_cell(RowKey(key), column).plain

        assert "crashed" in cell("state")
        bar, label = cell("progress").split(" ", 1)
        assert label == f"199/200 {fmt_progress(199, 200, space=False)}" == "199/200 99.5%"
        assert bar == "█" * (len(bar) - 1) + "▉"  # 99.5 %: full but for its last eighth
        # the loss in its 8 columns, never cut (3.344e-05 was shown as 3.344e-0); a crashed run has no ETA:
        # its column says why instead
        assert cell("loss").strip() == "3.344e-5" and cell("why").strip() in ("pid gone", "no heartbeat 1 d")
        head = str(app.screen.query_one("#summary").render())
        assert "99.5% overall (199/200 epochs)" in head and "100%" not in head
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", what="the detail")
        head = str(app.screen.query_one("#head").render())
        assert "199/200 epochs 99.5%" in head and "loss 3.344e-05" in head and "ETA" not in head
