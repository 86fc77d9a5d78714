"""Run detail: config summary, live status, a chart per metric (filter, log-Y, step/time, zoom),
system metrics, the training monitor (latest inference samples, alerts, layer health; ``S`` for
every sample), the epochs table, the live log (``l``) and the run's evaluations (``i``)."""

from __future__ import annotations

import math

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from trainkit.formatting import fmt_duration, fmt_num, fmt_sig
from trainkit.runfolder import style_of
from tui.model.evals import RUNNING, list_evals
from tui.model.history import History, log_tail
from tui.model.monitor import MonitorFiles
from tui.model.runs import CONFIG, EVALS, LOG, METRICS, MONITOR, ROW, SYSTEM, RunChange
from tui.widgets.chart import Series, color_of
from tui.widgets.chart_view import ChartView
from tui.widgets.glyphs import bar
from tui.widgets.monitor_rows import (
    ALERT_COLUMNS,
    LAYER_COLUMNS,
    SAMPLE_COLUMNS,
    alert_cells,
    layer_cells,
    sample_cells,
)

EVAL_LIVENESS_S = 2.0  # while an evaluation runs, how often to check that its process still lives
CONFIG_KEYS = ("task", "epochs", "lr", "batch_size", "optimizer", "lr_schedule.name", "early_stopping.metric",
               "early_stopping.patience", "device")
SYSTEM_SHOWN = ("cpu_percent", "rss_bytes", "host_cpu_percent", "host_mem_percent")


def head_text(view, now: float) -> Text:
    t = Text()
    t.append(f"{view.name}  ", style="bold")
    t.append(f"{view.symbol} {view.label}", style=style_of(view.state))
    t.append(f"  {view.reason}\n", style="dim")
    t.append(bar(view.fraction, 24), style="green" if view.live else "cyan")
    t.append(f" {view.epochs_text()} epochs {view.percent_text()}")
    t.append(f"  loss {fmt_sig(view.last_loss)}")
    if view.best_value is not None:
        t.append(f"  best {view.best_metric} {fmt_sig(view.best_value)}")
    if view.live:
        t.append(f"  step {view.step}  lr {fmt_sig(view.lr, 3)}  "
                 f"{view.throughput_text()}  ETA {fmt_duration(view.eta_s)}"
                 f"  heartbeat {view.age_text(now)} ago")
    t.append("\n")
    cfg = view.config
    parts = [f"{k}={cfg[k]}" for k in CONFIG_KEYS if cfg.get(k) is not None]
    parts += [f"{k}={v}" for k, v in cfg.items() if (k.startswith("model.")) and v is not None][:6]
    t.append("config: " + "  ".join(parts), style="dim")
    if view.alert:
        t.append(f"\n⚠ alert: {view.alert}", style="bold yellow")
    for w in view.warnings[:3]:
        t.append(f"\n⚠ {w}", style="yellow")
    if view.bad_lines:
        t.append(f"\n⚠ {view.bad_lines} unreadable line(s) skipped in the metrics log", style="yellow")
    return t


def system_title(info: dict) -> str:
    """The system section's title: under DDP the samples are one rank's process, and it says so."""
    ws = info.get("world_size")
    if isinstance(ws, int) and ws > 1:
        rank = info.get("rank", 0)
        return f"System (rank {rank} of {ws}: CPU and memory of rank {rank}'s process)"
    return "System"


class DetailScreen(Screen):
    AUTO_FOCUS = "#eval-list"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("y", "logy", "Log-Y"),
        Binding("x", "xaxis", "Step/time"),
        Binding("plus,equals_sign", "zoom_in", "Zoom +"),
        Binding("minus", "zoom_out", "Zoom -"),
        Binding("f", "metric_filter", "Metric filter"),
        Binding("l", "log", "Log"),
        Binding("i", "inspect", "Inspect eval"),
        Binding("S", "samples", "All samples"),
    ]
    DEFAULT_CSS = """
    DetailScreen #head { height: auto; padding: 0 1; background: $boost; }
    DetailScreen #charts { grid-size: 2; grid-gutter: 0 1; height: auto; }
    DetailScreen #system { grid-size: 2; grid-gutter: 0 1; height: auto; }
    DetailScreen .section { text-style: bold; padding: 1 1 0 1; }
    DetailScreen #epochs { height: auto; max-height: 16; }
    DetailScreen #eval-list { height: auto; max-height: 10; }
    DetailScreen .monitor { height: auto; max-height: 14; }
    DetailScreen #log { dock: bottom; height: 12; border: round $secondary; padding: 0 1; display: none; }
    DetailScreen #mfilter { margin: 0 1; display: none; }
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.history: History | None = None
        self.logy = False
        self.xtime = False
        self.last: int | None = None
        self.metric_filter = ""
        self.evals = []
        self._eval_timer = None
        self.monitor: MonitorFiles | None = None

    @property
    def view(self):
        return self.app.model.runs.get(self.key)

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield Input(placeholder="metric filter (substring; empty: all)", id="mfilter")
        with VerticalScroll(id="body"):
            yield Static("Metrics", classes="section")
            yield Grid(id="charts")
            yield Static("System", classes="section", id="system-title")
            yield Grid(id="system")
            yield Static("Inference samples (latest; S: all)", classes="section")
            yield DataTable(id="samples", classes="monitor", cursor_type="row")
            yield Static("Alerts", classes="section")
            yield DataTable(id="alerts", classes="monitor", cursor_type="row")
            yield Static("Layer health", classes="section")
            yield DataTable(id="layers", classes="monitor", cursor_type="row")
            yield Static("Epochs", classes="section")
            yield DataTable(id="epochs", cursor_type="row")
            yield Static("Evaluations", classes="section")
            yield DataTable(id="eval-list", cursor_type="row")
        yield Static(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.key
        self.draw_head()
        self.draw_evals()
        self.load()

    @work(thread=True, exclusive=True, group="history")
    def load(self) -> None:
        history = History.load(self.key)
        monitor = MonitorFiles(self.key)
        self.app.call_from_thread(self._loaded, history, monitor)

    def _loaded(self, history: History, monitor: MonitorFiles) -> None:
        self.history = history
        self.monitor = monitor
        self.draw_monitor()
        self.draw_charts()
        self.draw_epochs()

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
                self.draw_charts()
                self.draw_epochs()
            if MONITOR in ch.what and self.monitor is not None:
                self.draw_monitor(self.monitor.update())
            if LOG in ch.what and self.query_one("#log").display:
                self.draw_log()
            if EVALS in ch.what or ROW in ch.what:
                self.draw_evals()

    # ---------------------------------------------------------------- drawing
    def draw_head(self) -> None:
        view = self.view
        if view is not None:
            self.query_one("#head", Static).update(head_text(view, self.app.model.clock()))

    def _x(self, pts, t0: float | None):
        """Wall-time points as seconds since the run's start (one zero for every series)."""
        if not self.xtime or not pts:
            return pts
        t0 = pts[0][0] if t0 is None else t0
        return [(x - t0, y) for x, y in pts]

    def draw_charts(self) -> None:
        h = self.history
        if h is None:
            return
        grid = self.query_one("#charts", Grid)
        names = [n for n in h.metric_names() if self.metric_filter.lower() in n.lower()]
        self._sync(grid, len(names) or 1)
        views = list(grid.query(ChartView))
        xname = "s since start" if self.xtime else "step"
        t0 = h.start_time()
        if not names:
            views[0].plot([], title="no metrics logged yet" if not self.metric_filter else "no metric matches")
        for cv, name in zip(views, names, strict=False):
            pts = self._x(h.series(name, "time" if self.xtime else "step"), t0)
            label = name.replace("epoch:", "")
            x_label = xname if not name.startswith("epoch:") or self.xtime else "epoch"
            cv.plot([Series(label, pts, color_of(0))], title=f"{label} (x: {x_label})", logy=self.logy, last=self.last)
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
        self.query_one("#system-title", Static).update(system_title(h.system_info()))

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
        lines = log_tail(self.key, 200)
        box = self.query_one("#log", Static)
        height = max(1, box.size.height - 2 or 10)
        box.update(Text("\n".join(lines[-height:]) if lines else "(train.log is empty or missing)"))

    # ---------------------------------------------------------------- keys
    def action_back(self) -> None:
        if self.query_one("#mfilter").display:
            self.query_one("#mfilter").display = False
            self.query_one("#eval-list").focus()
            return
        self.app.pop_screen()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.draw_charts()

    def action_xaxis(self) -> None:
        self.xtime = not self.xtime
        self.draw_charts()

    def action_zoom_in(self) -> None:
        n = len(self.history.steps) if self.history else 0
        cur = self.last or max(n, 8)
        self.last = max(8, cur // 2)
        self.draw_charts()

    def action_zoom_out(self) -> None:
        n = len(self.history.steps) if self.history else 0
        if self.last is not None:
            self.last = None if self.last * 2 >= n else self.last * 2
        self.draw_charts()

    def action_metric_filter(self) -> None:
        box = self.query_one("#mfilter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.metric_filter = event.value.strip()
        self.draw_charts()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one("#eval-list").focus()

    def action_log(self) -> None:
        box = self.query_one("#log", Static)
        box.display = not box.display
        if box.display:
            self.draw_log()

    def action_samples(self) -> None:
        from tui.screens.samples import SamplesScreen

        self.app.push_screen(SamplesScreen(self.key))

    def action_inspect(self) -> None:
        from tui.screens.inspector import InspectorScreen

        chosen = self.chosen_eval()
        if chosen is None:
            self.notify("this run has no evaluation yet", severity="warning")
            return
        self.app.push_screen(InspectorScreen(chosen.path, self.key))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
