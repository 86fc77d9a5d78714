"""Raw records (issue 26, section 1; LEET's ``inspect``): ``R`` in the run detail browses the run's
metrics.jsonl record by record, counts the lines it could not read, follows appended lines, and
opens a log of any size from an index of byte offsets built in bounded chunks. Real files, the
real app through Pilot, a real subprocess for the memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from tui_helpers import ready, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.keys import keys_of
from tui.model.records import STRIDE, RecordIndex, iter_lines
from tui.screens.detail import DetailScreen
from tui.screens.records import RecordsScreen

SIZE = (120, 36)
REPO = Path(__file__).resolve().parents[2]


def step(i: int) -> bytes:
    return orjson.dumps({"kind": "step", "step": i, "epoch": i // 100, "loss": 1.0 / (1 + i), "lr": 1e-3,
                         "extra": {"grad": [i, i + 1]}, "t": 1000.0 + i}) + b"\n"


def make_run(root: Path, steps: int = 300) -> Path:
    """A finished run whose metrics.jsonl holds its 4 epoch records, then ``steps`` step records
    with a line torn by a crash (half a record, then the next one on a new line) after step 100
    and a malformed line after step 200."""
    paths = synthetic_run(root, "2026-01-01-a", total=4, scores=[0.9, 0.7, 0.5, 0.6], state="finished")
    with open(paths.metrics, "ab") as f:
        for i in range(steps):
            f.write(step(i))
            if i == 100:
                f.write(step(i)[:30] + b"\n")
            if i == 200:
                f.write(b"this is not json\n")
    return paths.root


def plain(screen, selector: str) -> str:
    """The text a Static of the screen was given (its Rich Text)."""
    content = screen.query_one(selector).content
    return getattr(content, "plain", str(content))


def head(screen) -> str:
    return plain(screen, "#rhead")


def body(screen) -> str:
    return plain(screen, "#rbody")


def listing(screen) -> list[str]:
    return plain(screen, "#rlist").splitlines()


async def open_records(app, pilot, key: str) -> RecordsScreen:
    await ready(pilot)
    app.screen.query_one("#runs").select_key(key)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail")
    await pilot.press("R")
    return await until(pilot, lambda: isinstance(app.screen, RecordsScreen) and app.screen.index.done
                       and app.screen.selected is not None and app.screen, what="the records")


@pytest.mark.asyncio
async def test_the_records_screen_shows_each_records_keys_and_the_unreadable_lines(tmp_path):
    run = make_run(tmp_path / "experiments")
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_records(app, pilot, str(run))
        assert "record 1 of 306" in head(screen)  # 4 epochs, 300 steps, a torn line, a malformed one
        assert "2 unreadable lines (torn or malformed)" in head(screen)
        assert listing(screen)[0].split() == ["1", "epoch"] and "kind" in body(screen)
        await pilot.press("end")
        text = body(screen)
        assert "record 306" in text and "following new records" in head(screen)
        for key, value in (("kind", "step"), ("step", "299"), ("epoch", "2"), ("lr", "0.001"), ("t", "1299.0")):
            assert any(line.split()[:2] == [key, value] for line in text.splitlines()), (key, text)
        assert '"grad": [' in text and "  299,\n" in text  # a nested value, indented
        await pilot.press("home", "down", "down", "down", "down")  # the first step record (N = 5)
        assert "record 5 of 306" in head(screen) and any(line.split()[:2] == ["step", "0"]
                                                          for line in body(screen).splitlines())
        assert "follow" not in head(screen)
        await pilot.press("pagedown")
        assert f"record {5 + screen._page()} of" in head(screen)
        await pilot.press("g", *"101", "enter")  # step 101 is record 107: the torn line (106) has no step
        assert "record 107 of" in head(screen)
        await pilot.press("up")
        assert "not a JSON object" in body(screen) and '{"kind":"step","step":100' in body(screen)
        assert any("unreadable" in line and line.split()[0] == "106" for line in listing(screen))
        await pilot.press("g", *"5000", "enter")  # no such step: said, the selection stays
        assert "record 106 of" in head(screen)
        await until(pilot, lambda: any("no record at step 5000" in n.message for n in app._notifications),
                    what="the notice")
        await pilot.press("escape")
        assert isinstance(app.screen, DetailScreen)


@pytest.mark.asyncio
async def test_the_records_screen_follows_appended_lines(tmp_path):
    run = make_run(tmp_path / "experiments", steps=20)
    app = TrainmonApp(Options(str(tmp_path / "experiments")))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_records(app, pilot, str(run))
        await pilot.press("end")
        assert "record 24 of 24" in head(screen)
        with open(run / "metrics.jsonl", "ab") as f:
            f.write(step(20)[:20])  # the line written in two parts: it is read once it is whole
            f.flush()
            await pilot.pause(0.2)
            f.write(step(20)[20:])
        await until(pilot, lambda: "record 25 of 25" in head(screen), what="the appended record")
        assert "0 unreadable lines" in head(screen) and "following new records" in head(screen)
        assert any(line.split()[:2] == ["step", "20"] for line in body(screen).splitlines())
        assert "incomplete" not in head(screen) and listing(screen)[-1].split()[-1] == "20"


def test_an_index_finds_records_across_its_blocks_and_starts_again_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(step(i) for i in range(3 * STRIDE)) + b"\n\n" + b"{torn\n")
    index = RecordIndex(str(path))
    scans = 0
    while not index.done:
        assert not index.scan(budget=8 * 1024)
        scans += 1
    assert scans > 3 and index.count == 3 * STRIDE + 1 and index.bad == 1 and len(index.lines) == 4
    rows = index.rows(STRIDE - 1, 3)  # across a block's edge
    assert [r.step for r in rows] == [STRIDE - 1, STRIDE, STRIDE + 1] and rows[0].kind == "step"
    assert index.rows(3 * STRIDE, 5)[0].kind == "unreadable" and len(index.rows(3 * STRIDE, 5)) == 1
    assert index.find_step(2 * STRIDE + 7) == 2 * STRIDE + 7 and index.find_step(10**9) is None
    with open(path, "ab") as f:
        f.write(step(9)[:25])  # an incomplete last line waits for its end
    assert not index.scan() and index.torn and index.done and index.count == 3 * STRIDE + 1 and index.bad == 1
    path.write_bytes(step(5))  # replaced by a shorter file
    assert index.scan() and index.count == 1 and index.bad == 0 and index.row(0).step == 5


def test_a_line_longer_than_kept_is_given_without_its_bytes(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"a\n" + b"x" * 200_000 + b"\nb\nc")
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        got = list(iter_lines(fd, 0, path.stat().st_size, 1000))
    finally:
        os.close(fd)
    assert got == [(0, 1, b"a"), (2, 200_000, None), (200_003, 1, b"b")]  # "c" has no newline yet


def _peak_rss_mb(path: Path) -> float:
    """Peak RSS (VmHWM) of a fresh process that opens the records screen on ``path``'s run, waits
    for the whole file to be indexed, and shows its last record."""
    code = """
import asyncio, sys
from textual.app import App
from tui.screens.records import RecordsScreen

class Probe(App):
    def on_mount(self):
        self.push_screen(RecordsScreen(sys.argv[1]))

async def main():
    app = Probe()
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(6000):
            await pilot.pause(0.02)
            s = app.screen
            if isinstance(s, RecordsScreen) and s.index.done and not s.indexing:
                break
        await pilot.press("end")
        s = app.screen
        assert s.index.done and "step" in s.query_one("#rbody").content.plain, "not indexed"
        print(s.index.count)
    print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    count, peak = out.stdout.split()[-2:]
    return int(count), int(peak) / 1024


@pytest.mark.slow
def test_a_200_mb_log_opens_without_being_read_whole(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    (small / "metrics.jsonl").write_bytes(step(0))
    pad = "x" * 340  # ~410-byte records: 500,000 of them
    with open(big / "metrics.jsonl", "wb") as f:
        for start in range(0, 500_000, 10_000):
            f.write(b"".join(orjson.dumps({"kind": "step", "step": i, "loss": 1.0 / (1 + i), "note": pad}) + b"\n"
                             for i in range(start, start + 10_000)))
    assert (big / "metrics.jsonl").stat().st_size > 200 * 10**6
    n_small, rss_small = _peak_rss_mb(small)
    n_big, rss_big = _peak_rss_mb(big)
    assert (n_small, n_big) == (1, 500_000)
    print(f"peak RSS: {rss_small:.0f} MB (1 record), {rss_big:.0f} MB (200 MB log)")
    assert rss_big - rss_small < 40, (rss_small, rss_big)  # the file whole would be 200 MB more


def test_the_help_lists_the_records_keys():
    keys = {k.keys: k.text for k in keys_of(RecordsScreen)}
    assert {"Home", "End", "PgUp", "PgDn", "g", "↑", "↓"} <= set(keys) and "step" in keys["g"]
    assert "metrics.jsonl" in {k.keys: k.text for k in keys_of(DetailScreen)}["R"]
