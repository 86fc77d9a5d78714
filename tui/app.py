"""trainmon's app: parse nothing, hold the model, mount the workspace, start the watcher."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual import _time, events, work
from textual._dispatch_key import dispatch_key
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches

from tui.messages import ModelLoaded, RunsChanged, WatchMode
from tui.model.mounts import network_filesystem
from tui.model.runs import RunsModel
from tui.model.system import HostSampler
from tui.watcher import watch_root

LIVENESS_S = 5.0
SLURM_S = 5.0  # how often squeue is asked (once for every run handed to Slurm), off the event loop
# When set, the path where the app writes time.time() once the first full read of ROOT is on screen
# (benchmarks/tui_scale.py reads it: the time from process start to the first full paint).
PAINTED_ENV = "TRAINMON_PAINTED_FILE"


@dataclass
class Options:
    root: str
    extra_roots: tuple[str, ...] = ()  # more ROOTs given on the command line (scanned and watched too)
    poll_s: float | None = None  # None: inotify (unless ROOT is on a network filesystem)
    readonly: bool = False
    archived: bool = False
    clock: Callable[[], float] = time.time
    watch: bool = True  # False: no watcher at all (snapshots, benchmarks that drive refresh themselves)
    # the header's host figures: a factory of a sampler (``.sample()`` -> HostFigures); None: this
    # host's (HostSampler) while watching, none in a static app (watch=False)
    system: Callable[[], object] | None = None


class ActionsProvider(Provider):
    """The command palette: the current screen's keys of the help page (:mod:`tui.keys`) that can
    act now, by name."""

    def _commands(self) -> list[tuple[str, str, str]]:
        from tui.keys import palette_entries

        return [(f"{k.title} ({k.keys})", k.text, k.action) for k in palette_entries(self.screen)]

    async def discover(self) -> Hits:
        for text, help_text, action in self._commands():
            yield DiscoveryHit(text, self._runner(action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, action in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), self._runner(action), help=help_text)

    def _runner(self, action: str):
        screen = self.screen

        async def run() -> None:
            await screen.run_action(action)
        return run


class TrainmonApp(App):
    """Watches ROOT; the screens read :attr:`model`."""

    CSS_PATH = "trainmon.tcss"
    TITLE = "trainmon"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [Binding("q", "quit", "Quit", tooltip="quit (the runs go on)"),
                Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="quit (the runs go on)"),
                Binding("question_mark", "help", "Help", tooltip="this help: every key of every screen")]

    def __init__(self, options: Options) -> None:
        super().__init__()
        self.options = options
        self.model = RunsModel(options.root, clock=options.clock, archived=options.archived,
                               extra_roots=options.extra_roots)
        self.readonly = options.readonly
        self.network_fs = network_filesystem(options.root)
        self.watch_mode = self._initial_mode()
        self.model.stat_at_load = options.poll_s is not None or bool(self.network_fs)
        self.watching = False  # True once a change of ROOT shows by itself (the watcher is up, or polling)
        self.pinned: str | None = None  # the run whose curves every other run's detail overlays (p there)
        self.system_sampler = options.system if options.system is not None else HostSampler if options.watch else None
        self._screen_changed_at = 0.0  # when the screen on view opened (a key typed before goes nowhere)

    def _initial_mode(self) -> str:
        if self.options.poll_s is not None:
            return f"polling every {self.options.poll_s:g} s"
        if self.network_fs:
            return f"polling every 1 s ({self.network_fs}: inotify sees no other host's writes)"
        return "inotify" if self.options.watch else "static"

    # ---------------------------------------------------------------- keys, one at a time
    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded:
            await self._key_in_order(event)
            return
        await super().on_event(event)

    async def _key_in_order(self, event: events.Key) -> None:
        """Handle a key completely (the focused widget and its parents, then the bindings) before
        the next one: keys typed fast arrive in a burst (an SSH link delivers them at once), and
        Textual would hand them all to the focused widget before the first one's binding ran, so
        the keys after ``/`` reached the runs table instead of the filter it opens. A key typed
        before the screen on view opened (typed on the one before it, handled after) goes to no
        action: an ``x`` meant for the chart's axis never stops a run on the screen behind it."""
        self.app_focus = True
        screen = self.screen
        if event.time <= self._screen_changed_at:
            return
        if await self._check_bindings(event.key, priority=True):
            return
        target = self.focused or screen
        event._in_order = True
        event._sender = None  # (Textual stops a key at the screen when the app sent it; here, only a handler does)
        target._forward_event(event)
        node = target
        while node is not None and node is not self:  # the widget, its parents, the screen handle it in turn
            handled = asyncio.Event()
            if not node.call_later(handled.set):
                return
            await handled.wait()
            if event._stop_propagation:
                return  # consumed (an input took the character)
            node = node._parent
        if self.screen is screen and not await self._check_bindings(event.key):
            await dispatch_key(self, event)

    async def _on_key(self, event: events.Key) -> None:
        if getattr(event, "_in_order", False):  # its bubbled copy: already handled
            event.prevent_default()
            event.stop()

    def _screen_changed(self) -> None:
        self._screen_changed_at = _time.get_time()  # the clock of the keys' own time stamps

    def push_screen(self, *args, **kwargs):
        result = super().push_screen(*args, **kwargs)
        self._screen_changed()
        return result

    def pop_screen(self):
        result = super().pop_screen()
        self._screen_changed()
        return result

    def switch_screen(self, screen):
        result = super().switch_screen(screen)
        self._screen_changed()
        return result

    def on_load(self) -> None:
        """On a terminal, a SIGINT (``kill -INT``, a Ctrl-C sent to the process group) quits as
        ``q`` does, between two messages: never an exception raised in the middle of mounting a
        screen (which left a half-composed screen and a traceback)."""
        if self.is_headless:
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.exit, None, 130)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not the main thread)
            pass

    def on_unmount(self) -> None:
        if not self.is_headless:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def on_mount(self) -> None:
        from tui.screens.workspace import WorkspaceScreen

        self.push_screen(WorkspaceScreen())
        self.load_model()

    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        changes = self.model.refresh(None, budget_s=None)
        self.post_message(ModelLoaded(len(self.model.runs)))
        changes = [c for c in changes if c.kind != "added"]  # ModelLoaded draws those (once)
        if changes:
            self.post_message(RunsChanged(changes))

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.dispatch(lambda s: getattr(s, "model_loaded", None))
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        """The first full read is on screen: now watch (setting the watches up on a big ROOT, and
        the catch-up after it, never delay the first paint)."""
        marker = os.environ.get(PAINTED_ENV)
        if marker:
            _write_painted(marker)
        if not self.options.watch:
            return
        poll = self.options.poll_s if self.options.poll_s is not None else (1.0 if self.network_fs else None)
        if poll is not None:
            self.start_polling(poll)
        else:
            self.run_watcher()
        self.set_interval(LIVENESS_S, self.check_liveness)
        self.set_interval(SLURM_S, self._slurm_tick)
        self._slurm_tick()

    def catch_up(self) -> None:
        """The watches are in place: look once at what changed between the first read and now (a
        few hundred runs per turn of the loop), then the app is watching."""
        steps = self.model.catch_up()

        def step() -> None:
            t0 = time.perf_counter()
            for _ in steps:
                if time.perf_counter() - t0 > 0.01:
                    break
            else:
                timer.stop()
                self.watching = True
            changes = self.model.refresh(set())
            if changes:
                self.post_message(RunsChanged(changes))
        timer = self.set_interval(0.01, step)

    def start_polling(self, seconds: float) -> None:
        self.set_interval(seconds, self.poll_tick)
        self.watching = True

    def poll_tick(self) -> None:
        changes = self.model.refresh(None)
        if changes:
            self.post_message(RunsChanged(changes))

    def _slurm_tick(self) -> None:
        if self.model.slurm_runs():  # no thread at all while no run was handed to Slurm (an idle screen)
            self.ask_slurm()

    @work(thread=True, exclusive=True, group="slurm")
    def ask_slurm(self) -> None:
        """Slurm's view of the runs handed to it (one squeue call, in a thread, every few seconds:
        never one per refresh): a run whose job Slurm holds reads ``queued``, as in ``trainkit status``."""
        from trainkit.status import slurm_view

        paths = self.model.slurm_runs()
        if not paths:
            return
        _, jobs, problems = slurm_view(paths)
        self.call_from_thread(self._slurm_seen, jobs, problems)

    def _slurm_seen(self, jobs, problems: list[str]) -> None:
        changes = self.model.set_slurm(jobs, problems)
        if changes:
            self.post_message(RunsChanged(changes))

    def check_liveness(self) -> None:
        changes = self.model.check_liveness()
        if changes:
            self.post_message(RunsChanged(changes))

    @work(exclusive=True, group="watcher")
    async def run_watcher(self) -> None:
        why = await watch_root(self.model, self.post_message)
        if why is not None:
            self.start_polling(self.options.poll_s or 1.0)

    def on_runs_changed(self, message: RunsChanged) -> None:
        self.dispatch(lambda s: getattr(s, "runs_changed", None), message.changes)

    def on_watch_mode(self, message: WatchMode) -> None:
        if message.ready:
            self.catch_up()
            return
        self.watch_mode = message.mode
        if message.note:
            self.notify(message.note, severity="warning", timeout=10)
        self.dispatch(lambda s: getattr(s, "watch_mode_changed", None))

    def dispatch(self, pick, *args) -> None:
        """Call a hook on every screen of the stack that has it (attributes down). A message that
        arrives after the app began to quit (a Ctrl-C while the first read was on its way) finds
        the screens' widgets gone: it is not drawn."""
        for screen in list(self.screen_stack):
            hook = pick(screen)
            if hook is None:
                continue
            try:
                hook(*args)
            except NoMatches:
                if not self._exit:
                    raise

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def _write_painted(path: str) -> None:
    with open(path, "w") as f:
        f.write(repr(time.time()))
