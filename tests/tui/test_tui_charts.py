"""Charts you can read (issue 26, section 1), as a user meets them in the run detail: a value
cursor with a readout (step, wall time, every chart's value there), smoothing with its factor in
the title and the raw curve faint behind, zoom with panning back through history at the cursor's
edge, `0` to reset, and the x axis by step, wall time or epoch. Real run folders, the real app
through Pilot."""

from __future__ import annotations

import io

import orjson
import pytest
from tui_helpers import ready, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.keys import keys_of
from tui.model.alignment import Plan, fraction_of_epoch, positions, step_total
from tui.model.chart_window import ChartWindow
from tui.model.curves import ema
from tui.screens.detail import DetailScreen
from tui.widgets.chart import Series, plot

SIZE = (120, 36)
T0 = 1000.0


def loss_at(i: int) -> float:
    return 1.0 / (1 + i) + (0.5 if i % 2 else 0.0)  # noisy: every other step 0.5 higher


def make_run(root, steps: int = 400, per_epoch: int = 100):
    paths = synthetic_run(root, "2026-01-01-a", total=4, scores=[0.9, 0.7, 0.5, 0.6], state="finished")
    with open(paths.metrics, "ab") as f:
        for i in range(steps):
            f.write(orjson.dumps({"kind": "step", "step": i, "epoch": i // per_epoch, "loss": loss_at(i), "lr": 1e-3,
                                  "t": T0 + i}) + b"\n")
    return paths.root


async def open_detail(app, pilot, key: str) -> DetailScreen:
    await ready(pilot)
    app.screen.query_one("#runs").select_key(key)
    await pilot.press("enter")
    return await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.history is not None
                       and app.screen.history.complete and app.screen, what="the detail")


def readout(detail) -> str:
    box = detail.query_one("#readout")
    return str(box.render()) if box.display else ""


def chart(detail, name: str):
    return next(cv for cv in detail.query("ChartView") if cv.title.split(" (")[0] == name)


@pytest.mark.asyncio
async def test_the_cursor_reads_every_charts_value_at_a_step(tmp_path):
    run = make_run(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        assert readout(detail) == ""  # no cursor until asked
        await pilot.press("right")  # the cursor appears on the newest step
        text = await until(pilot, lambda: readout(detail), what="the readout")
        assert "step 399" in text and "epoch 3" in text and "06:39 since start" in text
        assert f"loss {loss_at(399):.4g}" in text and "lr 0.001" in text and "val_loss 0.6 (epoch 3)" in text
        assert chart(detail, "loss").cursor == 399.0
        await pilot.press("left", "left")  # a 60th of the curve a press: 6 steps
        text = readout(detail)
        assert "step 387" in text and f"loss {loss_at(387):.4g}" in text
        await pilot.press(*["shift+left"] * 10)  # 60 steps a press, stopping at the first step
        assert "step 0 " in readout(detail) + " " and chart(detail, "loss").cursor == 0.0
        await pilot.press("0")
        assert readout(detail) == "" and chart(detail, "loss").cursor is None


@pytest.mark.asyncio
async def test_smoothing_draws_the_ema_over_the_faint_raw_curve(tmp_path):
    run = make_run(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        await pilot.press("s")
        cv = chart(detail, "loss")
        assert cv.title == "loss (x: step)  EMA 0.6"
        raw, smooth = cv.series
        assert raw.faint and not smooth.faint and smooth.label == "loss EMA 0.6"
        want = ema([(float(i), loss_at(i)) for i in range(400)], 0.6)
        assert smooth.points == pytest.approx(want)
        assert max(y for _, y in smooth.points[200:]) - min(y for _, y in smooth.points[200:]) < 0.5  # calmer
        await pilot.press("right")
        assert f"loss {loss_at(399):.4g} (EMA {want[-1][1]:.4g})" in readout(detail)
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert chart(detail, "loss").title == "loss (x: step)  EMA 0.9"
        await pilot.press("less_than_sign")
        assert chart(detail, "loss").title == "loss (x: step)  EMA 0.8"
        await pilot.press("s")  # off, and on again at the same weight
        assert chart(detail, "loss").title == "loss (x: step)" and len(chart(detail, "loss").series) == 1
        await pilot.press("s")
        assert chart(detail, "loss").title == "loss (x: step)  EMA 0.8"


@pytest.mark.asyncio
async def test_zoom_pans_back_at_the_cursors_edge_and_0_resets(tmp_path):
    run = make_run(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        await pilot.press("plus", "plus", "plus", "plus", "plus", "plus")  # 400 -> 200 ... -> 8 (at least)
        xs = [x for x, _ in chart(detail, "loss").series[0].points]
        assert xs == [float(i) for i in range(392, 400)]  # the newest 8 steps
        await pilot.press("right", *["left"] * 12)  # past the left edge: the view pans back with it
        xs = [x for x, _ in chart(detail, "loss").series[0].points]
        assert xs[0] == 387.0 and len(xs) == 8 and chart(detail, "loss").cursor == 387.0
        assert "step 387" in readout(detail)
        await pilot.press("0")
        xs = [x for x, _ in chart(detail, "loss").series[0].points]
        assert xs[0] == 0.0 and xs[-1] == 399.0 and readout(detail) == ""


@pytest.mark.asyncio
async def test_the_x_axis_is_step_wall_time_or_epoch(tmp_path):
    run = make_run(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        assert chart(detail, "loss").title == "loss (x: step)"
        await pilot.press("x")
        cv = chart(detail, "loss")
        assert cv.title == "loss (x: s since start)" and cv.series[0].points[-1][0] == 399.0  # t - the first t
        await pilot.press("x")
        cv = chart(detail, "loss")
        assert cv.title == "loss (x: epoch)"
        assert cv.series[0].points[150][0] == pytest.approx(1.5) and cv.series[0].points[-1][0] == pytest.approx(3.99)
        ve = chart(detail, "val_loss")
        assert ve.title == "val_loss (x: epochs done)" and [x for x, _ in ve.series[0].points] == [1.0, 2.0, 3.0, 4.0]
        await pilot.press("x")
        assert chart(detail, "loss").title == "loss (x: step)"


def test_the_help_lists_the_chart_keys():
    keys = {k.keys: k.text for k in keys_of(DetailScreen)}
    assert "←" in keys and "→" in keys and "Shift+←" in keys and "0" in keys
    assert "EMA" in keys["s"] and "<" in keys and ">" in keys
    assert "section" in keys["["] and "section" in keys["]"]  # the sections keep [ and ] (issue 24)
    assert "step, wall time" in keys["x"] and "epoch" in keys["x"]


def test_a_cursor_is_a_column_through_the_chart():
    lines = plot([Series("loss", [(0.0, 1.0), (10.0, 0.0)])], 40, 8, cursor=5.0)
    rows = [line.plain for line in lines[1:6]]
    col = {row.index("│", 10) for row in rows if "│" in row[10:]}
    assert len(col) == 1  # the same column on every row without a dot
    assert plot([Series("loss", [(0.0, 1.0), (10.0, 0.0)])], 40, 8, cursor=50.0)[1].plain.count("│") == 1


@pytest.mark.slow
@pytest.mark.asyncio
async def test_compare_shows_the_clis_numbers_and_tells_the_curves_apart(real_root, env):
    """Two real trained runs with real evaluations: the numbers above the charts are the figures
    `trainkit experiments compare --json` gives (best and its epoch, the run's report with its
    verdict), each run has its own line style beside its colour, and the legend shows the part of
    each name that tells them apart, whole."""
    from helpers import trainkit

    from tui.screens.compare import CompareScreen, numbers_table

    out = trainkit("experiments", "compare", "2026-01-01-base", "2026-01-02-copy", "--root", real_root, "--json",
                   cwd=real_root.parent, env=env)
    assert out.returncode == 0, out.stderr
    cli = {e["name"]: e for e in orjson.loads(out.stdout)["experiments"]}
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("space", "down", "space", "c")
        cmp = await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
                          and all(h.complete for h in app.screen.histories) and app.screen, what="compare")
        await pilot.pause()
        from rich.console import Console

        console = Console(width=200, record=True, color_system=None, file=io.StringIO())
        console.print(numbers_table(cmp.keys, cmp.histories, cmp.comparison, [app.model.runs.get(k) for k in cmp.keys]))
        rows = console.export_text().splitlines()[1:3]
        for row, name in zip(rows, ("…01-base", "…02-copy"), strict=True):
            e = cli[next(n for n in cli if n.endswith(name[1:]))]
            assert row.split()[1] == name
            assert f"(epoch {e['best_epoch']})" in row and e["best_metric"] in row
            rep = e["reports"][e["report"]]
            assert f"{e['report']}:" in row and f"({rep['verdict']})" in row
            assert "finished" in row
        loss = next(cv for cv in cmp.query("ChartView") if cv.title.startswith("loss"))
        assert [s.style for s in loss.series] == ["solid", "dashed"]
        assert [s.label for s in loss.series] == ["…01-base", "…02-copy"]
        legend = "\n".join(line.plain for line in plot(loss.series, 36, 10)[-2:])
        assert "…01-base" in legend and "…02-copy" in legend  # a narrow chart wraps its legend, never cuts it


@pytest.mark.asyncio
async def test_a_pinned_run_is_overlaid_in_every_other_runs_detail(tmp_path):
    root = tmp_path / "experiments"
    base = make_run(root)
    other = synthetic_run(root, "2026-01-02-b", total=4, scores=[0.8, 0.6, 0.4, 0.3], state="finished").root
    with open(other / "metrics.jsonl", "ab") as f:
        for i in range(200):
            f.write(orjson.dumps({"kind": "step", "step": i, "epoch": i // 50, "loss": 2.0, "t": T0 + i}) + b"\n")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(base))
        await pilot.press("p")
        assert app.pinned == str(base) and len(chart(detail, "loss").series) == 1  # no overlay of itself
        await pilot.press("escape")
        detail = await open_detail(app, pilot, str(other))
        cv = await until(pilot, lambda: len(chart(detail, "loss").series) == 2 and chart(detail, "loss"),
                         what="the pinned curve")
        mine, pinned = cv.series
        assert mine.points[0] == (0.0, 2.0) and pinned.label == "2026-01-01-a (pinned)" and pinned.style == "dotted"
        assert pinned.points == [(float(i), loss_at(i)) for i in range(400)]
        val = chart(detail, "val_loss").series
        assert [s.label for s in val] == ["val_loss", "2026-01-01-a (pinned)"] and val[1].points[0] == (0.0, 0.9)
        await pilot.press("p")  # pinning this one replaces the pin
        assert app.pinned == str(other)
        await pilot.press("p")
        assert app.pinned is None


@pytest.mark.asyncio
async def test_compare_smooths_and_changes_its_x_axis_too(tmp_path):
    root = tmp_path / "experiments"
    make_run(root)
    other = synthetic_run(root, "2026-01-02-b", total=4, scores=[0.8, 0.6, 0.4, 0.3], state="finished").root
    with open(other / "metrics.jsonl", "ab") as f:
        for i in range(200):
            f.write(orjson.dumps({"kind": "step", "step": i, "epoch": i // 50, "loss": 2.0 + i % 2, "t": 5e3 + i})
                    + b"\n")
    from tui.screens.compare import CompareScreen

    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space", "down", "space", "c")
        cmp = await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
                          and app.screen, what="compare")
        await pilot.press("s")
        cv = chart(cmp, "loss")
        assert cv.title == "loss (x: step)  EMA 0.6" and [s.faint for s in cv.series] == [True, False, True, False]
        assert cv.series[3].points == pytest.approx(ema([(float(i), 2.0 + i % 2) for i in range(200)], 0.6))
        await pilot.press("x")
        cv = chart(cmp, "loss")
        assert cv.title.startswith("loss (x: s since start)") and cv.series[3].points[-1][0] == 199.0  # its own start
        await pilot.press("x")
        assert chart(cmp, "loss").title.startswith("loss (x: epoch)")
        assert [x for x, _ in chart(cmp, "val_loss").series[1].points] == [1.0, 2.0, 3.0, 4.0]


# --------------------------------------------------------------------------------------------
# compare: the value cursor, zoom, alignment by fraction of training, the config diff


def compare_runs(root, short: int = 100, long: int = 400):
    """Two finished runs of 4 epochs: ``short`` steps (loss 2 + step / 1000, 25 steps an epoch) and
    ``long`` steps (loss = loss_at(step), 100 an epoch), each with its plan in training_status.json."""
    from trainkit.runfolder.files import read_json_object, write_json

    a = synthetic_run(root, "2026-01-01-a", total=4, scores=[0.9, 0.7, 0.5, 0.6], state="finished",
                      early_stopping={"metric": "val_loss", "patience": 2})
    b = synthetic_run(root, "2026-01-02-b", total=4, scores=[0.8, 0.6, 0.4, 0.3], state="finished")
    for paths, steps in ((a, short), (b, long)):
        status = read_json_object(paths.root / "training_status.json")
        write_json(paths.root / "training_status.json", {**status, "steps_per_epoch": steps // 4})
        per_epoch = steps // 4
        with open(paths.metrics, "ab") as f:
            for i in range(steps):
                loss = 2.0 + i / 1000 if paths is a else loss_at(i)
                f.write(orjson.dumps({"kind": "step", "step": i, "epoch": i // per_epoch, "loss": loss, "t": T0 + i})
                        + b"\n")
    return a.root, b.root


async def open_compare(app, pilot):
    from tui.screens.compare import CompareScreen

    await ready(pilot)
    await pilot.press("space", "down", "space", "c")
    return await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
                       and app.screen.histories and all(h.complete for h in app.screen.histories) and app.screen,
                       what="compare")


def compare_readout(cmp) -> str:
    box = cmp.query_one("#creadout")
    return box.content.plain if box.display else ""


@pytest.mark.asyncio
async def test_the_compare_cursor_reads_every_runs_value_at_a_step(tmp_path):
    make_a, make_b = compare_runs(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        cmp = await open_compare(app, pilot)
        assert compare_readout(cmp) == ""
        await pilot.press("right")  # on the newest step of any run: only the long run has one there
        lines = (await until(pilot, lambda: compare_readout(cmp), what="the readout")).splitlines()
        assert lines[0] == "▏ step 399"
        assert "…01-a" in lines[1] and "no value here" in lines[1]
        assert "…02-b" in lines[2] and f"loss {loss_at(399):.4g}" in lines[2] and "val_loss 0.3 (epoch 3)" in lines[2]
        assert chart(cmp, "loss").cursor == 399.0
        await pilot.press(*["shift+left"] * 5)  # 6 steps a move, 60 a Shift move: step 99
        lines = compare_readout(cmp).splitlines()
        assert lines[0] == "▏ step 99"
        assert f"loss {2.0 + 99 / 1000:.4g}" in lines[1] and "val_loss 0.6 (epoch 3)" in lines[1]
        assert f"loss {loss_at(99):.4g}" in lines[2] and "val_loss 0.8 (epoch 0)" in lines[2]
        await pilot.press("s")  # smoothed: the EMA's value beside the raw one
        want = ema([(float(i), loss_at(i)) for i in range(400)], 0.6)
        assert f"(EMA {want[99][1]:.4g})" in compare_readout(cmp).splitlines()[2]
        await pilot.press("0")
        assert compare_readout(cmp) == "" and chart(cmp, "loss").cursor is None


@pytest.mark.asyncio
async def test_compare_zooms_pans_at_the_cursors_edge_and_resets(tmp_path):
    compare_runs(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        cmp = await open_compare(app, pilot)
        await pilot.press(*["plus"] * 6)  # 400 places -> 200 ... -> 8 (at least)
        a, b = chart(cmp, "loss").series
        assert a.points == [] and [x for x, _ in b.points] == [float(i) for i in range(392, 400)]
        await pilot.press("right", *["left"] * 12)  # past the left edge: the view pans back with it
        a, b = chart(cmp, "loss").series
        assert [x for x, _ in b.points] == [float(i) for i in range(387, 395)]
        assert chart(cmp, "loss").cursor == 387.0 and compare_readout(cmp).startswith("▏ step 387")
        await pilot.press("minus")
        assert len(chart(cmp, "loss").series[1].points) == 16
        await pilot.press("0")
        a, b = chart(cmp, "loss").series
        assert len(a.points) == 100 and len(b.points) == 400 and compare_readout(cmp) == ""


@pytest.mark.asyncio
async def test_compare_aligns_runs_of_different_lengths_by_fraction_of_training(tmp_path):
    compare_runs(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        cmp = await open_compare(app, pilot)
        await pilot.press("x", "x", "x")  # step -> time -> epoch -> fraction
        cv = chart(cmp, "loss")
        assert cv.title == "loss (x: fraction of training)"
        a, b = cv.series
        assert a.points[-1][0] == b.points[-1][0] == 1.0  # 100 and 400 steps, end to end
        assert a.points[49][0] == b.points[199][0] == 0.5 and a.points[0][0] == 0.01 and b.points[0][0] == 0.0025
        va, vb = chart(cmp, "val_loss").series
        assert [x for x, _ in va.points] == [x for x, _ in vb.points] == [0.25, 0.5, 0.75, 1.0]
        await pilot.press("right", *["shift+left"] * 3)  # some way back through the 500 places of both runs
        text = compare_readout(cmp)
        place = chart(cmp, "loss").cursor
        assert text.startswith(f"▏ {place:.1%} of training")
        lines = text.splitlines()
        step_a, step_b = int(place * 100 + 1e-9) - 1, int(place * 400 + 1e-9) - 1  # each one's last step there
        assert 0.3 < place < 0.9
        assert f"step {step_a}  loss {2.0 + step_a / 1000:.4g}" in lines[1]
        assert f"step {step_b}  loss {loss_at(step_b):.4g}" in lines[2]
        await pilot.press("x")
        assert chart(cmp, "loss").title == "loss (x: step)" and compare_readout(cmp) == ""


@pytest.mark.asyncio
async def test_the_config_diff_hides_a_key_no_run_sets(tmp_path):
    compare_runs(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        cmp = await open_compare(app, pilot)
        from rich.console import Console

        def keys_shown() -> list[str]:
            console = Console(width=200, record=True, color_system=None, file=io.StringIO())
            console.print(cmp.query_one("#config-table").content)  # the Rich table it was given
            rows = [line.split() for line in console.export_text().splitlines()[1:] if line.strip()]
            return [words[1] if words[0] == "≠" else words[0] for words in rows]

        # early_stopping: missing in one run, None in the other (differing, yet set in none)
        assert cmp.comparison.value(1, "early_stopping") is None and "early_stopping" in cmp.comparison.differing
        assert keys_shown() == ["early_stopping.metric", "early_stopping.patience"]
        await pilot.press("d")  # every key: still not the one no run sets
        assert keys_shown() == ["early_stopping.metric", "early_stopping.patience", "epochs", "task"]


@pytest.mark.parametrize("plan, last_step, total", [
    (Plan(4, 400), 399.0, 400.0),  # finished as planned
    (Plan(4, 400), 199.0, 400.0),  # half way: it ends at 0.5
    (Plan(4, 40), 399.0, 400.0),  # past its plan (resumed longer): what it did
    (Plan(None, None), 99.0, 100.0),  # no plan: its last step
    (Plan(None, None), None, None),
])
def test_a_runs_whole_training_is_its_plan_else_what_it_did(plan, last_step, total):
    assert step_total(plan, last_step) == total


def test_fractions_place_steps_and_epochs_of_the_whole_training():
    pts = [(float(s), float(s // 25), T0 + s, 1.0) for s in range(100)]
    xs = positions(pts, "fraction", T0, Plan(4, 200))
    assert xs[0] == 0.005 and xs[-1] == 0.5  # half of a 200-step plan done
    assert positions(pts, "fraction", T0, Plan())[-1] == 1.0
    assert positions(pts, "time", T0, Plan())[-1] == 99.0 and positions(pts, "step", None, Plan())[3] == 3.0
    assert fraction_of_epoch(1, Plan(4, 200), 1) == 0.5 and fraction_of_epoch(1, Plan(), 3) == 0.5


@pytest.mark.parametrize("keys, by, want_cursor, want_pan", [
    ([], 1, 99.0, 0),  # the first press: the newest point
    (["in"] * 4, -1, 99.0, 0),  # zoomed to 12 points (100 -> 50 -> 25 -> 12 -> 8): the newest still
])
def test_a_chart_window_starts_its_cursor_at_the_newest_point(keys, by, want_cursor, want_pan):
    win = ChartWindow()
    xs = [float(i) for i in range(100)]
    for _ in keys:
        win.zoom_in(len(xs))
    assert win.move(xs, by) and win.cursor == want_cursor and win.pan == want_pan


def test_a_chart_window_zooms_pans_and_resets():
    win = ChartWindow()
    xs = [float(i) for i in range(100)]
    assert win.window(xs) == (0, 100) and win.bounds(xs) is None and not win.move([], 1)
    win.zoom_in(100)
    win.zoom_in(100)
    assert win.last == 25 and win.window(xs) == (75, 100) and win.bounds(xs) == (75.0, 99.0)
    win.move(xs, 1)
    for _ in range(30):  # one point a move (25 on screen): past the left edge the view pans back
        win.move(xs, -1)
    assert win.cursor == 69.0 and win.window(xs) == (69, 94) and win.pan == 6
    win.cursor = 200.0  # a cursor outside the view is kept within it
    assert win.here(xs) == 93 and win.cursor == 93.0
    win.zoom_out(100)
    win.zoom_out(100)
    assert win.last is None and win.pan == 0 and win.window(xs) == (0, 100)
    win.reset()
    assert win.cursor is None and win.here(xs) is None


# ------------------------------------------------------------------------ the cursor by the mouse

def test_a_click_maps_back_to_the_x_the_chart_drew_there():
    """x_at is plot's placement inverted: the column where plot draws a cursor maps back to that x
    (within one column's span); left or right of the plot, or without data, there is no x."""
    from rich.console import Console

    from tui.widgets.chart import LABEL_W, x_at

    series = [Series("loss", [(float(i), loss_at(i)) for i in range(400)])]
    width = 80
    span = 399 / (width - LABEL_W - 1)
    for x in (0.0, 57.0, 200.0, 399.0):
        line = plot(series, width, 12, cursor=x)[1]  # the cursor: a bar, or a dot drawn reversed
        console = Console(width=200)
        column = next(i for i, ch in enumerate(line.plain) if i > LABEL_W
                      and (ch == "│" or line.get_style_at_offset(console, i).reverse))
        assert abs(x_at(series, width, column) - x) <= span, (x, column)
    assert x_at(series, width, LABEL_W) is None and x_at(series, width, width) is None
    assert x_at([], width, 40) is None


@pytest.mark.asyncio
async def test_a_click_on_a_chart_puts_the_cursor_at_the_step_under_it(tmp_path):
    from tui.widgets.chart import LABEL_W, x_at

    run = make_run(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(app, pilot, str(run))
        cv = chart(detail, "loss")
        column = LABEL_W + 1 + 20
        x = x_at(cv.series, cv.content_size.width, column)
        await pilot.click(cv, offset=(cv.gutter.left + column, 4))
        text = await until(pilot, lambda: readout(detail), what="the readout")
        assert f"step {round(x)} " in text + " " and cv.cursor == float(round(x))
        await pilot.click(chart(detail, "val_loss"), offset=(2 + LABEL_W + 1 + 2, 4))  # an epoch chart: epoch 0
        text = await until(pilot, lambda: "step 99 " in readout(detail) + " " and readout(detail),
                           what="the last step of epoch 0")
        assert "epoch 0" in text


@pytest.mark.asyncio
async def test_a_click_on_a_compare_chart_puts_the_cursor_there(tmp_path):
    from tui.widgets.chart import LABEL_W, x_at

    compare_runs(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        cmp = await open_compare(app, pilot)
        cv = chart(cmp, "loss")
        column = LABEL_W + 1 + 30
        x = x_at(cv.series, cv.content_size.width, column)
        await pilot.click(cv, offset=(cv.gutter.left + column, 4))
        first = (await until(pilot, lambda: compare_readout(cmp), what="the readout")).splitlines()[0]
        assert first == f"▏ step {round(x)}" and cv.cursor == float(round(x))
