"""Raw records (``R`` in the run detail; LEET's ``inspect``): the run's ``metrics.jsonl`` line by
line, a list of the records (number, kind, step) beside the selected one's every key and value,
with the count of lines that could not be read. The file is indexed in a worker by byte offset in
bounded chunks (:class:`~tui.model.records.RecordIndex`) and each record read when it is shown,
so a log of any size opens at once; lines appended while the screen is open are indexed as they
come, and at the last record the selection follows them."""

from __future__ import annotations

import os
import time

import orjson
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from trainkit.runfolder import METRICS_FILE
from tui.model.records import RecordIndex, Row
from tui.model.runs import METRICS, RunChange

POST_EVERY_S = 0.25  # while indexing, how often the screen is told how far it got


def head_text(path: str, index: RecordIndex, selected: int | None, follow: bool) -> Text:
    """The file, where the selection is, the lines that could not be read, how far the index got."""
    t = Text("Raw records  ", style="bold")
    t.append(path)
    t.append("\n")
    if index.problem:
        t.append(f"⚠ {METRICS_FILE}: {index.problem}", style="yellow")
        return t
    if not index.count and index.done and not index.size:
        t.append(f"no {METRICS_FILE} yet (or it is empty)", style="dim")
        return t
    t.append(f"record {selected + 1 if selected is not None else '-'} of {index.count}")
    if not index.done:
        t.append(f"  ·  indexing {index.progress():.0%}", style="dim")
    t.append(f"  ·  {index.bad} unreadable line{'s' if index.bad != 1 else ''} (torn or malformed)",
             style="yellow" if index.bad else "dim")
    if index.torn:
        t.append("  ·  the last line is incomplete (read when its end is written)", style="dim")
    if follow:
        t.append("  ·  following new records", style="green")
    return t


def row_text(row: Row, selected: bool, width: int) -> Text:
    """A line of the list: the record's number, its kind and step."""
    step = f"step {row.step}" if row.step is not None else ""
    text = f"{row.index + 1:>9} {row.kind:<10.10} {step}"[:width].ljust(width)
    style = "reverse" if selected else "red" if row.record is None else ""
    return Text(text, style=style)


def record_text(row: Row | None) -> Text:
    """The record's every key and value (nested values as indented JSON), or the unreadable line."""
    if row is None:
        return Text("")
    t = Text(f"record {row.index + 1}  ·  at byte {row.offset}  ·  {row.length} bytes\n\n", style="dim")
    if row.record is None:
        shown = (row.raw or b"")[:4096].decode("utf-8", "replace")
        t.append("not a JSON object (a line torn by a crash, or malformed):\n", style="yellow")
        t.append(shown + (" …" if row.raw is None or len(row.raw) > 4096 else ""))
        return t
    width = max((len(str(k)) for k in row.record), default=0)
    for k, v in row.record.items():
        t.append(f"{str(k):<{width}}  ", style="bold cyan")
        if isinstance(v, str):
            t.append(v)
        else:
            t.append(orjson.dumps(v, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
                     .replace("\n", "\n" + " " * (width + 2)))
        t.append("\n")
    return t


class RecordsScreen(Screen):
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("up", "move(-1)", "Previous record", priority=True, show=False, tooltip="the record before"),
        Binding("down", "move(1)", "Next record", priority=True, show=False, tooltip="the record after"),
        Binding("pageup", "page(-1)", "Page up", priority=True, show=False, tooltip="a page of records back"),
        Binding("pagedown", "page(1)", "Page down", priority=True, show=False, tooltip="a page of records on"),
        Binding("home", "first", "First record", priority=True, show=False, tooltip="the first record"),
        Binding("end", "last", "Last record", priority=True, show=False,
                tooltip="the last record, following the records appended from now on"),
        Binding("g", "goto", "Go to step", tooltip="the first record at a step (or after it)"),
    ]
    DEFAULT_CSS = """
    RecordsScreen #rhead { height: auto; padding: 0 1; background: $boost; }
    RecordsScreen #rlist { width: 36; height: 1fr; border-right: vkey $primary-darken-2; }
    RecordsScreen #rbody-box { height: 1fr; padding: 0 1; }
    RecordsScreen #rgoto { dock: bottom; display: none; }
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.index = RecordIndex(os.path.join(key, METRICS_FILE))
        self.selected: int | None = None
        self.top = 0  # the first record of the list on screen
        self.follow = False  # at the last record: new records move the selection
        self.indexing = False
        self._again = False

    def compose(self) -> ComposeResult:
        yield Static(id="rhead")
        with Horizontal():
            yield Static(id="rlist")
            with VerticalScroll(id="rbody-box"):
                yield Static(id="rbody")
        yield Input(placeholder="go to step (the first record at that step or after)", id="rgoto")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.key
        self.draw()
        self.start_indexing()

    # ---------------------------------------------------------------- the index (a worker)
    def start_indexing(self) -> None:
        """One indexer at a time: a change seen while indexing makes it go on to the new end."""
        if self.indexing:
            self._again = True
            return
        self.indexing = True
        self.run_index()

    @work(thread=True, group="records")
    def run_index(self) -> None:
        worker = get_current_worker()
        posted = 0.0
        while True:
            reset = self.index.scan(cancelled=lambda: worker.is_cancelled)
            if worker.is_cancelled:
                return
            if reset or self.index.done or time.monotonic() - posted >= POST_EVERY_S:
                self.app.call_from_thread(self._indexed, reset)
                posted = time.monotonic()
            if self.index.done:
                if not self._again:
                    break
                self._again = False
        self.app.call_from_thread(self._index_finished)

    def _index_finished(self) -> None:
        self.indexing = False
        if self._again and self.is_attached:
            self._again = False
            self.start_indexing()

    def _indexed(self, reset: bool) -> None:
        if not self.is_attached:  # closed while the worker read on
            return
        count = self.index.count
        if reset:
            self.notify(f"{METRICS_FILE} was truncated or replaced: read again from its start", severity="warning")
            self.selected = min(self.selected, count - 1) if self.selected is not None and count else None
            self.top = 0
        if count and (self.selected is None or self.follow):
            self.selected = 0 if self.selected is None and not self.follow else count - 1
        self.draw()

    def runs_changed(self, changes: list[RunChange]) -> None:
        if any(ch.name == self.key and METRICS in ch.what for ch in changes):
            self.start_indexing()

    # ---------------------------------------------------------------- drawing
    def _page(self) -> int:
        return max(1, self.query_one("#rlist", Static).size.height or 20)

    def draw(self) -> None:
        self.query_one("#rhead", Static).update(head_text(os.path.join(self.key, METRICS_FILE), self.index,
                                                          self.selected, self.follow))
        listing = self.query_one("#rlist", Static)
        if self.selected is None:
            listing.update("")
            self.query_one("#rbody", Static).update("")
            return
        height = self._page()
        if self.selected < self.top:
            self.top = self.selected
        elif self.selected >= self.top + height:
            self.top = self.selected - height + 1
        width = max(10, (listing.size.width or 36) - 1)
        rows = self.index.rows(self.top, height)
        lines = Text()
        for i, row in enumerate(rows):
            if i:
                lines.append("\n")
            lines.append_text(row_text(row, row.index == self.selected, width))
        listing.update(lines)
        self.query_one("#rbody", Static).update(record_text(self.index.row(self.selected)))

    # ---------------------------------------------------------------- keys
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The list's keys are the step box's while it is open."""
        if action in ("move", "page", "first", "last") and isinstance(self.focused, Input):
            return False
        return True

    def _select(self, index: int) -> None:
        count = self.index.count
        if not count:
            return
        self.selected = min(max(index, 0), count - 1)
        self.follow = self.selected == count - 1
        self.query_one("#rbody-box", VerticalScroll).scroll_home(animate=False)
        self.draw()

    def action_move(self, by: int) -> None:
        self._select((self.selected or 0) + by)

    def action_page(self, by: int) -> None:
        self._select((self.selected or 0) + by * self._page())

    def action_first(self) -> None:
        self._select(0)

    def action_last(self) -> None:
        self._select(self.index.count - 1)

    def action_goto(self) -> None:
        box = self.query_one("#rgoto", Input)
        box.display = True
        box.value = ""
        self.set_focus(box)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.set_focus(None)
        text = event.value.strip()
        if not text:
            return
        try:
            step = int(text)
        except ValueError:
            self.notify(f"not a step: {text!r}", severity="warning")
            return
        found = self.index.find_step(step)
        if found is None:
            self.notify(f"no record at step {step} or after" + ("" if self.index.done else " (yet: still indexing)"),
                        severity="warning")
            return
        self._select(found)

    def action_back(self) -> None:
        box = self.query_one("#rgoto", Input)
        if box.display:
            box.display = False
            self.set_focus(None)
            return
        self.app.pop_screen()
