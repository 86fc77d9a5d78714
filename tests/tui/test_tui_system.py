"""System at a glance (issue 26, section 5): the host's CPU, memory and GPUs in the workspace
header (steadied so an idle screen never repaints for noise; nothing about GPUs without NVML),
and the GPUs a run's system.jsonl names in its detail. Words and rounding as tables; the header
through Pilot with an injected sampler and with this host's real one."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace

import orjson
import pytest
from tui_helpers import ready, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.model.system import (
    GiB,
    GpuFigures,
    HostFigures,
    HostSampler,
    Shown,
    gpu_figures,
    gpus_text,
    host_lines,
    mean,
    mem_step,
    run_gpus,
    steady,
)

NO_NVML = importlib.util.find_spec("pynvml") is None


def host(cpu: float, used_gib: float, total_gib: float = 16.0, gpus=()) -> HostFigures:
    return HostFigures(cpu, used_gib * GiB, total_gib * GiB, tuple(gpus))


def gpu(i: int, util: float, used_gib: float, total_gib: float = 80.0) -> GpuFigures:
    return GpuFigures(i, util, used_gib * GiB, total_gib * GiB)


# ---------------------------------------------------------------- rounding that does not flicker
@pytest.mark.parametrize("shown_cpu, new_cpu, expected", [
    (None, 37.2, 35.0),  # to 5 % steps
    (None, 37.6, 40.0),
    (35.0, 38.9, 35.0),  # within a step of what is shown: kept (no repaint)
    (35.0, 31.1, 35.0),
    (35.0, 40.0, 40.0),  # a whole step: shown
    (35.0, 62.4, 60.0),
    (0.0, 4.9, 0.0),
    (0.0, 100.0, 100.0),
    (None, math.nan, math.nan),
])
def test_the_cpu_moves_in_whole_steps_only(shown_cpu, new_cpu, expected):
    shown = None if shown_cpu is None else host(shown_cpu, 5.0)
    got = steady(shown, host(new_cpu, 5.0)).cpu_percent
    assert got == expected or (math.isnan(expected) and math.isnan(got))


@pytest.mark.parametrize("shown_gib, new_gib, total_gib, expected", [
    (None, 5.14, 8, 5.1),  # a tenth of a GiB below 10 GiB of memory
    (5.1, 5.19, 8, 5.1),  # 90 MiB more: the same tenth shown
    (5.1, 5.01, 8, 5.1),
    (5.1, 5.21, 8, 5.2),
    (5.1, 7.96, 8, 8.0),
    (None, 100.3, 500, 100.0),  # 1 % of the total above: 5 GiB steps of 500 GiB
    (100.0, 104.9, 500, 100.0),
    (100.0, 105.2, 500, 105.0),
])
def test_memory_moves_in_steps_of_its_total(shown_gib, new_gib, total_gib, expected):
    shown = None if shown_gib is None else host(10, shown_gib, total_gib)
    assert steady(shown, host(10, new_gib, total_gib)).mem_used_bytes / GiB == pytest.approx(expected)


def test_mem_step():
    assert mem_step(4 * GiB) == 0.1 * GiB and mem_step(64 * GiB) == pytest.approx(0.64 * GiB)


def test_the_mean_of_samples_gpu_by_gpu():
    m = mean([host(30, 4, gpus=[gpu(0, 10, 1), gpu(1, 50, 2)]), host(50, 6, gpus=[gpu(1, 70, 4), gpu(2, 5, 1)])])
    assert (m.cpu_percent, m.mem_used_bytes / GiB) == (40, 5)
    assert [(g.index, g.util_percent, g.mem_used_bytes / GiB) for g in m.gpus] == [(1, 60, 3), (2, 5, 1)]


def test_what_is_shown_of_a_noisy_host_changes_only_when_it_moves():
    shown = Shown(window=4)
    noise = [36, 39, 33, 37, 38, 34, 36, 37]  # within a step of 35 (and its mean even more)
    assert [shown.add(host(c, 5.0)) for c in noise] == [True] + [False] * 7
    assert shown.figures.cpu_percent == 35
    jumped = [shown.add(host(90, 5.0)) for _ in range(6)]  # a real change: shown within 4 samples, then still
    assert shown.figures.cpu_percent == 90 and jumped[-2:] == [False, False] and sum(jumped) <= 4


def test_each_gpu_is_steadied_on_its_own_and_a_noisy_host_settles():
    shown = steady(None, host(12, 3.0, gpus=[gpu(0, 87, 20.13), gpu(1, 3, 0.5, 8)]))
    assert [(g.util_percent, round(g.mem_used_bytes / GiB, 3)) for g in shown.gpus] == [(85, 20.0), (5, 0.5)]
    again = steady(shown, host(14.9, 3.04, gpus=[gpu(0, 89.9, 20.7), gpu(1, 2, 0.55, 8)]))
    assert again == shown  # noise within a step: equal figures, the header repaints nothing
    moved = steady(shown, host(14.9, 3.04, gpus=[gpu(0, 99, 20.19), gpu(1, 2, 0.55, 8)]))
    assert moved.gpus[0].util_percent == 100 and moved.gpus[1] == shown.gpus[1] and moved.cpu_percent == 10


# ---------------------------------------------------------------- the words
@pytest.mark.parametrize("figures, expected", [
    (host(35, 5.1, 15.6), ("CPU  35 %  mem  5.1/15.6 GiB", "")),
    (host(100, 12.5, 15.6), ("CPU 100 %  mem 12.5/15.6 GiB", "")),
    (host(0, 120, 503.7), ("CPU   0 %  mem 120/504 GiB", "")),
    (host(35, 5.0, 16, [gpu(0, 85, 20.1)]), ("CPU  35 %  mem  5.0/16 GiB", "GPU0  85 % 20.1/80 GiB")),
    (host(35, 5.0, 16, [gpu(0, 85, 20.1), gpu(1, 90, 40)]),
     ("CPU  35 %  mem  5.0/16 GiB", "GPU0  85 % 20.1/80 GiB  GPU1  90 % 40.0/80 GiB")),
    (host(35, 5.0, 16, [gpu(i, 10 * i, i) for i in range(4)]),
     ("CPU  35 %  mem  5.0/16 GiB", "GPU   0  10  20  30 %  mem  0.0  1.0  2.0  3.0 /80 GiB")),
    (host(35, 5.0, 16, [gpu(0, 0, 1, 24), gpu(1, 5, 2, 24), gpu(2, 100, 70, 80)]),
     ("CPU  35 %  mem  5.0/16 GiB", "GPU   0   5 100 %  mem  1.0/24  2.0/24 70.0/80 GiB")),
    (HostFigures(math.nan, math.nan, 16 * GiB), ("CPU   ? %  mem    ?/16 GiB", "")),
])
def test_host_lines_keep_their_width_for_a_host(figures, expected):
    assert host_lines(figures) == expected
    other = HostFigures(3.0, 1.0 * GiB, figures.mem_total_bytes,
                        tuple(replace(g, util_percent=3.0, mem_used_bytes=1.0 * GiB) for g in figures.gpus))
    assert [len(x) for x in host_lines(other)] == [len(x) for x in expected]  # new figures, the same cells


def test_a_runs_gpus_from_its_system_records():
    records = [
        {"t": 1.0, "cpu_percent": 90.0, "gpus": [{"index": 0, "util_percent": 50, "mem_used_bytes": 2 * GiB,
                                                  "mem_total_bytes": 80 * GiB}]},
        {"t": 2.0, "cpu_percent": 90.0, "gpus": [
            {"index": 0, "util_percent": 99, "mem_used_bytes": 30 * GiB, "mem_total_bytes": 80 * GiB},
            {"index": 3, "util_percent": 97, "mem_used_bytes": 31 * GiB, "mem_total_bytes": 80 * GiB},
            {"index": True, "util_percent": 1}, "not a gpu", {"util_percent": 5}]},
        {"t": 3.0, "cpu_percent": 90.0},  # a record without GPUs: the latest that has them counts
    ]
    gpus = run_gpus(records)
    assert [g.index for g in gpus] == [0, 3]
    assert gpus_text(gpus) == "GPU 0, 3 (latest: GPU0 99 % 30/80 GiB, GPU3 97 % 31/80 GiB)"
    assert run_gpus([{"t": 1.0, "cpu_percent": 3.0}]) == [] and gpus_text([]) == ""
    assert gpu_figures([{"index": 1}])[0].util_percent != gpu_figures([{"index": 1}])[0].util_percent  # NaN


# ---------------------------------------------------------------- this host, for real
def test_this_hosts_sampler_reads_cpu_and_memory():
    import psutil

    sampler = HostSampler()
    f = sampler.sample()
    mem = psutil.virtual_memory()
    assert 0.0 <= f.cpu_percent <= 100.0
    assert f.mem_total_bytes == mem.total and 0 < f.mem_used_bytes <= mem.total
    if NO_NVML:
        assert f.gpus == ()


# ---------------------------------------------------------------- the header, through the app
class Fixed:
    """A sampler that reads the figures it is given (the app calls the class: a factory)."""

    figures = host(37.2, 5.14, 15.6)

    def sample(self) -> HostFigures:
        return self.figures


class WithGpus(Fixed):
    figures = host(37.2, 5.14, 15.6, [gpu(0, 86.9, 20.13)])


def header(app) -> str:
    return app.screen.query_one("#summary").text()


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(120, 36), (160, 40)], ids=["120x36", "160x40"])
async def test_the_header_shows_the_hosts_cpu_and_memory(tmp_path, size):
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-one", total=3, scores=[1.0, 0.5], state="finished")
    app = TrainmonApp(Options(str(root), watch=False, system=Fixed))
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await until(pilot, lambda: "CPU" in header(app), what="the host's figures")
        first = header(app).splitlines()[0]
        assert first.startswith("trainmon ") and first.endswith("CPU  35 %  mem  5.1/15.6 GiB")
        bar = app.screen.query_one("#summary")
        figures = bar.query(".host").first()
        await until(pilot, lambda: figures.region.width, what="the figures laid out")
        assert figures.region.right == bar.region.right - 1 and figures.region.y == bar.region.y  # top right
        assert "GPU" not in header(app)
        assert header(app).splitlines()[1].endswith("1 run: ■ 1 stopped")  # the counts' line is the summary's alone


@pytest.mark.asyncio
async def test_the_header_shows_each_gpu(tmp_path):
    root = tmp_path / "experiments"
    root.mkdir()
    app = TrainmonApp(Options(str(root), watch=False, system=WithGpus))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: "GPU" in header(app), what="the GPU's figures")
        assert header(app).splitlines()[2].endswith("GPU0  85 % 20.0/80 GiB")  # 80 GiB: in steps of 0.8


@pytest.mark.asyncio
@pytest.mark.skipif(not NO_NVML, reason="nvidia-ml-py is installed here")
async def test_with_this_hosts_sampler_and_no_nvml_nothing_about_gpus(tmp_path):
    root = tmp_path / "experiments"
    root.mkdir()
    app = TrainmonApp(Options(str(root)))  # watching: this host's sampler
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: "CPU" in header(app), what="the host's figures")
        assert " mem " in header(app) and "GPU" not in header(app)


@pytest.mark.asyncio
async def test_a_static_app_samples_nothing(tmp_path):
    """watch=False (the snapshots): no sampling thread, no figures."""
    root = tmp_path / "experiments"
    root.mkdir()
    app = TrainmonApp(Options(str(root), watch=False))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.pause(1.5)
        assert "CPU" not in header(app) and not [w for w in app.screen.workers if w.group == "host"]


class Noisy:
    """Figures that wander within a step."""

    def __init__(self) -> None:
        self.n = 0

    def sample(self) -> HostFigures:
        self.n += 1
        return host(36.0 + 3 * (self.n % 3) - 3, 5.14 + 0.03 * (self.n % 4), 15.6)


@pytest.mark.asyncio
async def test_figures_that_wander_within_a_step_post_nothing(tmp_path, monkeypatch):
    import tui.screens.workspace as ws

    monkeypatch.setattr(ws, "HOST_S", 0.05)
    sampler = Noisy()
    posted = []
    root = tmp_path / "experiments"
    root.mkdir()
    app = TrainmonApp(Options(str(root), watch=False, system=lambda: sampler))

    def hook(message):  # (the hook sees a message once per dispatch: counted once by identity)
        if isinstance(message, ws.WorkspaceScreen.HostSampled) and all(m is not message for m in posted):
            posted.append(message)
    async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
        await ready(pilot)
        await until(pilot, lambda: sampler.n >= 10, what="ten samples")
        await pilot.pause()
        assert "CPU  35 %  mem  5.1/15.6 GiB" in header(app)
    assert [m.figures.cpu_percent for m in posted] == [35.0]  # ten samples, the figures shown once


# ---------------------------------------------------------------- the run detail's GPUs
@pytest.mark.asyncio
async def test_the_detail_names_the_gpus_the_run_uses(tmp_path):
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-gpu", total=3, scores=[1.0], state="finished")
    with open(paths.system, "ab") as f:
        for t, util in ((1.0, 40), (2.0, 91)):
            f.write(orjson.dumps({"t": t, "cpu_percent": 101.0, "rss_bytes": 2 * GiB, "host_cpu_percent": 30.0,
                                  "host_mem_percent": 40.0, "gpus": [
                                      {"index": 1, "util_percent": util, "mem_used_bytes": 12 * GiB,
                                       "mem_total_bytes": 24 * GiB}]}) + b"\n")
    app = TrainmonApp(Options(str(root), watch=False))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "history", None) is not None, what="the detail")
        title = app.screen.query_one("#system-title")
        await until(pilot, lambda: "GPU" in str(title.render()), what="the system title")
        assert str(title.render()) == "System  ·  GPU 1 (latest: GPU1 91 % 12/24 GiB)"


@pytest.mark.asyncio
async def test_a_new_figure_of_the_same_width_lays_nothing_out_again(tmp_path):
    """A new CPU figure repaints the figures alone: setting the boxes' display and width again (even
    to the same values) laid the screen out, and the runs table's scrollbar was redrawn with them
    (1,165 B to the terminal on every new figure of an idle 200-run screen, tui_scale --quick).
    Only the refreshes that show_host asks for count: the first figures' own layout may still be
    on its way (Textual applies a display change on idle), and it came after the count began once
    under make test."""
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-one", total=3, scores=[1.0, 0.5], state="finished")
    app = TrainmonApp(Options(str(root), watch=False, system=Fixed))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: "CPU" in header(app), what="the host's figures")
        bar = app.screen.query_one("#summary")
        layouts: list[bool] = []
        counting = False
        for box in bar.query(".host"):
            real_refresh = box.refresh

            def counted(*regions, _real=real_refresh, **kw):
                if counting:
                    layouts.append(bool(kw.get("layout")))
                return _real(*regions, **kw)

            box.refresh = counted
        counting = True
        bar.show_host(host(10.0, 5.14, 15.6))
        counting = False
        await pilot.pause()
        assert header(app).splitlines()[0].endswith("CPU  10 %  mem  5.1/15.6 GiB")
        assert layouts and not any(layouts)
