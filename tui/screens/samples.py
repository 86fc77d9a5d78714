"""Every inference sample of one run (``S`` in the run detail): samples.jsonl read from the start in
bounded chunks off the event loop, rows appended as they come, new samples appended live."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui.model.monitor import SamplesHistory
from tui.model.runs import MONITOR, RunChange
from tui.widgets.glyphs import pct_text
from tui.widgets.list_table import ListTable
from tui.widgets.monitor_rows import SAMPLE_COLUMNS, sample_cells


def share(samples: list[dict], key: str, what: str, none: str) -> str:
    """``what k/n (p%)`` over the samples where ``key`` is true or false (null: not checked, e.g. a
    profile with no pattern); ``none`` when no sample has it."""
    checked = [s.get(key) for s in samples if isinstance(s.get(key), bool)]
    if not checked:
        return none
    k, n = sum(checked), len(checked)
    rest = len(samples) - n
    return f"{what} {k}/{n} ({pct_text(k / n * 100)}" + (f", {rest} not checked)" if rest else ")")


def samples_head(run: str, samples: list[dict], done: bool) -> Text:
    n = len(samples)
    t = Text()
    t.append("inference samples  ", style="bold")
    t.append(run)
    t.append(f"\n{n} sample{'s' if n != 1 else ''}")
    if n:
        t.append(f"  ·  {share(samples, 'correct', 'correct', 'no expected answers')}"
                 f"  ·  {share(samples, 'pattern_ok', 'pattern ok', 'no pattern')}")
    if not done:
        t.append("  ·  reading…", style="dim")
    return t


class SamplesScreen(Screen):
    AUTO_FOCUS = "#all-samples"
    BINDINGS = [Binding("escape", "back", "Back")]
    DEFAULT_CSS = """
    SamplesScreen #shead { height: auto; padding: 0 1; background: $boost; }
    SamplesScreen #all-samples { height: 1fr; }
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.history = SamplesHistory(key)
        self.reading = False
        self._again = False

    def compose(self) -> ComposeResult:
        yield Static(id="shead")
        yield ListTable(id="all-samples")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.key
        self.query_one(DataTable).add_columns(*SAMPLE_COLUMNS)
        self.start_reading()

    def start_reading(self) -> None:
        """One reader at a time: a change seen while reading makes the reader go on."""
        if self.reading:
            self._again = True
            return
        self.reading = True
        self.draw_head()
        self.read()

    @work(thread=True, group="samples")
    def read(self) -> None:
        """Read to the end in chunks; each chunk's rows go to the screen as soon as they are read."""
        while True:
            recs = self.history.read_more()
            reset = self.history.tail.reset
            if recs or reset:
                self.app.call_from_thread(self._add, recs, reset)
            if self.history.done:
                if not self._again:
                    break
                self._again = False
        self.app.call_from_thread(self._finished)

    def _finished(self) -> None:
        self.reading = False
        if self._again:
            self._again = False
            self.start_reading()
        else:
            self.draw_head()

    def _add(self, recs: list[dict], reset: bool) -> None:
        table = self.query_one(DataTable)
        if reset:
            table.clear()
        for r in recs:
            table.add_row(*sample_cells(r, 40))
        self.draw_head()

    def draw_head(self) -> None:
        self.query_one("#shead", Static).update(samples_head(self.key, self.history.samples, not self.reading))

    def runs_changed(self, changes: list[RunChange]) -> None:
        if any(ch.name == self.key and MONITOR in ch.what for ch in changes):
            self.start_reading()

    def action_back(self) -> None:
        self.app.pop_screen()
