"""Compare: the marked runs' curves overlaid per metric (legend, stable colours), and their configs
side by side with the differing keys highlighted (``trainkit.lifecycle.compare``)."""

from __future__ import annotations

import os

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from trainkit import lifecycle
from trainkit.errors import UserError
from trainkit.lifecycle.experiments import MISSING
from tui.model.foreign import load_history
from tui.model.history import History
from tui.widgets.chart import Series, color_of
from tui.widgets.chart_view import ChartView


def config_table(cmp, only_differing: bool = False) -> Table:
    t = Table(expand=True, show_lines=False, box=None, padding=(0, 1))
    t.add_column("key", style="bold", no_wrap=True)
    for i, e in enumerate(cmp.experiments):
        t.add_column(Text(e.name, style=color_of(i)), overflow="fold")
    differing = set(cmp.differing)
    for key in cmp.keys:
        if key.startswith("_meta") or (only_differing and key not in differing):
            continue
        diff = key in differing
        vals = []
        for i in range(len(cmp.experiments)):
            v = cmp.value(i, key)
            shown = "—" if v is MISSING else str(v)
            vals.append(Text(shown, style="bold yellow" if diff else "dim"))
        t.add_row(Text(("≠ " if diff else "  ") + key, style="bold yellow" if diff else "dim"), *vals)
    return t


class CompareScreen(Screen):
    AUTO_FOCUS = ""
    BINDINGS = [Binding("escape", "back", "Back"), Binding("y", "logy", "Log-Y", tooltip="logarithmic y axis"),
                Binding("d", "differing", "Differing / all keys",
                        tooltip="the config keys that differ, or every key (it starts with those that differ)")]
    DEFAULT_CSS = """
    CompareScreen #chead { height: auto; padding: 0 1; background: $boost; }
    CompareScreen #ccharts { grid-size: 2; grid-gutter: 0 1; height: auto; }
    CompareScreen .section { text-style: bold; padding: 1 1 0 1; }
    """

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = sorted(keys, key=os.path.basename)
        self.histories: list[History] = []
        self.logy = False
        self.only_diff = True  # what differs is what a comparison is about (d: every key)
        self.comparison = None

    def compose(self) -> ComposeResult:
        yield Static(id="chead")
        with VerticalScroll():
            yield Static("Configs (≠: differs; d: only those / every key)", classes="section")
            yield Static(id="config-table")
            yield Grid(id="ccharts")
        yield Footer()

    def on_mount(self) -> None:
        legend = Text("Compare: ", style="bold")
        for i, k in enumerate(self.keys):
            legend.append("━ ", style=color_of(i))
            legend.append(os.path.basename(k) + "  ")
        self.query_one("#chead", Static).update(legend)
        self.load()

    @work(thread=True, exclusive=True, group="compare")
    def load(self) -> None:
        """Each run's tail and overview first (on screen at once), then each one's history read in
        full, the charts refined as it loads."""
        worker = get_current_worker()
        histories = [load_history(self.app.model, k, History.open) for k in self.keys]
        root = self.app.model.root
        try:
            cmp = lifecycle.compare([os.path.basename(k) for k in self.keys], root=root)
            note = None
        except (UserError, OSError) as e:
            cmp, note = None, str(e)
        self.app.call_from_thread(self._loaded, histories, cmp, note)
        for h in histories:
            if h.complete:
                continue

            def report(records, offset: int, h=h) -> None:
                part = History.snapshot(records)
                if not worker.is_cancelled:
                    self.app.call_from_thread(self._refined, h, part, offset)

            found = h.scan(report, lambda: worker.is_cancelled)
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._refined, h, found, h.tail_start)

    def _loaded(self, histories, cmp, note) -> None:
        self.histories, self.comparison = histories, cmp
        self.draw()
        self.query_one("#config-table", Static).update(config_table(cmp, self.only_diff) if cmp else
                                                  Text(f"configs not compared: {note}", style="yellow"))

    def _refined(self, history: History, found, offset: int) -> None:
        if history in self.histories:
            history.refine(found, offset)
            self.draw()

    def draw(self) -> None:
        names: list[str] = []
        for h in self.histories:
            names.extend(n for n in h.metric_names() if n not in names)
        done = min((h.progress() for h in self.histories), default=1.0)
        reading = "" if done >= 1.0 else f"  reading history {done:.0%}"
        grid = self.query_one("#ccharts", Grid)
        for cv in list(grid.query(ChartView)):
            cv.remove()
        views = [ChartView() for _ in names] or [ChartView()]
        grid.mount_all(views)
        if not names:
            views[0].plot([], title="no metrics logged yet")
        for cv, name in zip(views, names, strict=False):
            series = [Series(os.path.basename(h.path), h.series(name), color_of(i))
                      for i, h in enumerate(self.histories)]
            cv.plot(series, title=name.replace("epoch:", "") + (" (x: epoch)" if name.startswith("epoch:") else
                                                                 " (x: step)") + reading, logy=self.logy)

    def runs_changed(self, changes) -> None:
        mine = {c.name for c in changes} & set(self.keys)
        if mine and any([h.update() for h in self.histories if h.path in mine]):
            if any(h.reload for h in self.histories):  # a log truncated or replaced: read again
                self.load()
                return
            self.draw()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.draw()

    def action_differing(self) -> None:
        self.only_diff = not self.only_diff
        if self.comparison is not None:
            self.query_one("#config-table", Static).update(config_table(self.comparison, self.only_diff))
