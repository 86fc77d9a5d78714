"""The run detail from the keyboard (issue 24, part 3): PgUp/PgDn scroll the page (not a nested
table that happens to have the focus), keys jump between sections, Home/End work in every list,
the best epoch and the early-stopping counter are in the header, and the log panel is a real
tail (the newest line visible, followed live, scrolled back on request)."""

from __future__ import annotations

import pytest
from tui_helpers import open_detail, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp

pytestmark = pytest.mark.asyncio
SIZE = (120, 36)
ES = {"metric": "val_loss", "mode": "min", "patience": 3, "min_delta": 0.0}


async def test_pages_sections_home_end_and_the_header(real_root):
    app = TrainmonApp(Options(str(real_root)))
    async with app.run_test(size=(100, 30)) as pilot:
        detail = await open_detail(pilot, str(real_root / "2026-01-01-base"))
        head = str(detail.query_one("#head").render())
        assert "best epoch" in head, head
        body = detail.query_one("#body")
        evals = detail.query_one("#eval-list")
        assert detail.focused is evals  # a nested table has the focus...
        await pilot.press("pagedown")
        assert body.scroll_y > 0  # ...and PgDn scrolls the page
        cursor = evals.cursor_row
        await pilot.press("pageup")
        assert body.scroll_y == 0 and evals.cursor_row == cursor
        await pilot.press("2")  # the epochs section: at the top, its table focused
        await until(pilot, lambda: detail.focused is detail.query_one("#epochs"), what="the epochs table")
        epochs = detail.query_one("#epochs")
        await pilot.press("end")
        assert epochs.cursor_row == epochs.row_count - 1 and epochs.row_count == 3
        await pilot.press("home")
        assert epochs.cursor_row == 0
        seen = []
        for _ in range(6):  # ] walks down the sections, one at a time
            before = body.scroll_y
            await pilot.press("right_square_bracket")
            await pilot.pause()
            seen.append(body.scroll_y >= before)
        assert all(seen)
        await pilot.press("6")
        await until(pilot, lambda: detail.focused is evals, what="the evaluations")
        await pilot.press("end")
        assert evals.cursor_row == len(detail.evals) - 1
        await pilot.press("home")
        assert evals.cursor_row == 0


async def test_the_header_has_the_best_epoch_and_the_early_stopping_counter(tmp_path):
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-es", total=10, scores=[1.0, 0.5, 0.6, 0.7], early_stopping=ES, state="running")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(pilot, str(root / "2026-01-01-es"))
        head = str(detail.query_one("#head").render())
        assert "best epoch 1 (val_loss 0.5)" in head and "no improvement 2/3" in head, head


async def test_the_log_is_a_real_tail(tmp_path):
    """The log showed one line at first, then hid the newest lines when long lines wrapped: now the
    newest line is visible, followed as lines are appended, and scrolling back stays put."""
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-log", total=10, scores=[1.0], state="running")
    lines = [f"epoch {i}: loss {1 / (i + 1):.4f} " + "x" * (150 if i % 3 == 0 else 10) for i in range(60)]
    paths.log.write_text("\n".join(lines) + "\n")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(pilot, str(paths.root))
        await pilot.press("l")
        log = detail.query_one("#log")
        await until(pilot, lambda: log.display and len(log.lines) == 60, what="the log's lines")
        await until(pilot, lambda: log.scroll_y == log.max_scroll_y and log.max_scroll_y > 0, what="the newest line")
        assert detail.focused is log
        with open(paths.log, "a") as f:
            f.write("epoch 60: the newest line\n")
        await until(pilot, lambda: log.lines[-1] == "epoch 60: the newest line", timeout=3, what="the appended line")
        await until(pilot, lambda: log.scroll_y == log.max_scroll_y, what="followed")
        await pilot.press("pageup", "pageup")
        back = log.scroll_y
        assert back < log.max_scroll_y
        with open(paths.log, "a") as f:
            f.write("epoch 61: another\n")
        await until(pilot, lambda: log.lines[-1] == "epoch 61: another", timeout=3, what="another line")
        assert log.scroll_y == back  # scrolled back: it stays where the user is
        await pilot.press("end")
        await until(pilot, lambda: log.scroll_y == log.max_scroll_y, what="the end again")
