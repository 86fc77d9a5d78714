"""Compare: the marked runs' numbers (best and its epoch, last, the report and its gates, state: the
figures ``trainkit experiments compare`` prints), their configs side by side with the differing
keys highlighted (``trainkit.lifecycle.compare``; a key unset in every run is left out), and their
curves overlaid per metric, each run with its own colour and line style, the legend showing the
part of each name that tells them apart. The x axis is the step, wall time, epoch or the fraction
of each run's training (runs of different lengths end to end); a value cursor reads every run's
value at a place, and ``+``/``-`` zoom, panning at the cursor's edge (the detail's
:class:`~tui.model.chart_window.ChartWindow`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

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
from trainkit.formatting import fmt_duration, fmt_sig
from trainkit.lifecycle.experiments import MISSING
from trainkit.runfolder import style_of as style_of_state
from tui.model.alignment import Plan, fraction_of_epoch, positions, read_plan
from tui.model.chart_window import ChartWindow
from tui.model.curves import WEIGHTS, at, ema, epoch_x, nearest_step
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
    compared = dict(zip(keys, cmp.experiments, strict=True)) if cmp is not None else {}  # in the keys' order
    for i, (key, short) in enumerate(zip(keys, short_names(keys), strict=True)):
        h = histories[i] if i < len(histories) else None
        best_s, last_s = _best_and_last(h) if h is not None else ("-", "-")
        e = compared.get(key)
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


def unset_everywhere(cmp, key: str) -> bool:
    """No compared run sets ``key`` (missing or None in every one): not a row of the diff."""
    return all(cmp.value(i, key) in (MISSING, None) for i in range(len(cmp.experiments)))


def config_table(cmp, only_differing: bool = False) -> Table:
    t = Table(expand=True, show_lines=False, box=None, padding=(0, 1))
    t.add_column("key", style="bold", no_wrap=True)
    for i, e in enumerate(cmp.experiments):
        t.add_column(Text(e.name, style=color_of(i)), overflow="fold")
    differing = set(cmp.differing)
    for key in cmp.keys:
        if key.startswith("_meta") or (only_differing and key not in differing) or unset_everywhere(cmp, key):
            continue
        diff = key in differing
        vals = []
        for i in range(len(cmp.experiments)):
            v = cmp.value(i, key)
            shown = "—" if v is MISSING else str(v)
            vals.append(Text(shown, style="bold yellow" if diff else "dim"))
        t.add_row(Text(("≠ " if diff else "  ") + key, style="bold yellow" if diff else "dim"), *vals)
    return t


X_MODES = ("step", "time", "epoch", "fraction")  # the order x goes through them
STEP_X = {"step": "step", "time": "s since start", "epoch": "epoch", "fraction": "fraction of training"}
EPOCH_X = {"step": "epoch", "time": "s since start", "epoch": "epochs done", "fraction": "fraction of training"}


def place_words(x: float, mode: str) -> str:
    """The readout's words for the cursor's place on an x axis."""
    if mode == "fraction":
        return f"{x:.1%} of training"
    if mode == "time":
        return f"{fmt_duration(x)} since start"
    if mode == "epoch":
        return f"epoch {x:.2f}"
    return f"step {int(x)}"


def _at_cursor(curve: list[tuple[float, tuple]], xs: list[float], cursor: float | None):
    """A run's reference point at the cursor (the last at or before it); None before its first
    point or after its last (a shorter run has no value there)."""
    if cursor is None or not curve or not curve[0][0] <= cursor <= curve[-1][0]:
        return None
    return curve[nearest_step(xs, cursor)]


class CompareScreen(Screen):
    AUTO_FOCUS = ""
    BINDINGS = [Binding("escape", "back", "Back"), Binding("y", "logy", "Log-Y", tooltip="logarithmic y axis"),
                Binding("d", "differing", "Differing / all keys",
                        tooltip="the config keys that differ, or every key (a key no run sets is never listed)"),
                Binding("x", "xaxis", "X axis", show=False, tooltip="x axis: step, wall time since each run's start, "
                        "epoch, or fraction of each run's training"),
                Binding("s", "smooth", "Smooth", show=False,
                        tooltip="smoothing on/off: an EMA over the step curves, the raw ones faint"),
                Binding("less_than_sign", "smooth_by(-1)", "Less smoothing", key_display="<", show=False,
                        tooltip="a smaller EMA weight"),
                Binding("greater_than_sign", "smooth_by(1)", "More smoothing", key_display=">", show=False,
                        tooltip="a larger EMA weight"),
                Binding("plus,equals_sign", "zoom_in", "Zoom +", key_display="+", show=False,
                        tooltip="zoom in (the newest kept)"),
                Binding("minus", "zoom_out", "Zoom -", show=False, tooltip="zoom out"),
                Binding("0", "reset", "Reset view", show=False,
                        tooltip="whole history, no cursor (zoom, pan and cursor off)"),
                Binding("left", "cursor(-1)", "Cursor ←", priority=True, show=False,
                        tooltip="the value cursor back a 60th of the curves on screen (at a zoomed view's edge it "
                        "pans back)"),
                Binding("right", "cursor(1)", "Cursor →", priority=True, show=False,
                        tooltip="the value cursor on (the readout above the charts: every run's values there)"),
                Binding("shift+left", "cursor(-10)", "Cursor ← ×10", priority=True, show=False,
                        tooltip="the value cursor back ten times as far"),
                Binding("shift+right", "cursor(10)", "Cursor → ×10", priority=True, show=False,
                        tooltip="the value cursor on ten times as far")]
    DEFAULT_CSS = """
    CompareScreen #chead { height: auto; padding: 0 1; background: $boost; }
    CompareScreen #ccharts { grid-size: 2; grid-gutter: 0 1; height: auto; }
    CompareScreen .section { text-style: bold; padding: 1 1 0 1; }
    CompareScreen #creadout { padding: 0 1; height: auto; display: none; }
    """

    def __init__(self, keys: list[str]) -> None:
        super().__init__()
        self.keys = sorted(keys, key=os.path.basename)
        self.histories: list[History] = []
        self.plans: list[Plan] = [Plan() for _ in self.keys]  # each run's planned length (x: fraction)
        self.logy = False
        self.only_diff = True  # what differs is what a comparison is about (d: every key)
        self.comparison = None
        self.xmode = "step"  # one of X_MODES
        self.smooth_i = 0  # the EMA weight, an index of WEIGHTS (0: off)
        self.smooth_last = WEIGHTS.index(0.6)
        self.win = ChartWindow()  # zoom, pan and the value cursor over every run's reference curve

    def compose(self) -> ComposeResult:
        yield Static(id="chead")
        with VerticalScroll():
            yield Static(id="numbers")
            yield Static("Configs (≠: differs; d: only those / every key)", classes="section")
            yield Static(id="config-table")
            yield Static(id="creadout")
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
        views = [self.app.model.runs.get(k) for k in self.keys]
        plans = [read_plan(k, getattr(v, "total", None), getattr(v, "total_steps", None))
                 for k, v in zip(self.keys, views, strict=True)]
        try:  # each run's own folder, under whichever ROOT (or archive) holds it
            cmp = lifecycle.compare_folders([Path(k) for k in self.keys])
            note = None
        except (UserError, OSError) as e:
            cmp, note = None, str(e)
        self.app.call_from_thread(self._loaded, histories, plans, cmp, note)
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

    def _loaded(self, histories, plans, cmp, note) -> None:
        self.histories, self.plans, self.comparison = histories, plans, cmp
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

    # ---------------------------------------------------------------- the curves
    def _names(self) -> list[str]:
        names: list[str] = []
        for h in self.histories:
            names.extend(n for n in h.metric_names() if n not in names)
        return names

    def _curve(self, i: int, name: str) -> list[tuple[float, tuple]]:
        """Run ``i``'s step metric as (x, point) on the x axis, in x order."""
        h = self.histories[i]
        pts = h.points(name)
        xs = positions(pts, self.xmode, h.start_time(), self.plans[i])
        return [(x, p) for x, p in zip(xs, pts, strict=False) if x == x]

    def _epoch_x(self, i: int, record: dict) -> float | None:
        h = self.histories[i]
        if self.xmode == "fraction":
            return fraction_of_epoch(record["epoch"], self.plans[i], h.epochs[-1]["epoch"] if h.epochs else None)
        return epoch_x(record, self.xmode, h.start_time())

    def _reference(self) -> tuple[list[list], list[float]]:
        """Every run's reference curve (the first step metric: loss, when logged) and the sorted
        places of all of them: what zoom, pan and the cursor move over."""
        name = next((n for n in self._names() if not n.startswith("epoch:")), None)
        curves = [self._curve(i, name) if name else [] for i in range(len(self.histories))]
        return curves, sorted({x for c in curves for x, _ in c})

    def draw(self) -> None:
        names = self._names()
        done = min((h.progress() for h in self.histories), default=1.0)
        reading = "" if done >= 1.0 else f"  reading history {done:.0%}"
        grid = self.query_one("#ccharts", Grid)
        have = list(grid.query(ChartView))
        for cv in have[max(len(names), 1):]:
            cv.remove()
        views = have[:max(len(names), 1)] + [ChartView() for _ in range(max(len(names), 1) - len(have))]
        grid.mount_all(views[len(have):])
        if not names:
            views[0].plot([], title="no metrics logged yet")
        labels = short_names(self.keys)
        weight = WEIGHTS[self.smooth_i]
        refs, xs = self._reference()
        bounds = self.win.bounds(xs) or (-math.inf, math.inf)
        k = self.win.here(xs)
        cursor = xs[k] if k is not None else None
        here = [_at_cursor(c, [x for x, _ in c], cursor) for c in refs]
        # each run's epochs within the view (the epochs of its reference points on screen)
        spans = []
        for c in refs:
            inside = [p[1] for x, p in c if bounds[0] <= x <= bounds[1] and p[1] == p[1]]
            spans.append((min(inside), max(inside)) if inside and bounds[0] > -math.inf else (-math.inf, math.inf))
        values: list[list[str]] = [[] for _ in self.histories]
        for cv, name in zip(views, names, strict=False):
            cv.metric = name
            series = []
            epoch = name.startswith("epoch:")
            chart_cursor = None
            for i, h in enumerate(self.histories):
                if epoch:
                    key = name[6:]
                    recs = [r for r in h.epochs if _num(r.get(key)) and spans[i][0] <= r["epoch"] <= spans[i][1]]
                    pts = [(x, float(r[key])) for r in recs if (x := self._epoch_x(i, r)) is not None]
                    series.append(Series(labels[i], pts, color_of(i), style=style_of(i)))
                    before = [r for r in recs if here[i] is not None and r["epoch"] <= here[i][1][1]]
                    if before:
                        values[i].append(f"{key} {fmt_sig(float(before[-1][key]))} (epoch {before[-1]['epoch']})")
                        if chart_cursor is None:
                            chart_cursor = cursor if self.xmode in ("time", "fraction") else \
                                self._epoch_x(i, before[-1])
                    continue
                raw = [(x, p[3]) for x, p in self._curve(i, name)]
                smooth = ema(raw, weight) if weight else None
                if here[i] is not None and raw and raw[0][0] <= cursor <= raw[-1][0]:
                    near = at(raw, cursor)
                    words = f"{name} {fmt_sig(near[1])}"
                    if smooth:
                        words += f" (EMA {fmt_sig(at(smooth, cursor)[1])})"
                    values[i].append(words)
                    chart_cursor = cursor
                shown = [q for q in raw if bounds[0] <= q[0] <= bounds[1]]
                if smooth is not None:
                    series.append(Series(labels[i], shown, color_of(i), style=style_of(i), faint=True))
                    shown = [q for q in smooth if bounds[0] <= q[0] <= bounds[1]]
                series.append(Series(labels[i], shown, color_of(i), style=style_of(i)))
            x_label = (EPOCH_X if epoch else STEP_X)[self.xmode]
            smoothing = f"  EMA {weight:g}" if weight and not epoch else ""
            cv.plot(series, title=f"{name.replace('epoch:', '')} (x: {x_label}){smoothing}{reading}", logy=self.logy,
                    cursor=chart_cursor)
        self._draw_readout(cursor, here, values, labels)

    def _draw_readout(self, cursor, here, values: list[list[str]], labels: list[str]) -> None:
        """The cursor's place, then a line per run: its step there and every chart's value."""
        box = self.query_one("#creadout", Static)
        box.display = cursor is not None
        if cursor is None:
            return
        t = Text("▏ " + place_words(cursor, self.xmode), style="bold")
        for i, label in enumerate(labels):
            t.append("\n")
            t.append(GLYPHS[style_of(i)] + " ", style=color_of(i))
            t.append(label, style="bold")
            if here[i] is None:
                t.append("  no value here", style="dim")
                continue
            if self.xmode != "step":
                t.append(f"  step {int(here[i][1][0])}")
            for v in values[i]:
                t.append(f"  {v}")
        box.update(t)

    def runs_changed(self, changes) -> None:
        mine = {c.name for c in changes} & set(self.keys)
        if mine and any([h.update() for h in self.histories if h.path in mine]):
            if any(h.reload for h in self.histories):  # a log truncated or replaced: read again
                self.load()
                return
            self.draw()
            self.draw_numbers()

    # ---------------------------------------------------------------- keys
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.draw()

    def action_xaxis(self) -> None:
        self.xmode = X_MODES[(X_MODES.index(self.xmode) + 1) % len(X_MODES)]
        self.win.cursor = None  # a place on the old axis means nothing on the new one
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

    def action_zoom_in(self) -> None:
        self.win.zoom_in(len(self._reference()[1]))
        self.draw()

    def action_zoom_out(self) -> None:
        self.win.zoom_out(len(self._reference()[1]))
        self.draw()

    def action_reset(self) -> None:
        self.win.reset()
        self.draw()

    def on_chart_view_clicked(self, message: ChartView.Clicked) -> None:
        """A click on a chart puts the value cursor at the place under the pointer (the nearest place
        of the reference curves; on an epoch chart drawn by epoch, the last place of that epoch)."""
        name = message.chart.metric
        refs, xs = self._reference()
        if name is None or not xs:
            return
        x = message.x
        if name.startswith("epoch:") and self.xmode not in ("time", "fraction"):
            placed = [(abs(ex - x), r["epoch"]) for i, h in enumerate(self.histories) for r in h.epochs
                      if (ex := self._epoch_x(i, r)) is not None]
            if not placed:
                return
            epoch = min(placed)[1]
            within = [px for c in refs for px, p in c if p[1] == p[1] and p[1] <= epoch]
            x = max(within) if within else xs[0]
        self.win.cursor = xs[min(range(len(xs)), key=lambda j: abs(xs[j] - x))]
        self.draw()

    def action_cursor(self, by: int) -> None:
        """Move the value cursor (the first press puts it on the newest place); at a zoomed view's
        edge, pan through history."""
        if self.win.move(self._reference()[1], by):
            self.draw()

    def action_differing(self) -> None:
        self.only_diff = not self.only_diff
        if self.comparison is not None:
            self.query_one("#config-table", Static).update(config_table(self.comparison, self.only_diff))
