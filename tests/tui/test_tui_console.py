"""The console in trainmon (issue 26, section 2): the log panel's model without Textual (carriage-return
lines collapsed, colours kept and every other control sequence dropped, the line in progress, a
bounded tail that follows rotation; the search), then the run detail through Pilot: ``l`` goes
train.log -> console.log -> hidden, a console.log written by trainkit's own writer shows a progress
bar in its last state and coloured text without its codes, follows a live bar, and ``/`` searches."""

from __future__ import annotations

import os

import pytest
from tui_helpers import open_detail, until

from trainkit.console import Redraws, RotatingFile
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.model.console import ConsoleTail, Search, cleaned, plain

SIZE = (120, 36)


# ------------------------------------------------------------------------------------------------
# the model


@pytest.mark.parametrize("raw,shown", [
    ("plain", "plain"),
    ("bar 10%\rbar 20%\rbar 30%", "bar 30%"),
    ("done\r", "done"),
    ("\r\x1b[2K\x1b[1mepoch 1/3\x1b[0m", "\x1b[1mepoch 1/3\x1b[0m"),  # the line erase goes, the colours stay
    ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),
    ("\x1b]0;a title\x07text", "text"),
    ("bell\x07 and nul\x00", "bell and nul"),
    ("tab\tkept", "tab\tkept"),
])
def test_a_line_as_the_terminal_showed_it_last(raw, shown):
    assert cleaned(raw) == shown


def test_plain_is_the_visible_text():
    assert plain("\x1b[31mred\x1b[0m and \x1b[1mbold\x1b[0m") == "red and bold"


def write(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_the_tail_follows_new_lines_and_the_line_in_progress(tmp_path):
    path = tmp_path / "console.log"
    write(path, b"one\ntwo\r2\n")
    tail = ConsoleTail(str(path))
    assert tail.read() == (["one", "2"], True)
    write(path, b"\rbar 10%")
    assert tail.read() == ([], False) and tail.partial == "bar 10%"
    write(path, b"\rbar 60%")
    assert tail.read() == ([], False) and tail.partial == "bar 60%"
    write(path, b"\rbar 100%\nafter\n")
    assert tail.read() == (["bar 100%", "after"], False) and tail.partial == ""


def test_the_tail_starts_again_after_a_rotation_and_reads_bounded(tmp_path):
    path = tmp_path / "console.log"
    write(path, b"old\n")
    tail = ConsoleTail(str(path), max_bytes=1024)
    assert tail.read() == (["old"], True)
    os.replace(path, tmp_path / "console.log.1")
    write(path, b"new\n")
    assert tail.read() == (["new"], True)  # another file: what is shown is replaced
    write(path, b"".join(f"{i:05d} {'y' * 40}\n".encode() for i in range(100)))  # 4.6 KiB: more than one read
    lines, reset = tail.read()
    assert reset and lines[-1].startswith("00099") and len(lines) < 30  # its end, from a bounded read
    path.unlink()
    assert tail.read() == ([], True)


@pytest.mark.parametrize("query,line,spans", [
    ("loss", "loss 0.5 val_loss 0.6", [(0, 4), (13, 17)]),
    ("LOSS", "Loss", [(0, 4)]),
    ("red", "\x1b[31mred\x1b[0m text", [(0, 3)]),  # found in the visible text, not in the codes
    ("31m", "\x1b[31mred\x1b[0m", []),
    ("", "anything", []),
])
def test_search_spans(query, line, spans):
    assert Search(query).spans(line) == spans


def test_search_next_and_previous_wrap_around():
    s = Search("x")
    assert s.run(["x", "a", "x b", "c", "x"]) == [0, 2, 4]
    assert s.next(None, 1) == 0 and s.next(None, -1) == 4
    assert s.next(0, 1) == 2 and s.next(4, 1) == 0
    assert s.next(2, -1) == 0 and s.next(0, -1) == 4
    assert Search("zzz").next(None, 1) is None
    lines = ["x", "a", "x b", "c", "x"]
    assert s.run(lines + ["y", "x"], start=4) == [0, 2, 4, 6]  # the lines from 4 on searched again
    assert s.run(["x", "a", "x b", "c", "now none"], start=4) == [0, 2]  # a replaced last line no longer matches


# ------------------------------------------------------------------------------------------------
# the run detail


def console_file(path, chunks: list[bytes]) -> None:
    """Write ``chunks`` as trainkit's capture does (redraws collapsed, the capped file)."""
    out, redraws = RotatingFile(path), Redraws()
    for i, chunk in enumerate(chunks):
        out.write(redraws.feed(chunk, float(i) / 10))
    out.close()


def shown(log) -> list[str]:
    return [log.text_of(y).plain for y in range(len(log.lines))]


@pytest.mark.asyncio
async def test_l_shows_train_log_then_the_console_live_and_slash_searches_it(tmp_path):
    root = tmp_path / "experiments"
    paths = synthetic_run(root, "2026-01-01-chatty", total=10, scores=[1.0], state="running")
    paths.log.write_text("2026-01-01 10:00:00,000 INFO epoch 0 [1/10]  train_loss 1.0\n")
    console_file(paths.console, [b"hello from the user's print\n"]
                 + [f"\rtrain {p}%|{'#' * (p // 10)}|".encode() for p in range(0, 101, 10)] + [b"\n",
                 b"\x1b[31mred text\x1b[0m\n", b"UserWarning: careful\n"])
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_detail(pilot, str(paths.root))
        log = detail.query_one("#log")
        await pilot.press("l")
        await until(pilot, lambda: log.display and "train_loss 1.0" in " ".join(shown(log)), what="train.log")
        assert "train.log" in log.border_title and detail.focused is log

        await pilot.press("l")
        await until(pilot, lambda: "console.log" in log.border_title and "red text" in shown(log), what="console")
        lines = shown(log)
        assert lines == ["hello from the user's print", "train 100%|##########|", "red text", "UserWarning: careful"]
        assert not any("\x1b" in line or "[31m" in line for line in lines)  # rendered, not printed
        red = log.text_of(lines.index("red text"))
        assert [(s.start, s.end, s.style.color.number) for s in red.spans] == [(0, 8, 1)]  # drawn in red (ANSI 1)

        # a live progress bar: the line in progress is the newest line, replaced as it changes
        write(paths.console, b"\rstep 1/4")
        await until(pilot, lambda: shown(log)[-1] == "step 1/4", timeout=5, what="the live bar")
        write(paths.console, b"\rstep 3/4")
        await until(pilot, lambda: shown(log)[-1] == "step 3/4", timeout=5, what="the bar redrawn")
        assert len(log.lines) == 5
        write(paths.console, b"\rstep 4/4\nthe newest line\n")
        await until(pilot, lambda: shown(log)[-2:] == ["step 4/4", "the newest line"], timeout=5, what="completed")
        await until(pilot, lambda: log.scroll_y == log.max_scroll_y, what="followed")

        await pilot.press("slash", *"RED")
        await until(pilot, lambda: log.search.matches == [2], what="the match")
        await pilot.press("enter")
        assert detail.focused is log and "1 line(s) match" in log.border_title
        highlighted = log.text_of(2)
        assert any(span.start == 0 and span.end == 3 and "magenta" in str(span.style) for span in highlighted.spans)
        await pilot.press("slash", "backspace", "backspace", "backspace", *"e", "enter")
        assert log.search.matches == [0, 2, 3, 4, 5]  # every line with an "e" (not the bar), the newest current
        assert log.current == 5
        await pilot.press("N")
        assert log.current == 4
        await pilot.press("n", "n")
        assert log.current == 0  # wrapped around
        write(paths.console, b"\rbar 1\rbar 2\nthe end\n")  # lines that arrive during a search are searched
        await until(pilot, lambda: shown(log)[-2:] == ["bar 2", "the end"], timeout=5, what="more lines")
        assert log.search.matches == [0, 2, 3, 4, 5, 7]
        await pilot.press("slash", "escape")  # Escape leaves the search, not the run
        assert type(app.screen).__name__ == "DetailScreen" and detail.focused is log

        await pilot.press("l")
        assert not log.display and detail.log_shown is None
        await pilot.press("l")  # shown again: train.log first, read anew
        await until(pilot, lambda: log.display and "train_loss 1.0" in " ".join(shown(log)), what="train.log again")
