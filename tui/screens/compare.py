"""Compare: the marked runs' numbers (best and its epoch, last, the report and its gates, state: the
figures ``trainkit experiments compare`` prints), their configs side by side with the differing
keys highlighted (``trainkit.lifecycle.compare``), and their curves overlaid per metric, each run
with its own colour and line style, the legend showing the part of each name that tells them apart."""

from __future__ import annotations

import math
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
from trainkit.formatting import fmt_sig
from trainkit.lifecycle.experiments import MISSING
from trainkit.runfolder import style_of as style_of_state
from tui.model.curves import WEIGHTS, ema, epoch_x, xy
from tui.model.foreign import load_history
from tui.model.history import History
from tui.widgets.chart import GLYPHS, Series, color_of, style_of
from tui.widgets.chart_view import ChartView
from tui.widgets.run_row import ELLIPSIS, shared_prefix


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def short_names(keys: list[str]) -> list[str]:
    """Each run's name without the prefix they all share (``…02-copy``): what tells them apart."""
    names = [os.path.basename(k) for k in keys]
    cut = shared_prefix(names)
    return [ELLIPSIS + n[cut:] if cut else n for n in names]


def _best_and_last(h) -> tuple[str, str]:
    """The best epoch of the monitored metric and the last epoch's value, from the history."""
    rows = h.epoch_rows() if hasattr(h, "epoch_rows") else []
    best = next((r for r in rows if r.best), None)
    monitor = getattr(h, "monitor", "")
    best_s = f"{monitor} {fmt_sig(best.values[monitor])} (epoch {best.epoch})" if best and monitor in best.values \
        else "-"
    last = rows[-1] if rows else None
    last_s = f"{fmt_sig(last.values[monitor])} (epoch {last.epoch})" if last and monitor in last.values else "-"
    return best_s, last_s


def numbers_table(keys: list[str], histories: list, cmp, views: list) -> Table:
    """One row per run: its line, best value and epoch (the checkpoint's, as ``trainkit experiments
    compare`` prints it; else the epochs'), last epoch's value, last loss, the run's report with
    its verdict, state."""
    t = Table(expand=True, box=None, padding=(0, 1))
    width = max((len(n) for n in short_names(keys)), default=3) + 3
    t.add_column("run", no_wrap=True, min_width=width)  # a name is never cut
    for col in ("best", "last", "last loss", "report (gates)", "state"):
        t.add_column(col, overflow="fold")
    compared = {e.name: e for e in cmp.experiments} if cmp is not None else {}
    for i, (key, short) in enumerate(zip(keys, short_names(keys), strict=True)):
        h = histories[i] if i < len(histories) else None
        best_s, last_s = _best_and_last(h) if h is not None else ("-", "-")
        e = compared.get(os.path.basename(key))
        if e is not None and e.best_epoch is not None and e.best_value is not None:
            best_s = f"{e.best_metric} {fmt_sig(e.best_value)} (epoch {e.best_epoch})"
        report = "-"
        if e is not None and e.report:
            rep = e.reports.get(e.report) or {}
            value = f"{rep['metric']} {fmt_sig(rep['value'])}" if rep.get("value") is not None else "-"
            report = f"{e.report}: {value} ({rep.get('verdict') or '?'})"
        loss = h.points("loss") if h is not None else []
        view = views[i]
        run = Text(GLYPHS[style_of(i)] + " ", style=color_of(i))
        run.append(short)
        t.add_row(run, best_s, last_s, fmt_sig(loss[-1][3]) if loss else "-", report,
                  Text(f"{view.symbol} {view.label}", style=style_of_state(view.state)) if view is not None else "-")
    return t


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
                        tooltip="the config keys that differ, or every key (it starts with those that differ)"),
                Binding("x", "xaxis", "X axis", show=False, tooltip="x axis: step, wall time since each run's start, "
                        "or epoch"),
                Binding("s", "smooth", "Smooth", show=False,
                        tooltip="smoothing on/off: an EMA over the step curves, the raw ones faint"),
                Binding("less_than_sign", "smooth_by(-1)", "Less smoothing", key_display="<", show=False,
                        tooltip="a smaller EMA weight"),
                Binding("greater_than_sign", "smooth_by(1)", "More smoothing", key_display=">", show=False,
                        tooltip="a larger EMA weight")]
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
        self.xmode = "step"  # step, time or epoch
        self.smooth_i = 0  # the EMA weight, an index of WEIGHTS (0: off)
        self.smooth_last = WEIGHTS.index(0.6)

    def compose(self) -> ComposeResult:
        yield Static(id="chead")
        with VerticalScroll():
            yield Static(id="numbers")
            yield Static("Configs (≠: differs; d: only those / every key)", classes="section")
            yield Static(id="config-table")
            yield Grid(id="ccharts")
        yield Footer()

    def on_mount(self) -> None:
        legend = Text("Compare: ", style="bold")
        for i, k in enumerate(self.keys):
            legend.append(GLYPHS[style_of(i)] + " ", style=color_of(i))
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
        self.draw_numbers()
        self.query_one("#config-table", Static).update(config_table(cmp, self.only_diff) if cmp else
                                                  Text(f"configs not compared: {note}", style="yellow"))

    def _refined(self, history: History, found, offset: int) -> None:
        if history in self.histories:
            history.refine(found, offset)
            self.draw()
            self.draw_numbers()

    def draw_numbers(self) -> None:
        views = [self.app.model.runs.get(k) for k in self.keys]
        self.query_one("#numbers", Static).update(numbers_table(self.keys, self.histories, self.comparison, views))

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
        labels = short_names(self.keys)
        weight = WEIGHTS[self.smooth_i]
        for cv, name in zip(views, names, strict=False):
            series = []
            for i, h in enumerate(self.histories):
                if name.startswith("epoch:"):
                    key = name[6:]
                    pts = [(x, float(r[key])) for r in h.epochs if _num(r.get(key))
                           and (x := epoch_x(r, self.xmode, h.start_time())) is not None]
                    series.append(Series(labels[i], pts, color_of(i), style=style_of(i)))
                    continue
                pts = xy(h.points(name), self.xmode, h.start_time())
                if weight:
                    series.append(Series(labels[i], pts, color_of(i), style=style_of(i), faint=True))
                    pts = ema(pts, weight)
                series.append(Series(labels[i], pts, color_of(i), style=style_of(i)))
            epoch = name.startswith("epoch:")
            x_label = {"step": "epoch" if epoch else "step", "epoch": "epochs done" if epoch else "epoch",
                       "time": "s since start"}[self.xmode]
            smoothing = f"  EMA {weight:g}" if weight and not epoch else ""
            cv.plot(series, title=f"{name.replace('epoch:', '')} (x: {x_label}){smoothing}{reading}", logy=self.logy)

    def runs_changed(self, changes) -> None:
        mine = {c.name for c in changes} & set(self.keys)
        if mine and any([h.update() for h in self.histories if h.path in mine]):
            if any(h.reload for h in self.histories):  # a log truncated or replaced: read again
                self.load()
                return
            self.draw()
            self.draw_numbers()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.draw()

    def action_xaxis(self) -> None:
        self.xmode = {"step": "time", "time": "epoch", "epoch": "step"}[self.xmode]
        self.draw()

    def action_smooth(self) -> None:
        if self.smooth_i:
            self.smooth_last, self.smooth_i = self.smooth_i, 0
        else:
            self.smooth_i = self.smooth_last
        self.draw()

    def action_smooth_by(self, by: int) -> None:
        self.smooth_i = min(max(self.smooth_i + by, 1), len(WEIGHTS) - 1)
        self.draw()

    def action_differing(self) -> None:
        self.only_diff = not self.only_diff
        if self.comparison is not None:
            self.query_one("#config-table", Static).update(config_table(self.comparison, self.only_diff))
