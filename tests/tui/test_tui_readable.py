"""Readable at every width (issue 24, part 2), tested as the user saw it: names that read alike at
120 columns, numbers cut into other numbers, a header line that vanished, a group header without
its value, states drawn dark grey under NO_COLOR, and what an 80x24 terminal shows (a real tmux)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
import pytest
from tui_helpers import Tmux, in_tmux, ready, until

from trainkit.runfolder import STATES
from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.widgets.run_row import state_style
from tui.widgets.summary import summary_text

TRAINMON = Path(sys.executable).with_name("trainmon")
DEMO_NAMES = ("2026-12-07-demo-lr1e-3", "2026-12-07-demo-lr3e-3", "2026-12-07-demo-wide-256")


def with_status(paths, **fields) -> None:
    write_json(paths.status, {**orjson.loads(paths.status.read_bytes()), **fields})


def table_lines(app) -> list[str]:
    table = app.screen.query_one("#runs")
    return [table.render_line(y).text for y in range(table.size.height)]


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
async def test_names_get_width_first_and_read_apart(tmp_path, size):
    """Three dated demo runs read `2026-12-07-dem…` alike at 120 columns. Now: whole at 120 (up to
    24 characters); at 80 the shared date is shortened and the distinguishing part shows."""
    root = tmp_path / "experiments"
    for name in DEMO_NAMES:
        synthetic_run(root, name, total=4, scores=[1.0, 0.5], state="running", pid=os.getpid())
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        lines = table_lines(app)
        if size[0] == 120:
            for name in DEMO_NAMES:
                assert any(name in line for line in lines), (name, lines[:5])
        else:
            for tail in ("lr1e-3", "lr3e-3", "wide-256"):  # the shared 2026-12-07-demo- shortened to …
                assert any(f"…{tail}" in line for line in lines), (tail, lines[:5])
        names = [app.screen.query_one("#runs").get_cell_at((i, 0)).plain for i in range(3)]
        assert len(set(names)) == 3


@pytest.mark.asyncio
async def test_numbers_are_formatted_never_cut(tmp_path):
    """A loss of 1.234e-05 showed `1.234e-0` and 9.479e+27 `9.479e+2`: every number cell fits its
    column and reads back as the value (within 1 %)."""
    root = tmp_path / "experiments"
    values = {"2026-01-01-tiny": 1.234e-05, "2026-01-02-huge": 9.479e27, "2026-01-03-negative": -0.000123456}
    for name, loss in values.items():
        paths = synthetic_run(root, name, total=4, scores=[1.0], state="running", pid=os.getpid())
        with_status(paths, loss=loss, throughput=123456.7)
        paths.checkpoints.mkdir()
        write_json(paths.current_meta, {"version": 1, "last_epoch": 0, "best_loss": loss * 3,
                                        "best_metric": "val_loss"})
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        table = app.screen.query_one("#runs")
        widths = {c.key.value: c.width for c in table.ordered_columns}
        for name, loss in values.items():
            key = str(root / name)
            loss_text = table.get_cell(key, "loss").plain
            assert len(loss_text) <= widths["loss"] and abs(float(loss_text) - loss) <= 0.01 * abs(loss), loss_text
            best = table.get_cell(key, "best").plain
            assert len(best) <= widths["best"] and abs(float(best.split()[-1]) - 3 * loss) <= 0.03 * abs(loss), best
        drawn = "\n".join(table_lines(app))
        assert "1.234e-5" in drawn and "9.479e27" in drawn and "-1.23e-4" in drawn
        assert "1.234e-0 " not in drawn and "9.479e+2 " not in drawn


@pytest.mark.asyncio
async def test_the_filter_line_stays_when_the_state_counts_do_not_fit(tmp_path):
    """At 80 columns the counts per state wrapped and pushed the filter/sort line out of the header:
    a filtered list looked like missing runs. The counts line ends with … instead."""
    root = tmp_path / "experiments"
    for i, state in enumerate(("running", "paused", "finished", "early_stopped", "stopped", "failed")):
        synthetic_run(root, f"2026-01-0{i + 1}-{state}", total=4, scores=[1.0], state=state, pid=os.getpid())
    synthetic_run(root, "2026-01-09-pending", total=4, scores=[], state=None)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"0", "enter")
        bar = app.screen.query_one("#summary")
        lines = [bar.render_line(y).text.rstrip() for y in range(3)]
        assert lines[1].endswith("…") and "runs:" in lines[1]
        assert lines[2].startswith("sort: name") and "filter: 0 (7 shown)" in lines[2]


@pytest.mark.asyncio
async def test_group_headers_span_the_row_and_show_their_value(tmp_path):
    root = tmp_path / "experiments"
    for name, width in (("2026-01-01-small", 64), ("2026-01-02-wide", 256)):
        paths = synthetic_run(root, name, total=4, scores=[1.0], state="finished")
        cfg = orjson.loads(paths.resolved_config.read_bytes())
        write_json(paths.resolved_config, {**cfg, "model": {"width": width}})
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("G", *"model.width", "enter")
        await until(pilot, lambda: app.screen.group == "model.width", what="grouped")
        lines = table_lines(app)
        assert any("▼ model.width = 64" in line for line in lines) and any("▼ model.width = 256" in line
                                                                            for line in lines), lines[:6]


def test_every_state_reads_without_colour():
    """NO_COLOR: failed, crashed and stopped were drawn dark grey on near-black (a colour made grey);
    without colour a state is drawn by attributes only (the snapshot shows the whole screen)."""
    from rich.style import Style

    for state in STATES:
        style = Style.parse(state_style(state, mono=True) or "none")
        assert style.color is None and style.bgcolor is None, state
    for state in ("failed", "crashed"):
        assert Style.parse(state_style(state, mono=True)).reverse


def test_summary_text_names_every_state_queued_included():
    """summary_text raised KeyError: 'queued' (its own table of labels lacked it)."""
    counts = {s: 1 for s in STATES}
    text = summary_text({"runs": len(STATES), "counts": counts, "epochs_done": 3, "epochs_total": 9}, root="/r",
                        mode="inotify", readonly=False, shown=len(STATES), filt="", sort="name", group=None).plain
    assert "1 queued" in text and "1 evaluating" in text and "1 early-stop" in text


@pytest.mark.asyncio
@in_tmux
async def test_at_80x24_open_and_help_are_in_the_footer_and_each_row_says_eta_or_why(tmp_path):
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-live", total=4, scores=[1.0], state="running", pid=os.getpid())
    crashed = synthetic_run(root, "2026-01-02-gone", total=4, scores=[1.0], state="running", pid=2 ** 22 + 7)
    failed = synthetic_run(root, "2026-01-03-oom", total=4, scores=[1.0], state="failed")
    with_status(failed, error="RuntimeError: CUDA error: out of memory")
    del crashed
    term = Tmux(f"{TRAINMON} {root}", (80, 24))
    try:
        screen = term.wait(lambda s: "oom" in s and "Help" in s, "the workspace")
        footer = screen.rstrip().splitlines()[-1]
        assert "Open" in footer and "Help" in footer, footer
        rows = {line.split()[0].lstrip("•"): line for line in screen.splitlines() if "2026-01-0" in line}
        assert "00:10" in rows["2026-01-01-live"]  # its ETA (eta_s 10)
        assert "pid gone" in rows["2026-01-02-gone"]
        assert "RuntimeError" in rows["2026-01-03-oom"]
        assert all(len(line) <= 80 for line in screen.splitlines())
    finally:
        term.close()
