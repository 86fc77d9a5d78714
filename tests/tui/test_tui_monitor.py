"""trainmon shows the training monitor: a real run trained with inference samples and layer health
(``monitor_tasks:sampling_task``), its samples with pattern and correctness marks, live appends,
an alert (the runs list's mark, the row's tooltip, the detail's list), the layer-health table, and
the full samples history (``S``); plus the pure row renderables and the Textual-free model."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import orjson
import pytest
from helpers import eval_env, trainkit, write_config
from tui_helpers import ready, until

from trainkit.runfolder import RunPaths
from trainkit.runfolder.files import dumps, write_json
from tui.app import Options, TrainmonApp
from tui.model.monitor import MonitorFiles, SamplesHistory
from tui.model.runs import MONITOR, RunsModel
from tui.widgets.monitor_rows import alert_cells, layer_cells, mark, sample_cells


@pytest.fixture(scope="session")
def monitored_template(tmp_path_factory, cache_dir) -> Path:
    """ROOT with one real run of the sampling task: samples every 2 steps, layers every 2 steps."""
    base = tmp_path_factory.mktemp("trainmon-monitored")
    root = base / "experiments"
    env = eval_env(dict(os.environ, TRAINKIT_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1"))
    cfg = write_config(base / "sampling.yaml", task="monitor_tasks:sampling_task", model={}, data={}, epochs=2,
                       batch_size=16, monitor={"samples_every_steps": 2, "layers_every_steps": 2})
    r = trainkit("train", cfg, "--run-dir", root / "2026-01-01-sampled", cwd=base, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return root


@pytest.fixture
def monitored(monitored_template, tmp_path) -> Path:
    root = tmp_path / "experiments"
    shutil.copytree(monitored_template, root, symlinks=True)
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def plain(cells) -> list[str]:
    return [getattr(c, "plain", str(c)) for c in cells]


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("value, text", [(True, "✓"), (False, "✗"), (None, "-"), ("yes", "-")])
def test_mark(value, text):
    assert mark(value).plain == text


def test_row_renderables_read_without_colour():
    s = plain(sample_cells({"step": 4, "prompt": "What is 2+2?\nthink", "output": "5", "expected": "4",
                            "correct": False, "pattern_ok": True}, 8))
    assert s == ["4", "✓", "✗", "What is…", "5", "4"]
    a = plain(alert_cells({"kind": "loss_spike", "step": 9, "value": 9.25, "threshold": 3, "message": "spike",
                           "t": 0}))
    assert a[:5] == ["9", "loss_spike", "9.25", "3", "spike"]
    assert plain(alert_cells({"kind": "nonfinite_loss", "step": 5, "value": "nan", "threshold": None,
                              "message": "loss is nan"}))[2:4] == ["nan", "-"]


def test_model_tails_the_monitor_files_incrementally(tmp_path):
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    paths.samples.write_bytes(b"".join(dumps({"step": i, "output": str(i), "correct": i % 2 == 0}) + b"\n"
                                       for i in range(30)) + b'{"step": 30, "outp')  # a torn last line
    m = MonitorFiles(str(paths.root))
    assert [s["step"] for s in m.samples] == list(range(18, 30))  # the latest 12
    assert m.update() == set()
    with open(paths.samples, "ab") as f:
        f.write(b'ut": "30"}\n')
    assert m.update() == {"samples"} and m.samples[-1]["step"] == 30
    with open(paths.layers, "ab") as f:
        for k in range(3):
            f.write(dumps({"step": k, "layers": [{"name": "a", "grad_norm": 1.0 + k, "weight_norm": 2.0,
                                                  "update_ratio": 1e-3}, {"bad": 1}]}) + b"\n")
    assert m.update() == {"layers"}
    assert list(m.layers) == ["a"] and list(m.layers["a"].grad_norms) == [1.0, 2.0, 3.0]
    assert plain(layer_cells(m.layers["a"]))[:4] == ["a", "3", "2", "1.00e-03"]
    paths.alerts.write_bytes(dumps({"kind": "loss_spike", "step": 3, "message": "spike"}) + b"\n")
    assert m.update() == {"alerts"} and len(m.alerts) == 1
    paths.samples.write_bytes(dumps({"step": 99, "output": "x"}) + b"\n")  # replaced: read again
    assert m.update() == {"samples"} and [s["step"] for s in m.samples] == [99]
    h = SamplesHistory(str(paths.root), chunk=64)
    while not h.done:
        h.read_more()
    assert [s["step"] for s in h.samples] == [99]


def test_runs_model_routes_the_monitor_files_and_the_alert(tmp_path):
    from trainkit.testing import synthetic_run

    paths = synthetic_run(tmp_path, "r", total=2, scores=[1.0], state="running")
    model = RunsModel(tmp_path)
    model.refresh(None, budget_s=None)
    view = model.runs[str(paths.root)]
    assert view.alert is None and not view.warned
    paths.layers.write_bytes(b"{}\n")
    changes = model.refresh({str(paths.layers)})
    assert changes and MONITOR in changes[0].what
    status = orjson.loads(paths.status.read_bytes())
    status["alerts"] = [{"kind": "loss_spike", "step": 3, "message": "loss spiked at step 3"}]
    write_json(paths.status, status)
    model.refresh({str(paths.status)})
    assert view.alert == "loss spiked at step 3" and view.warned
    assert view.problems()[0] == "alert: loss spiked at step 3"
    changes = model.refresh(None)  # polling sees the monitor files too
    paths.samples.write_bytes(b'{"step": 1, "output": "x"}\n')
    changes = model.refresh(None)
    assert any(MONITOR in c.what for c in changes)


# ------------------------------------------------------------------ Pilot, on a real run


@pytest.mark.asyncio
async def test_detail_shows_real_samples_layers_and_live_alerts(monitored):
    run = monitored / "2026-01-01-sampled"
    paths = RunPaths(run)
    samples = read_jsonl(paths.samples)
    layers = read_jsonl(paths.layers)
    assert samples and layers
    app = TrainmonApp(Options(str(monitored)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        table = app.screen.query_one("#runs")
        assert table.tooltip is None  # no alert, no warning
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "monitor", None) is not None, what="monitor")
        detail = app.screen
        stable = detail.query_one("#samples")
        rows = [plain(stable.get_row_at(i)) for i in range(stable.row_count)]
        newest = samples[-1]
        assert rows[0][0] == str(newest["step"])  # newest first
        for row, rec in zip(rows, reversed(samples), strict=False):
            assert row[1:3] == [mark(rec.get("pattern_ok")).plain, mark(rec["correct"]).plain]
        assert {r[2] for r in rows} <= {"✓", "✗"}
        assert len(rows) == min(12, len(samples))
        ltable = detail.query_one("#layers")
        names = [plain(ltable.get_row_at(i))[0] for i in range(ltable.row_count)]
        assert names == [x["name"] for x in layers[-1]["layers"]]
        trend = plain(ltable.get_row_at(0))[4]
        assert len(trend.strip()) == min(len(layers), 24)  # one bar per layers.jsonl record
        assert plain(detail.query_one("#alerts").get_row_at(0))[1] == "no alert"

        # live: a new sample, then an alert (alerts.jsonl and the status's latest alerts)
        with open(paths.samples, "ab") as f:
            f.write(dumps({**newest, "step": 9999, "output": "live!", "correct": False, "pattern_ok": False,
                           "t": time.time()}) + b"\n")
        await until(pilot, lambda: plain(detail.query_one("#samples").get_row_at(0))[0] == "9999", what="live sample")
        assert plain(detail.query_one("#samples").get_row_at(0))[1:5] == ["✗", "✗", newest["prompt"][:27] + "…"
                                                                          if len(newest["prompt"]) > 28
                                                                          else newest["prompt"], "live!"]
        alert = {"kind": "loss_spike", "step": 9999, "value": 9.5, "threshold": 3.0,
                 "message": "loss spiked to 9.5 at step 9999", "t": time.time()}
        with open(paths.alerts, "ab") as f:
            f.write(dumps(alert) + b"\n")
        status = orjson.loads(paths.status.read_bytes())
        status["alerts"] = [alert]
        write_json(paths.status, status)
        await until(pilot, lambda: plain(detail.query_one("#alerts").get_row_at(0))[1] == "loss_spike",
                    what="the alert in the detail")
        await until(pilot, lambda: "alert: loss spiked" in detail.query_one("#head").render().plain,
                    what="the alert in the head")

        # S: every sample, then one more appended while it is open
        await pilot.press("S")
        await until(pilot, lambda: type(app.screen).__name__ == "SamplesScreen" and not app.screen.reading,
                    what="samples screen")
        screen = app.screen
        assert screen.query_one("#all-samples").row_count == len(samples) + 1
        with open(paths.samples, "ab") as f:
            f.write(dumps({**newest, "step": 10001, "output": "more", "t": time.time()}) + b"\n")
        await until(pilot, lambda: screen.query_one("#all-samples").row_count == len(samples) + 2,
                    what="a live row in the history")
        assert f"{len(samples) + 2} samples" in screen.query_one("#shead").render().plain
        await pilot.press("escape", "escape")
        await until(pilot, lambda: type(app.screen).__name__ == "WorkspaceScreen", what="workspace")
        table = app.screen.query_one("#runs")
        from tui_helpers import row_text
        assert row_text(app, str(run)).endswith("⚠")
        table.move_cursor(row=0)
        await until(pilot, lambda: table.tooltip == "alert: loss spiked to 9.5 at step 9999", what="the tooltip")
