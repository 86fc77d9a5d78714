"""Run detail: config summary, live status (with the best epoch and the early-stopping counter),
a chart per metric (filter, log-Y, step/time, zoom), system metrics, the training monitor (latest
inference samples, alerts, layer health; ``S`` for every sample), the epochs table, the run's
evaluations (``i``) and the live log panel (``l``: ``train.log``, then ``console.log``, then hidden; a
real tail, ``/`` searches it). PgUp/PgDn scroll the page, ``[``/``]``
and ``1``-``7`` jump between sections, Home/End work in every list."""

from __future__ import annotations

import math
import os
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Log, Static
from textual.worker import get_current_worker

from trainkit.formatting import fmt_duration, fmt_num, fmt_sig
from trainkit.runfolder import CONSOLE_FILE, LOG_FILE, style_of
from tui.model.chart_window import ChartWindow
from tui.model.console import ConsoleTail
from tui.model.curves import WEIGHTS, at, ema, epoch_positions, nearest_step
from tui.model.evals import RUNNING, list_evals
from tui.model.foreign import load_history
from tui.model.history import History
from tui.model.monitor import MonitorFiles
from tui.model.runs import CONFIG, EVALS, LOG, METRICS, MONITOR, ROW, SYSTEM, RunChange
from tui.model.system import gpus_text, run_gpus
from tui.widgets.chart import Series, color_of
from tui.widgets.chart_view import ChartView
from tui.widgets.console_log import ConsoleLog
from tui.widgets.glyphs import bar
from tui.widgets.list_table import ListTable
from tui.widgets.monitor_rows import (
    ALERT_COLUMNS,
    LAYER_COLUMNS,
    SAMPLE_COLUMNS,
    alert_cells,
    layer_cells,
    sample_cells,
)

# the sections of the page, in order (the keys 1-7 jump to them): (name, the widget scrolled to)
SECTIONS = (("charts", "#metrics-title"), ("epochs", "#epochs-title"), ("samples", "#samples-title"),
            ("alerts", "#alerts-title"), ("layers", "#layers-title"), ("evaluations", "#evals-title"), ("log", "#log"))
SECTION_NAMES = tuple(name for name, _ in SECTIONS)
EVAL_LIVENESS_S = 2.0  # while an evaluation runs, how often to check that its process still lives
CONFIG_KEYS = ("task", "epochs", "lr", "batch_size", "optimizer", "lr_schedule.name", "early_stopping.metric",
               "early_stopping.patience", "device")
SYSTEM_SHOWN = ("cpu_percent", "rss_bytes", "host_cpu_percent", "host_mem_percent")
LOG_FILES = (LOG_FILE, CONSOLE_FILE)  # what the log panel shows, in the order l goes through them
DETAIL_ENV = "TRAINMON_DETAIL_FILE"  # benchmarks: "chart TIME" and "full TIME" lines once each is on screen


def _mark(what: str) -> None:
    marker = os.environ.get(DETAIL_ENV)
    if marker:
        with open(marker, "a") as f:
            f.write(f"{what} {time.time()!r}\n")


def head_text(view, now: float, history: History | None = None) -> Text:
    t = Text()
    t.append(f"{view.name}  ", style="bold")
    t.append(f"{view.symbol} {view.label}", style=style_of(view.state))
    if view.evaluation:
        t.append(f" {view.evaluation}", style=style_of(view.state))
    t.append(f"  {view.reason}\n", style="dim")
    t.append(bar(view.fraction, 24), style="green" if view.live else "cyan")
    t.append(f" {view.progress_words()} {view.percent_text()}")
    t.append(f"  loss {fmt_sig(view.last_loss)}")
    if view.best_value is not None and not progress_line(history):  # else the best epoch says it
        t.append(f"  best {view.best_metric} {fmt_sig(view.best_value)}")
    if view.live:
        eta = "paused" if view.state == "paused" else fmt_duration(view.eta_s)  # a paused run's ETA stands still
        t.append(f"  step {view.step}  lr {fmt_sig(view.lr, 3)}  "
                 f"{view.throughput_text()}  ETA {eta}"
                 f"  heartbeat {view.age_text(now)} ago")
    t.append(progress_line(history))
    t.append("\n")
    cfg = view.config
    parts = [f"{k}={cfg[k]}" for k in CONFIG_KEYS if cfg.get(k) is not None]
    parts += [f"{k}={v}" for k, v in cfg.items() if (k.startswith("model.")) and v is not None][:6]
    t.append(("config: " if view.source == "trainkit" else f"read-only {view.source} run (trainkit writes nothing "
              "there)  ") + "  ".join(parts), style="dim")
    if view.alert:
        t.append(f"\n⚠ alert: {view.alert}", style="bold yellow")
    for w in view.warnings[:3]:
        t.append(f"\n⚠ {w}", style="yellow")
    if view.bad_lines:
        t.append(f"\n⚠ {view.bad_lines} unreadable line(s) skipped in the metrics log", style="yellow")
    if view.metrics_problem:
        t.append(f"\n⚠ {view.metrics_problem}", style="yellow")
    return t


def progress_line(history: History | None) -> str:
    """``  best epoch 5 (val_loss 0.2306)  no improvement 2/3``: from the epochs table, as the
    trainer counted it."""
    rows = history.epoch_rows() if history is not None else []
    if not rows:
        return ""
    out = ""
    best = next((r for r in reversed(rows) if r.best), None)
    if best is not None:
        value = best.values.get(history.monitor)
        out += f"  best epoch {best.epoch}" + (f" ({history.monitor} {fmt_sig(value)})" if value is not None else "")
    last = rows[-1]
    if last.patience:
        out += f"  no improvement {last.bad_epochs}/{last.patience}" + (" (stopped)" if last.stopped else "")
    return out


def system_title(info: dict, gpus: list | None = None) -> str:
    """The system section's title: under DDP the samples are one rank's process, and it says so;
    then the GPUs the run's samples name (index, latest utilisation and memory)."""
    ws = info.get("world_size")
    title = "System"
    if isinstance(ws, int) and ws > 1:
        rank = info.get("rank", 0)
        title = f"System (rank {rank} of {ws}: CPU and memory of rank {rank}'s process)"
    return f"{title}  ·  {gpus_text(gpus)}" if gpus else title


class DetailScreen(Screen):
    AUTO_FOCUS = "#eval-list"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("y", "logy", "Log-Y", tooltip="logarithmic y axis on the charts"),
        Binding("x", "xaxis", "X axis", tooltip="x axis: step, wall time since the start, or epoch"),
        Binding("plus,equals_sign", "zoom_in", "Zoom +", key_display="+", tooltip="zoom in (the newest kept)"),
        Binding("minus", "zoom_out", "Zoom -", key_display="-", tooltip="zoom out"),
        Binding("0", "reset", "Reset view", show=False, tooltip="whole history, no cursor (zoom, pan and cursor off)"),
        Binding("left", "cursor(-1)", "Cursor ←", priority=True, show=False,
                tooltip="the value cursor back a 60th of the curve on screen (at a zoomed view's edge it pans back)"),
        Binding("right", "cursor(1)", "Cursor →", priority=True, show=False,
                tooltip="the value cursor on (the readout above the charts: step, wall time, each chart's value)"),
        Binding("shift+left", "cursor(-10)", "Cursor ← ×10", priority=True, show=False,
                tooltip="the value cursor back ten times as far"),
        Binding("shift+right", "cursor(10)", "Cursor → ×10", priority=True, show=False,
                tooltip="the value cursor on ten times as far"),
        Binding("s", "smooth", "Smooth", show=False,
                tooltip="smoothing on/off: an EMA over the step curves, the raw one faint"),
        Binding("less_than_sign", "smooth_by(-1)", "Less smoothing", key_display="<", show=False,
                tooltip="a smaller EMA weight"),
        Binding("greater_than_sign", "smooth_by(1)", "More smoothing", key_display=">", show=False,
                tooltip="a larger EMA weight"),
        Binding("f", "metric_filter", "Metric filter", tooltip="only the charts whose name has ..."),
        Binding("p", "pin", "Pin", show=False,
                tooltip="pin this run: its curves overlaid (dotted) in every other run's detail; p again unpins"),
        Binding("l", "log", "Log",
                tooltip="the live log: train.log, then console.log (what the run printed), then hidden"),
        Binding("slash", "log_search", "Search log", show=False,
                tooltip="search the log (while it has the focus): matches highlighted, n / N next / previous"),
        Binding("n", "log_match(1)", "Next match", show=False, tooltip="the log panel's next match"),
        Binding("N", "log_match(-1)", "Previous match", show=False, tooltip="the log panel's previous match"),
        Binding("i", "inspect", "Inspect eval", tooltip="the selected evaluation's conversations"),
        Binding("S", "samples", "All samples", tooltip="every inference sample of the run (live)"),
        Binding("R", "records", "Raw records", show=False,
                tooltip="the run's metrics.jsonl record by record, with the lines that could not be read"),
        Binding("right_square_bracket", "section(1)", "Next section", key_display="]",
                tooltip="jump to the next section"),
        Binding("left_square_bracket", "section(-1)", "Previous section", key_display="[", show=False,
                tooltip="jump to the previous section"),
        *(Binding(str(i + 1), f"goto({i})", f"{name}", show=False, tooltip=f"jump to {name}")
          for i, name in enumerate(SECTION_NAMES)),
        Binding("pageup", "page(-1)", "Page up", priority=True, show=False, tooltip="scroll the page up"),
        Binding("pagedown", "page(1)", "Page down", priority=True, show=False, tooltip="scroll the page down"),
    ]
    DEFAULT_CSS = """
    DetailScreen #head { height: auto; padding: 0 1; background: $boost; }
    DetailScreen #charts { grid-size: 2; grid-gutter: 0 1; height: auto; }
    DetailScreen #system { grid-size: 2; grid-gutter: 0 1; height: auto; }
    DetailScreen .section { text-style: bold; padding: 1 1 0 1; }
    DetailScreen #epochs { height: auto; max-height: 16; }
    DetailScreen #eval-list { height: auto; max-height: 10; }
    DetailScreen .monitor { height: auto; max-height: 14; }
    DetailScreen #log { dock: bottom; height: 12; border: round $secondary; display: none; }
    DetailScreen #log-search { dock: bottom; display: none; }
    DetailScreen #mfilter { margin: 0 1; display: none; }
    DetailScreen #readout { padding: 0 1; height: auto; }
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.history: History | None = None
        self.logy = False
        self.xmode = "step"  # the x axis: step, time or epoch
        self.win = ChartWindow()  # zoom, pan and the value cursor, over the reference curve's steps
        self.smooth_i = 0  # the EMA weight, an index of WEIGHTS (0: off)
        self.smooth_last = WEIGHTS.index(0.6)  # what s turns on
        self.pin: History | None = None  # the pinned run's history (another run's, pinned with p)
        self.metric_filter = ""
        self.evals = []
        self._eval_timer = None
        self.monitor: MonitorFiles | None = None
        # the log panel: which file it shows (an index of LOG_FILES; None: hidden) and its tails
        self.log_shown: int | None = None
        self.log_tails = [ConsoleTail(os.path.join(key, name)) for name in LOG_FILES]

    @property
    def view(self):
        return self.app.model.runs.get(self.key)

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield Input(placeholder="metric filter (substring; empty: all)", id="mfilter")
        with VerticalScroll(id="body"):
            yield Static("[1] Metrics", classes="section", id="metrics-title")
            yield Static(id="readout")
            yield Grid(id="charts")
            yield Static("System", classes="section", id="system-title")
            yield Grid(id="system")
            yield Static("[2] Epochs", classes="section", id="epochs-title")
            yield ListTable(id="epochs")
            yield Static("[3] Inference samples (latest; S: all)", classes="section", id="samples-title")
            yield ListTable(id="samples", classes="monitor")
            yield Static("[4] Alerts", classes="section", id="alerts-title")
            yield ListTable(id="alerts", classes="monitor")
            yield Static("[5] Layer health", classes="section", id="layers-title")
            yield ListTable(id="layers", classes="monitor")
            yield Static("[6] Evaluations (i: inspect)", classes="section", id="evals-title")
            yield ListTable(id="eval-list")
        yield Input(placeholder="search the log (Enter: keep the highlights, n / N: next / previous)", id="log-search")
        yield ConsoleLog(id="log", max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.key
        self.draw_head()
        self.draw_evals()
        self.load()
        self.load_pin()

    @work(thread=True, exclusive=True, group="history")
    def load(self) -> None:
        """Open the run's history (its tail and an overview: on screen at once), then read the rest
        of the metrics log, the charts refined as it loads."""
        worker = get_current_worker()
        history = load_history(self.app.model, self.key, History.open)
        monitor = MonitorFiles(self.key) if self.monitor is None else None
        self.app.call_from_thread(self._loaded, history, monitor)
        if history.complete:
            return

        def report(records, offset: int) -> None:
            part = History.snapshot(records)
            if not worker.is_cancelled:
                self.app.call_from_thread(self._refined, history, part, offset)

        found = history.scan(report, lambda: worker.is_cancelled)
        if found is not None and not worker.is_cancelled:
            self.app.call_from_thread(self._refined, history, found, history.tail_start)

    @work(thread=True, exclusive=True, group="pin")
    def load_pin(self) -> None:
        """The pinned run's whole history (bounded, as this run's), when another run is pinned."""
        key = self.app.pinned
        if key is None or key == self.key:
            return
        pin = load_history(self.app.model, key, History.load)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._pin_loaded, pin)

    def _pin_loaded(self, pin) -> None:
        self.pin = pin
        self.draw_charts()

    def _loaded(self, history: History, monitor: MonitorFiles | None) -> None:
        self.history = history
        if monitor is not None:
            self.monitor = monitor
            self.draw_monitor()
        self.draw_charts()
        self.draw_epochs()
        self.draw_head()
        self.call_after_refresh(_mark, "chart")
        if history.complete:
            self.call_after_refresh(_mark, "full")

    def _refined(self, history: History, found, offset: int) -> None:
        if history is not self.history:
            return  # an older read (the log was replaced since)
        history.refine(found, offset)
        self.draw_charts()
        self.draw_epochs()
        self.draw_head()
        if history.complete:
            self.call_after_refresh(_mark, "full")

    # ---------------------------------------------------------------- live (called by the app)
    def runs_changed(self, changes: list[RunChange]) -> None:
        for ch in changes:
            if ch.name != self.key:
                continue
            if ch.kind == "removed":
                self.query_one("#head", Static).update(Text(f"{self.key}: the run folder is gone", style="yellow"))
                continue
            if ch.what & {ROW, CONFIG}:
                self.draw_head()
            if ch.what & {METRICS, SYSTEM, ROW} and self.history is not None and self.history.update():
                if self.history.reload:  # truncated or replaced: its history is read again
                    self.load()
                    continue
                self.draw_charts()
                self.draw_epochs()
                self.draw_head()
            if MONITOR in ch.what and self.monitor is not None:
                self.draw_monitor(self.monitor.update())
            if self.pin is not None and ch.name == self.pin.path and ch.what & {METRICS, ROW} and self.pin.update():
                if self.pin.reload:
                    self.load_pin()
                else:
                    self.draw_charts()
            if LOG in ch.what and self.log_shown is not None:
                self.draw_log()
            if EVALS in ch.what or ROW in ch.what:
                self.draw_evals()

    # ---------------------------------------------------------------- drawing
    def draw_head(self) -> None:
        view = self.view
        if view is not None:
            self.query_one("#head", Static).update(head_text(view, self.app.model.clock(), self.history))

    @property
    def xtime(self) -> bool:
        return self.xmode == "time"

    @property
    def last(self) -> int | None:
        """Zoomed: the step charts show this many points of the reference curve."""
        return self.win.last

    def draw_charts(self) -> None:
        h = self.history
        if h is None:
            return
        grid = self.query_one("#charts", Grid)
        names = [n for n in h.metric_names() if self.metric_filter.lower() in n.lower()]
        self._sync(grid, len(names) or 1)
        views = list(grid.query(ChartView))
        t0 = h.start_time()
        reading = "" if h.complete else f"  reading history {h.progress():.0%}"
        weight = WEIGHTS[self.smooth_i]
        smoothing = f"  EMA {weight:g}" if weight else ""
        if not names:
            view = self.view
            problem = view.metrics_problem if view is not None else None
            views[0].plot([], title="no metric matches" if self.metric_filter else
                          f"⚠ {problem}" if problem else "no metrics logged yet")
        step_names = [n for n in h.metric_names() if not n.startswith("epoch:")]
        ref = h.points(step_names[0]) if step_names else []
        steps = [p[0] for p in ref]
        lo, hi = self.win.window(steps)
        s_lo, s_hi = self.win.bounds(steps) or (-math.inf, math.inf)  # zoomed
        at_cursor = self.win.here(steps)
        here = ref[at_cursor] if at_cursor is not None else None
        e_lo = ref[lo][1] if self.last and hi > lo and ref[lo][1] == ref[lo][1] else -math.inf
        e_hi = ref[hi - 1][1] if self.last and hi > lo and ref[hi - 1][1] == ref[hi - 1][1] else math.inf
        readout = []
        for cv, name in zip(views, names, strict=False):
            cv.metric = name
            label = name.replace("epoch:", "")
            if name.startswith("epoch:"):
                series, cursor, value = self._epoch_curve(h, label, t0, (e_lo, e_hi), here)
                if self.pin is not None:
                    series += self._pinned(self._epoch_curve(self.pin, label, self.pin.start_time(), (e_lo, e_hi),
                                                             None)[0])
                x_label = {"step": "epoch", "epoch": "epochs done", "time": "s since start"}[self.xmode]
                cv.plot(series, title=f"{label} (x: {x_label}){reading}", logy=self.logy, cursor=cursor)
            else:
                series, cursor, value = self._step_curve(h, name, t0, (s_lo, s_hi), here, weight)
                if self.pin is not None:
                    series += self._pinned(self._step_curve(self.pin, name, self.pin.start_time(), (s_lo, s_hi),
                                                            None, 0)[0])
                x_label = {"step": "step", "epoch": "epoch", "time": "s since start"}[self.xmode]
                cv.plot(series, title=f"{label} (x: {x_label}){smoothing}{reading}", logy=self.logy, cursor=cursor)
            if value:
                readout.append(value)
        self._draw_readout(here, t0, readout)
        sysgrid = self.query_one("#system", Grid)
        snames = [n for n in SYSTEM_SHOWN if n in h.system_names()] + \
            [n for n in h.system_names() if n not in SYSTEM_SHOWN][:2]
        self._sync(sysgrid, len(snames) or 1)
        sviews = list(sysgrid.query(ChartView))
        if not snames:
            sviews[0].plot([], title="no system samples yet")
        for i, (cv, name) in enumerate(zip(sviews, snames, strict=False)):
            pts = h.system_series(name)
            zero = t0 if t0 is not None else pts[0][0] if pts else 0.0
            pts = [(x - zero, y / 2 ** 20 if name.endswith("_bytes") else y) for x, y in pts]
            cv.plot([Series(name.replace("_bytes", " MiB"), pts, color_of(i + 2))],
                    title=f"{name.replace('_bytes', ' (MiB)')} (x: s since start)", last=self.last)
        self.query_one("#system-title", Static).update(system_title(h.system_info(), run_gpus(h.system)))

    def _xs(self, pts, t0) -> list[float]:
        """Where a step metric's points sit on the x axis in force (NaN: a point without a time)."""
        if self.xmode == "epoch":
            return epoch_positions(pts)
        if self.xmode == "time":
            zero = t0 if t0 is not None else 0.0
            return [p[2] - zero for p in pts]
        return [p[0] for p in pts]

    def on_chart_view_clicked(self, message: ChartView.Clicked) -> None:
        """A click on a metric's chart puts the value cursor on the step under the pointer (the
        reference curve's nearest point; on an epoch chart, the last step of the epoch clicked)."""
        h, name = self.history, message.chart.metric
        if h is None or name is None:  # a system chart, or nothing drawn yet
            return
        step_names = [n for n in h.metric_names() if not n.startswith("epoch:")]
        ref = h.points(step_names[0]) if step_names else []
        if not ref:
            return
        if name.startswith("epoch:") and self.xmode != "time":
            epoch = round(message.x) - (1 if self.xmode == "epoch" else 0)  # x: epochs done, or the epoch
            before = [i for i, p in enumerate(ref) if p[1] == p[1] and p[1] <= epoch]
            i = before[-1] if before else 0
        else:
            xs = self._xs(ref, h.start_time())
            placed = [(abs(x - message.x), i) for i, x in enumerate(xs) if x == x]
            if not placed:
                return
            i = min(placed)[1]
        self.win.cursor = ref[i][0]
        self.draw_charts()

    def _step_curve(self, h, name: str, t0, window, here, weight: float):
        """A step metric's series within the window of steps (raw, and smoothed over the whole
        curve), the cursor's x and the readout's words."""
        pts = h.points(name)
        xs = self._xs(pts, t0)
        kept = [(x, p) for x, p in zip(xs, pts, strict=True) if x == x]  # a point without a time has no place
        raw = [(x, p[3]) for x, p in kept]
        smooth = ema(raw, weight) if weight else None
        inside = [window[0] <= p[0] <= window[1] for _, p in kept]
        label = name.replace("epoch:", "")
        cursor = value = None
        if here is not None and kept:
            x, p = kept[nearest_step([p[0] for _, p in kept], here[0])]
            cursor, value = x, f"{label} {fmt_sig(p[3])}"
            near = at(smooth, x) if smooth else None
            if near is not None:
                value += f" (EMA {fmt_sig(near[1])})"
        raw = [q for q, keep in zip(raw, inside, strict=True) if keep]
        if smooth is None:
            return [Series(label, raw, color_of(0))], cursor, value
        smooth = [q for q, keep in zip(smooth, inside, strict=True) if keep]
        return [Series(label, raw, color_of(0), faint=True), Series(f"{label} EMA {weight:g}", smooth, color_of(0))], \
            cursor, value

    def _pinned(self, series: list[Series]) -> list[Series]:
        """The pinned run's curve as an overlay: its own colour, dotted, named as pinned."""
        name = os.path.basename(self.pin.path)
        return [Series(f"{name} (pinned)", s.points, color_of(1), style="dotted") for s in series if s.points]

    def _epoch_curve(self, h, key: str, t0, epochs, here):
        """An epoch metric's series (within the zoomed epochs), the cursor's x and the readout's
        words: the value of the cursor's epoch (the latest before it while it is not written)."""
        zero = t0 if t0 is not None else 0.0
        recs = [r for r in h.epochs if _finite(r.get(key)) and epochs[0] <= r["epoch"] <= epochs[1]]

        def x_of(r):
            if self.xmode == "time":
                return float(r["t"]) - zero if _finite(r.get("t")) else None
            return float(r["epoch"] + (1 if self.xmode == "epoch" else 0))

        pts = [(x, float(r[key])) for r in recs if (x := x_of(r)) is not None]
        cursor = value = None
        if here is not None and here[1] == here[1]:
            before = [r for r in recs if r["epoch"] <= here[1]]
            if before:
                r = before[-1]
                cursor = x_of(r)
                value = f"{key} {fmt_sig(float(r[key]))} (epoch {r['epoch']})"
        return [Series(key, pts, color_of(0))], cursor, value

    def _draw_readout(self, here, t0, values: list[str]) -> None:
        box = self.query_one("#readout", Static)
        box.display = here is not None
        if here is None:
            return
        step, epoch, t, _ = here
        t = Text("▏ ", style="bold")
        t.append(f"step {int(step)}", style="bold")
        if epoch == epoch:
            t.append(f"  epoch {int(epoch)}")
        if here[2] == here[2] and t0 is not None:
            t.append(f"  {fmt_duration(here[2] - t0)} since start")
        for v in values:
            t.append(f"  {v}")
        box.update(t)

    def _sync(self, grid: Grid, n: int) -> None:
        have = list(grid.query(ChartView))
        for cv in have[n:]:
            cv.remove()
        if len(have) < n:
            grid.mount_all([ChartView() for _ in range(n - len(have))])

    def draw_epochs(self) -> None:
        h = self.history
        table = self.query_one("#epochs", DataTable)
        rows = h.epoch_rows() if h else []
        keys = []
        for r in rows:
            keys.extend(k for k in r.values if k not in keys)
        keys = [k for k in keys if k != "lr"][:6]
        table.clear(columns=True)
        table.add_columns("epoch", *keys, "time", "best", "no-improve")
        if not rows:
            return
        for r in rows:  # each epoch with the patience in force then (a resume may have changed it)
            table.add_row(str(r.epoch), *[fmt_num(r.values.get(k)) for k in keys], fmt_duration(r.duration_s),
                          Text("★ best", style="bold green") if r.best else "",
                          (f"{r.bad_epochs}/{r.patience}" + (" stop" if r.stopped else "")) if r.patience else "-")

    def draw_evals(self) -> None:
        """The evaluations, one row each; the cursor stays on the same evaluation (by name) while
        they are rewritten, so ``i`` opens the one the user chose."""
        table = self.query_one("#eval-list", DataTable)
        chosen = self.chosen_eval()
        self.evals = list_evals(self.key)
        if not table.columns:
            table.add_columns("evaluation", "summary and gates")
        table.clear()
        if not self.evals:
            table.add_row("-", "no evaluation yet (trainkit eval RUN_DIR)")
        for e in self.evals:
            table.add_row(e.name, e.text(), key=e.name)
        names = [e.name for e in self.evals]
        if chosen is not None and chosen.name in names:
            table.move_cursor(row=names.index(chosen.name), animate=False)
        running = any(e.state == RUNNING for e in self.evals)
        if running and self._eval_timer is None:  # a killed evaluation changes no file: look again
            self._eval_timer = self.set_interval(EVAL_LIVENESS_S, self.draw_evals)
        elif not running and self._eval_timer is not None:
            self._eval_timer.stop()
            self._eval_timer = None

    def chosen_eval(self):
        """The evaluation under the list's cursor (None when there is none)."""
        if not self.evals:
            return None
        index = self.query_one("#eval-list", DataTable).cursor_row
        return self.evals[min(max(index, 0), len(self.evals) - 1)]

    def draw_monitor(self, parts: set[str] | None = None) -> None:
        """Redraw the monitor's tables (``parts``: only those; None: all)."""
        m = self.monitor
        if m is None:
            return
        if parts is None or "samples" in parts:
            self._fill("#samples", SAMPLE_COLUMNS, [sample_cells(r) for r in reversed(m.samples)],
                       "no inference samples (the task has no prompts, or samples are off)")
        if parts is None or "alerts" in parts:
            self._fill("#alerts", ALERT_COLUMNS, [alert_cells(r) for r in reversed(m.alerts)], "no alert")
        if parts is None or "layers" in parts:
            self._fill("#layers", LAYER_COLUMNS, [layer_cells(x) for x in m.layers.values()],
                       "no layer health recorded (monitor.layers_every_steps)")

    def _fill(self, selector: str, columns: tuple[str, ...], rows: list[list], empty: str) -> None:
        table = self.query_one(selector, DataTable)
        table.clear(columns=True)
        table.add_columns(*columns)
        if not rows:
            table.add_row("-", empty, *[""] * (len(columns) - 2))
        for row in rows:
            table.add_row(*row)

    def draw_log(self) -> None:
        """Append what the shown file gained (its line in progress as the newest line); follow the
        newest line unless the user scrolled back."""
        if self.log_shown is None:
            return
        log = self.query_one("#log", ConsoleLog)
        tail = self.log_tails[self.log_shown]
        lines, reset = tail.read()
        if reset:
            log.clear()
            if not lines and not tail.partial:
                lines = [tail.problem or f"({LOG_FILES[self.log_shown]} is empty or missing)"]
        follow = reset or log.scroll_y >= log.max_scroll_y - 1
        log.show(lines, tail.partial, follow=follow)

    # ---------------------------------------------------------------- keys
    def action_back(self) -> None:
        if self.query_one("#log-search").display:  # Escape in the log's search: back to the log
            self.query_one("#log-search").display = False
            self.set_focus(self.query_one("#log"))
            return
        if self.query_one("#mfilter").display:
            self.query_one("#mfilter").display = False
            self.query_one("#eval-list").focus()
            return
        self.app.pop_screen()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.draw_charts()

    def action_xaxis(self) -> None:
        self.xmode = {"step": "time", "time": "epoch", "epoch": "step"}[self.xmode]
        self.draw_charts()

    def _steps(self) -> list[float]:
        """The steps of the reference curve (the first step metric's: loss, when logged)."""
        h = self.history
        names = [n for n in h.metric_names() if not n.startswith("epoch:")] if h is not None else []
        return [p[0] for p in h.points(names[0])] if names else []

    def action_zoom_in(self) -> None:
        self.win.zoom_in(len(self._steps()))
        self.draw_charts()

    def action_zoom_out(self) -> None:
        self.win.zoom_out(len(self._steps()))
        self.draw_charts()

    def action_reset(self) -> None:
        self.win.reset()
        self.draw_charts()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The cursor keys are the text's and the log's while one of them has the focus."""
        if action == "cursor" and isinstance(self.focused, (Input, Log)):
            return False
        if action in ("log_search", "log_match"):  # the log panel's keys, while it has the focus
            return isinstance(self.focused, ConsoleLog)
        return True

    def action_cursor(self, by: int) -> None:
        """Move the value cursor ``by`` moves of a 60th of the curve on screen (the first press puts
        it on the newest step); at the zoomed view's edge, pan through history."""
        if self.win.move(self._steps(), by):
            self.draw_charts()

    def action_pin(self) -> None:
        name = os.path.basename(self.key)
        if self.app.pinned == self.key:
            self.app.pinned = None
            self.notify(f"{name} unpinned")
        else:
            self.app.pinned = self.key
            self.notify(f"{name} pinned: its curves are overlaid in every other run's detail (p here unpins)")

    def action_smooth(self) -> None:
        if self.smooth_i:
            self.smooth_last, self.smooth_i = self.smooth_i, 0
        else:
            self.smooth_i = self.smooth_last
        self.draw_charts()

    def action_smooth_by(self, by: int) -> None:
        self.smooth_i = min(max(self.smooth_i + by, 1), len(WEIGHTS) - 1)
        self.draw_charts()

    def action_metric_filter(self) -> None:
        box = self.query_one("#mfilter", Input)
        box.display = True
        self.set_focus(box)  # now: the keys typed right after f land in it

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-search":
            found = self.query_one("#log", ConsoleLog).find(event.value)
            self._log_title(f"{found} line(s) match" if event.value else "")
            return
        self.metric_filter = event.value.strip()
        self.draw_charts()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        if event.input.id == "log-search":
            self.set_focus(self.query_one("#log"))
            return
        self.query_one("#eval-list").focus()

    def action_log(self) -> None:
        """``l``: train.log, then console.log, then the panel hidden."""
        box = self.query_one("#log", ConsoleLog)
        shown = 0 if self.log_shown is None else self.log_shown + 1
        self.log_shown = shown if shown < len(LOG_FILES) else None
        box.display = self.log_shown is not None
        self.query_one("#log-search").display = False
        if self.log_shown is None:
            self.set_focus(self.query_one("#eval-list"))
            return
        box.clear()
        box.find("")
        self.log_tails[self.log_shown].restart()  # read its end again: it was not followed while hidden
        self._log_title()
        self.draw_log()
        self.set_focus(box)

    def _log_title(self, note: str = "") -> None:
        name = LOG_FILES[self.log_shown] if self.log_shown is not None else ""
        after = "hide" if self.log_shown == len(LOG_FILES) - 1 else LOG_FILES[(self.log_shown or 0) + 1]
        self.query_one("#log").border_title = f"[7] {name} (l: {after} · /: search)" + (f"  {note}" if note else "")

    def action_log_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.value = self.query_one("#log", ConsoleLog).search.query
        self.set_focus(box)

    def action_log_match(self, direction: int) -> None:
        log = self.query_one("#log", ConsoleLog)
        if log.jump(direction) is None and log.search.query:
            self.notify(f"no line of {LOG_FILES[self.log_shown or 0]} has {log.search.query!r}", severity="warning")

    def action_page(self, direction: int) -> None:
        """PgUp/PgDn scroll the page (the log when it has the focus), never a nested table."""
        target = self.focused if isinstance(self.focused, Log) else self.query_one("#body", VerticalScroll)
        (target.scroll_page_down if direction > 0 else target.scroll_page_up)(animate=False)

    def action_section(self, step: int) -> None:
        """Jump to the next (or previous) section after (before) the one at the top of the page."""
        body = self.query_one("#body", VerticalScroll)
        tops = [self.query_one(sel).region.y - body.region.y + body.scroll_y for _, sel in SECTIONS[:-1]]
        here = body.scroll_y
        if step > 0:
            later = [i for i, y in enumerate(tops) if y > here + 0.5]
            self.action_goto(later[0] if later else len(SECTIONS) - 1)
        else:
            earlier = [i for i, y in enumerate(tops) if y < here - 0.5]
            self.action_goto(earlier[-1] if earlier else 0)

    def action_goto(self, index: int) -> None:
        name, selector = SECTIONS[index]
        if name == "log":
            if self.log_shown is None:
                self.action_log()
            else:
                self.set_focus(self.query_one("#log"))
            return
        title = self.query_one(selector)
        self.query_one("#body", VerticalScroll).scroll_to_widget(title, animate=False, top=True)
        following = {"epochs": "#epochs", "samples": "#samples", "alerts": "#alerts", "layers": "#layers",
                     "evaluations": "#eval-list"}.get(name)
        if following:
            self.set_focus(self.query_one(following), scroll_visible=False)

    def action_samples(self) -> None:
        from tui.screens.samples import SamplesScreen

        self.app.push_screen(SamplesScreen(self.key))

    def action_records(self) -> None:
        from tui.screens.records import RecordsScreen

        self.app.push_screen(RecordsScreen(self.key))

    def action_inspect(self) -> None:
        from tui.screens.inspector import InspectorScreen

        chosen = self.chosen_eval()
        if chosen is None:
            self.notify("this run has no evaluation yet", severity="warning")
            return
        self.app.push_screen(InspectorScreen(chosen.path, self.key))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
