"""trainmon's app: parse nothing, hold the model, mount the workspace, start the watcher."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.messages import ModelLoaded, RunsChanged, WatchMode
from tui.model.mounts import network_filesystem
from tui.model.runs import RunsModel
from tui.watcher import watch_root

LIVENESS_S = 5.0
# When set, the path where the app writes time.time() once the first full read of ROOT is on screen
# (benchmarks/tui_scale.py reads it: the time from process start to the first full paint).
PAINTED_ENV = "TRAINMON_PAINTED_FILE"


@dataclass
class Options:
    root: str
    poll_s: float | None = None  # None: inotify (unless ROOT is on a network filesystem)
    readonly: bool = False
    archived: bool = False
    clock: Callable[[], float] = time.time
    watch: bool = True  # False: no watcher at all (snapshots, benchmarks that drive refresh themselves)


class ActionsProvider(Provider):
    """The command palette: every action of the current screen, by name."""

    def _commands(self) -> list[tuple[str, str, object]]:
        screen = self.screen
        out = []
        for binding in getattr(screen, "BINDINGS", []):
            b = binding if isinstance(binding, Binding) else Binding(*binding)
            if not b.description or screen.check_action(b.action, ()) is False:
                continue
            out.append((f"{b.description} ({b.key_display or b.key})", b.description, b.action))
        return out

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
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
                Binding("question_mark", "help", "Help")]

    def __init__(self, options: Options) -> None:
        super().__init__()
        self.options = options
        self.model = RunsModel(options.root, clock=options.clock, archived=options.archived)
        self.readonly = options.readonly
        self.network_fs = network_filesystem(options.root)
        self.watch_mode = self._initial_mode()
        self.model.stat_at_load = options.poll_s is not None or bool(self.network_fs)

    def _initial_mode(self) -> str:
        if self.options.poll_s is not None:
            return f"polling every {self.options.poll_s:g} s"
        if self.network_fs:
            return f"polling every 1 s ({self.network_fs}: inotify sees no other host's writes)"
        return "inotify" if self.options.watch else "static"

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
        marker = os.environ.get(PAINTED_ENV)
        if marker:
            self.call_after_refresh(_write_painted, marker)
        if not self.options.watch:
            return
        poll = self.options.poll_s if self.options.poll_s is not None else (1.0 if self.network_fs else None)
        if poll is not None:
            self.start_polling(poll)
        else:
            self.run_watcher()
        self.set_interval(LIVENESS_S, self.check_liveness)

    def start_polling(self, seconds: float) -> None:
        self.set_interval(seconds, self.poll_tick)

    def poll_tick(self) -> None:
        changes = self.model.refresh(None)
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
        self.watch_mode = message.mode
        if message.note:
            self.notify(message.note, severity="warning", timeout=10)
        self.dispatch(lambda s: getattr(s, "watch_mode_changed", None))

    def dispatch(self, pick, *args) -> None:
        """Call a hook on every screen of the stack that has it (attributes down)."""
        for screen in list(self.screen_stack):
            hook = pick(screen)
            if hook is not None:
                hook(*args)

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def _write_painted(path: str) -> None:
    with open(path, "w") as f:
        f.write(repr(time.time()))
