"""The runs workspace (main screen): header (with the host's CPU, memory and GPUs), the runs table,
filter/group inputs, the footer; on a wide terminal the highlighted run's loss chart (the marked
runs' overlaid) beside the table."""

from __future__ import annotations

import threading
import time

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from tui import actions
from tui.model.beside import WIDE, Histories, loss_points, overlaid
from tui.model.foreign import load_history
from tui.model.history import History
from tui.model.query import SORTS, FilterError, arrange, group_value, matches, parse_filter
from tui.model.runs import METRICS, ROW, RunChange
from tui.model.system import HostFigures, Shown
from tui.model.views import RunView
from tui.screens.confirm import ConfirmScreen
from tui.widgets.beside_chart import BesideChart
from tui.widgets.chart import Series, color_of, style_of
from tui.widgets.runs_table import RunsTable
from tui.widgets.summary import SummaryBar, summary_text

WRITES = {"archive", "promote", "stop", "pause", "relaunch", "restore"}
HOST_S = 3.0  # how often the header's host figures are sampled (in a thread)
BESIDE_DEBOUNCE_S = 0.15  # the cursor rests this long before the chart beside the table reads a history


class WorkspaceScreen(Screen):
    class HostSampled(Message):
        """New host figures for the header (posted by the sampling thread only when they changed)."""

        bubble = False

        def __init__(self, figures: HostFigures) -> None:
            super().__init__()
            self.figures = figures

    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("question_mark", "app.help", "Help", tooltip="every key of every screen"),
        Binding("slash", "filter", "Filter",
                tooltip="name words or lr>=1e-3 model.width=256 state=running (Enter keeps, Escape clears)"),
        Binding("s", "sort", "Sort", tooltip="cycle the sort: " + ", ".join(SORTS)),
        Binding("space", "mark", "Mark", tooltip="mark / unmark the run (actions act on the marked runs)"),
        Binding("G", "group", "Group", tooltip="group the rows by a config key"),
        Binding("c", "compare", "Compare", tooltip="compare the marked runs"),
        Binding("A", "archived", "Archived", tooltip="show / hide the archived runs"),
        Binding("a", "archive", "Archive", tooltip="archive the marked runs, else the current one (not live)"),
        Binding("P", "promote", "Promote", tooltip="promote a run's config, with the CLI's options"),
        Binding("x", "stop", "Stop", tooltip="ask a live run to stop (it checkpoints first)"),
        Binding("p", "pause", "Pause/resume", tooltip="pause a running run, resume a paused one"),
        Binding("r", "relaunch", "Relaunch", tooltip="resume a failed, crashed or stopped run in the background"),
        Binding("R", "restore", "Restore", tooltip="move an archived run back"),
        Binding("escape", "clear", "Clear filter / marks", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort = "name"
        self.filter_text = ""
        self.terms = []
        self.group: str | None = None
        self.marked: set[str] = set()
        self._input_mode: str | None = None
        self._shown = 0
        self.histories = Histories(lambda key: load_history(self.app.model, key, History.open))
        self._beside_timer = None
        self._host_stop = threading.Event()

    def compose(self) -> ComposeResult:
        model = self.app.model
        yield SummaryBar(id="summary")
        yield Input(placeholder="filter: name words, or lr>=1e-3 model.width=256 state=running", id="query")
        with Horizontal(id="body"):
            with Vertical(id="list"):
                yield RunsTable(clock=model.clock, id="runs")
                yield Static("loading runs…", id="empty")
            yield BesideChart(id="beside")
        if self.app.readonly:
            yield Static("read-only: actions are off (no key writes anything)", id="readonly-note")
        yield Footer()

    def on_mount(self) -> None:
        try:
            table = self.query_one(RunsTable)
        except NoMatches:  # the app quit (a Ctrl-C) while the screen was being put together
            return
        self.query_one("#query", Input).display = False
        table.focus()
        self.refresh_summary()
        self._layout_beside(self.app.size.width)
        if self.app.system_sampler is not None:
            self.sample_host(self.app.system_sampler)
        if self.app.model.loaded:
            self.model_loaded()

    def on_unmount(self) -> None:
        self._host_stop.set()

    @work(thread=True, exclusive=True, group="host")
    def sample_host(self, make_sampler) -> None:
        """The host's figures every ``HOST_S`` seconds (the first after one second: the CPU % is
        over that time), averaged over the last few and steadied, posted only when what is shown
        changes: an idle host repaints nothing."""
        worker = get_current_worker()
        sampler = make_sampler()  # NVML's start can take a while: here, never on the event loop
        shown = Shown()
        wait = min(1.0, HOST_S)
        while not self._host_stop.wait(wait) and not worker.is_cancelled:
            wait = HOST_S
            if shown.add(sampler.sample()):
                self.post_message(self.HostSampled(shown.figures))

    def on_workspace_screen_host_sampled(self, message: HostSampled) -> None:
        self.query_one(SummaryBar).show_host(message.figures)
        if len(self.app.model.roots) > 1:  # the figures' width may leave the ROOTs another room
            self.refresh_summary()

    # ---------------------------------------------------------------- model hooks (called by the app)
    def model_loaded(self) -> None:
        self.rebuild()

    def watch_mode_changed(self) -> None:
        self.refresh_summary()

    def runs_changed(self, changes: list[RunChange]) -> None:
        found = self.query(RunsTable)
        if not found:  # the app is shutting down (its widgets already gone): nothing to draw
            return
        table = found.first()
        model = self.app.model
        rebuild = False
        for ch in changes:
            if ch.kind != "updated":
                rebuild = True
                break
            view = model.runs.get(ch.name)
            if view is None or not (ch.what & {ROW, METRICS}):
                continue
            shown = table.update_run(view)
            if shown != (matches(self.terms, view) and (model.show_archived or not view.archived)):
                rebuild = True
                break
        if rebuild:
            self.rebuild()
        self.refresh_summary()
        self._follow_beside(changes)

    # ---------------------------------------------------------------- drawing
    def views(self) -> list[RunView]:
        model = self.app.model
        return arrange([v for v in model.runs.values() if model.show_archived or not v.archived],
                       terms=self.terms, sort=self.sort, group=self.group)

    def rebuild(self) -> None:
        table = self.query_one(RunsTable)
        views = self.views()
        table.marked = self.marked
        group = self.group
        table.show(views, (lambda v: f"{group} = {group_value(v, group)}") if group else None)
        empty = self.query_one("#empty", Static)
        model = self.app.model
        if not model.loaded:
            empty.update("loading runs…")
        elif not model.runs:
            empty.update(f"No runs under {', '.join(model.roots)} yet. Start one with `trainkit train CONFIG`; "
                         "it appears here by itself.")
        elif not views:
            empty.update("No run matches the filter (Escape clears it).")
        empty.display = not views
        table.display = bool(views)
        self._shown = len(views)
        self.refresh_summary()
        self._beside_soon()

    def refresh_summary(self) -> None:
        model = self.app.model
        bar = self.query_one(SummaryBar)
        bar.show(summary_text(
            model.summary(), root=model.roots, mode=self.app.watch_mode, readonly=self.app.readonly,
            shown=self._shown, filt=self.filter_text, sort=self.sort, group=self.group,
            pending=model.pending, archived=model.show_archived, width=bar.room(self.app.size.width)))

    # ---------------------------------------------------------------- the chart beside the table (wide)
    def on_resize(self, event: events.Resize) -> None:
        self._layout_beside(event.size.width)
        self.refresh_summary()  # several ROOTs are named as the new width allows

    def on_screen_resume(self) -> None:
        self._layout_beside(self.app.size.width)  # resized while another screen was on view
        self.refresh_summary()

    def _layout_beside(self, width: int) -> None:
        """Wide: the chart beside the table, drawn; narrow: hidden, nothing read or kept for it."""
        wide = width >= WIDE
        if wide == self.has_class("-wide"):
            return
        self.set_class(wide, "-wide")
        if wide:
            self._beside_soon()
            return
        if self._beside_timer is not None:
            self._beside_timer.stop()
            self._beside_timer = None
        self.workers.cancel_group(self, "beside")
        self.histories.clear()
        self.query_one(BesideChart).plot([], title="")

    def on_data_table_row_highlighted(self, event) -> None:
        self._beside_soon()

    def beside_keys(self) -> list[str]:
        """The runs the chart beside the table draws: the highlighted one, then the marked ones."""
        table = self.query_one(RunsTable)
        return overlaid(table.current_key(), self.marked, [v.path for v in table.visible_views()])

    def _beside_soon(self) -> None:
        """Draw the chart once the cursor rests (holding an arrow key reads no file per row)."""
        if not self.has_class("-wide"):
            return
        if self._beside_timer is not None:
            self._beside_timer.stop()
        self._beside_timer = self.set_timer(BESIDE_DEBOUNCE_S, self._beside_due)

    def _beside_due(self) -> None:
        self._beside_timer = None
        if not self.has_class("-wide"):
            return
        keys = self.beside_keys()
        missing = self.histories.missing(keys)
        if missing:
            self.load_beside(keys, missing)  # drawn once read (the picture before stays until then)
        else:
            self.draw_beside()

    @work(thread=True, exclusive=True, group="beside")
    def load_beside(self, keys: list[str], missing: list[str]) -> None:
        """Open the histories the chart lacks (the detail's bounded first read: the tail and an
        overview of the rest), off the event loop."""
        worker = get_current_worker()
        found = {}
        for key in missing:
            if worker.is_cancelled:
                return
            try:
                found[key] = self.histories.open(key)
            except Exception:  # a folder that vanished or cannot be read: its curve is left out
                continue
        if not worker.is_cancelled:
            self.app.call_from_thread(self._beside_loaded, keys, found)

    def _beside_loaded(self, keys: list[str], found: dict) -> None:
        if not self.has_class("-wide"):
            return
        for key, history in found.items():
            self.histories.put(key, history, keep=keys)
        self.draw_beside()

    def draw_beside(self) -> None:
        """The loss of the runs :meth:`beside_keys` names that are read, each in its own colour and
        line style (the highlighted one solid), named by what tells them apart."""
        from tui.screens.compare import short_names

        keys = [k for k in self.beside_keys() if k in self.histories]
        names = short_names(keys) if len(keys) > 1 else [k.rsplit("/", 1)[-1] for k in keys]
        series = [Series(name, loss_points(self.histories.get(k)), color_of(i), style=style_of(i))
                  for i, (k, name) in enumerate(zip(keys, names, strict=True))]
        self.query_one(BesideChart).plot(series, title="loss (x: step)" + (f"  ·  {len(keys)} runs" if len(keys) > 1
                                                                           else ""))

    def _follow_beside(self, changes: list[RunChange]) -> None:
        """New records of a run whose history is kept: read what it appended (from the offset
        read so far), and draw them when its curve is on view."""
        if not self.has_class("-wide"):
            return
        grew = [ch.name for ch in changes if ch.kind == "updated" and METRICS in ch.what and ch.name in self.histories]
        changed = {k for k in grew if self.histories.follow(k)}
        if not changed:
            return
        drawn = self.beside_keys()
        if self.histories.missing(drawn):
            self._beside_soon()  # a log replaced: opened again
        elif changed & set(drawn):
            self.draw_beside()

    # ---------------------------------------------------------------- keys
    def check_action(self, action: str, parameters) -> bool | None:
        if action in WRITES and self.app.readonly:
            return False  # off (and out of the footer); on_key says so when the key is pressed
        return True

    def on_key(self, event: events.Key) -> None:
        """Read-only: an action key says that its action is off, in one line."""
        if not self.app.readonly or self._input_mode is not None:
            return
        for b in self.BINDINGS:
            if b.action in WRITES and event.key in b.key.split(","):
                event.stop()
                self.notify(f"read-only: {b.action} is off", severity="warning", timeout=3)
                return

    def selected(self) -> list[RunView]:
        """The marked runs, else the run under the cursor."""
        model = self.app.model
        if self.marked:
            return [model.runs[k] for k in self.marked if k in model.runs]
        key = self.query_one(RunsTable).current_key()
        return [model.runs[key]] if key in model.runs else []

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.rebuild()
        self.notify(f"sorted by {self.sort}", timeout=1.5)

    def action_filter(self) -> None:
        self._open_input("filter", self.filter_text,
                         "filter: name words, or lr>=1e-3 model.width=256 state=running")

    def action_group(self) -> None:
        self._open_input("group", self.group or "", "group by a config key (e.g. model.width); empty: no groups")

    def _open_input(self, mode: str, value: str, placeholder: str) -> None:
        """Open the input and focus it now (``focus()`` would wait a turn of the loop), so that the
        key typed right after this one goes to it."""
        box = self.query_one("#query", Input)
        self._input_mode = mode
        box.placeholder = placeholder
        box.value = value
        box.cursor_position = len(value)
        box.border_title = mode
        box.display = True
        self.set_focus(box)

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._input_mode != "filter":
            return
        try:
            self.terms = parse_filter(event.value)
        except FilterError as e:
            event.input.border_subtitle = str(e)
            return
        event.input.border_subtitle = ""
        self.filter_text = event.value.strip()
        self.rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._input_mode == "group":
            self.group = event.value.strip() or None
            self.rebuild()
        self._close_input()
        table = self.query_one(RunsTable)
        if table.row_count:
            table.move_cursor(row=0, animate=False)

    def _close_input(self) -> None:
        box = self.query_one("#query", Input)
        box.display = False
        self._input_mode = None
        self.set_focus(self.query_one(RunsTable))

    def action_clear(self) -> None:
        if self._input_mode == "filter" or self.filter_text:
            self.filter_text, self.terms = "", []
            self.query_one("#query", Input).value = ""
            self.rebuild()
        if self._input_mode:
            self._close_input()
        elif self.marked:
            self.marked.clear()
            self.rebuild()

    def action_archived(self) -> None:
        model = self.app.model
        model.show_archived = not model.show_archived
        model.refresh(None, budget_s=None)
        if not model.show_archived:
            model.drop_archived()
        self.marked.clear()
        self.rebuild()
        self.notify("showing archived runs (dim, marked archived)" if model.show_archived else "archived runs hidden",
                    timeout=2)

    def action_mark(self) -> None:
        table = self.query_one(RunsTable)
        key = table.current_key()
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        table.marked = self.marked
        table.update_run(self.app.model.runs[key])
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)
        self._beside_soon()

    def action_open(self) -> None:
        from tui.screens.detail import DetailScreen

        key = self.query_one(RunsTable).current_key()
        if key is not None:
            self.app.push_screen(DetailScreen(key))

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_open()

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        views = self.selected()
        if len(views) < 2:
            self.notify("mark two or more runs with space to compare them", severity="warning")
            return
        self.app.push_screen(CompareScreen([v.path for v in views]))

    # ---------------------------------------------------------------- actions (through a modal)
    def _per_root(self, plan_one, **options):
        """A plan maker over the selected runs: each ROOT's runs planned with their own ROOT (the
        one they are under, or whose archive holds them)."""
        return lambda vs: actions.per_root(plan_one, vs, self.app.model.home_of, **options)

    def action_archive(self) -> None:
        self._act(self._per_root(actions.plan_archive), verb="archive")

    def action_restore(self) -> None:
        self._act(self._per_root(actions.plan_restore), verb="restore")

    def action_promote(self) -> None:
        from tui.screens.promote import PromoteScreen

        views = self.selected()
        if self.app.readonly:
            return
        if len(views) != 1:
            self.notify("promote one run at a time: put the cursor on it (no marks)" if views else "no run selected",
                        severity="warning")
            return
        if not self._allowed("promote", views):
            return
        self.app.push_screen(PromoteScreen(self.app.model.home_of(views[0].path), views[0]), self._promote_chosen)

    def _promote_chosen(self, options: dict | None) -> None:
        if options is None:
            return
        view = options.pop("view")
        self._act(self._per_root(actions.plan_promote, **options), [view])

    def action_stop(self) -> None:
        self._act(lambda vs: actions.plan_control(vs, "stop"), verb="stop")

    def action_pause(self) -> None:
        self._act(lambda vs: actions.plan_control(vs, "resume" if vs and all(v.state == "paused" for v in vs)
                                                  else "pause"), verb="pause")

    def action_relaunch(self) -> None:
        self._act(self._per_root(actions.plan_relaunch), verb="relaunch")

    def _act(self, make, views: list[RunView] | None = None, verb: str | None = None) -> None:
        if self.app.readonly:
            return
        views = self.selected() if views is None else views
        if not views:
            self.notify("no run selected", severity="warning")
            return
        if verb is not None:
            views = self._allowed(verb, views)
            if not views:
                return
        self.plan_action(make, views)

    def _allowed(self, verb: str, views: list[RunView]) -> list[RunView]:
        """The runs ``verb`` may act on; the runs other tools wrote that it needs trainkit's files for
        are left out, with the reason in a one-line notice."""
        from tui.model.foreign import refusal

        model = self.app.model

        def why_not(v: RunView) -> str | None:
            return refusal(verb, v, base=model.root_of(v.path), root=model.home_of(v.path))

        why = [r for r in map(why_not, views) if r is not None]
        if why:
            more = f" (and {len(why) - 1} more)" if len(why) > 1 else ""
            self.notify(why[0] + more, severity="warning", timeout=6)
        return [v for v in views if why_not(v) is None]

    @work(thread=True, exclusive=True, group="action")
    def plan_action(self, make, views) -> None:
        try:
            plan = make(views)
        except Exception as e:  # a lifecycle error must not take the monitor down
            self.app.call_from_thread(self.notify, f"could not check: {e}", severity="error")
            return
        self.app.call_from_thread(self._confirm, plan)

    def _confirm(self, plan: actions.ActionPlan) -> None:
        def done(ok: bool | None) -> None:
            if ok and plan.execute is not None:
                self.run_action_worker(plan)
            elif plan.doable:
                self.notify(f"{plan.verb}: cancelled, nothing written", timeout=3)
            else:
                self.notify(f"{plan.verb} refused: " + "; ".join(f"{t.name}: {t.what}" for t in plan.lines),
                            severity="warning", timeout=8)
        self.app.push_screen(ConfirmScreen(plan), done)

    @work(thread=True, exclusive=True, group="action")
    def run_action_worker(self, plan: actions.ActionPlan) -> None:
        last = [0.0]

        def report(msg: str) -> None:  # at most two progress notes a second
            now = time.monotonic()
            if now - last[0] >= 0.5:
                last[0] = now
                self.app.call_from_thread(self._progress, msg)
        try:
            out = plan.execute(report)
        except Exception as e:
            self.app.call_from_thread(self.notify, f"{plan.verb} failed: {e}", severity="error", timeout=10)
            return
        self.app.call_from_thread(self._finished, plan, out)

    def _progress(self, msg: str) -> None:
        self.notify(msg, timeout=1)

    def _finished(self, plan: actions.ActionPlan, out: list[str]) -> None:
        self.marked.clear()
        for line in out:
            self.notify(line, severity="information" if "not " not in line else "warning", timeout=6)
        changes = self.app.model.refresh(None, budget_s=None)
        if changes:
            self.runs_changed(changes)
        self.rebuild()
