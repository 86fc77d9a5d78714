"""Help (``?``): every key of every screen."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("Runs workspace", [
        ("↑ ↓ PgUp PgDn", "move"), ("enter", "open the run's detail"), ("space", "mark / unmark a run"),
        ("s", "cycle the sort: name, state, progress, loss, recent"),
        ("/", "filter: name words or lr>=1e-3 model.width=256 state=running (Enter keeps, Escape clears)"),
        ("G", "group rows by a config key"), ("A", "show / hide archived runs"),
        ("c", "compare the marked runs"), ("a", "archive (marked runs, else the current one)"),
        ("P", "promote (shows the check, threshold and current holder first)"), ("x", "stop (a stop request)"),
        ("p", "pause / resume"), ("r", "relaunch a failed or crashed run"), ("R", "restore an archived run"),
    ]),
    ("Run detail", [
        ("y", "log-Y on the charts"), ("x", "x axis: step or wall time"), ("+ / -", "zoom in / out (newest kept)"),
        ("f", "metric filter"), ("l", "show / hide the live log"), ("i", "inspect the selected evaluation"),
        ("S", "every inference sample of the run (samples.jsonl, live)"),
        ("escape", "back"),
    ]),
    ("Conversation inspector", [
        ("↑ ↓", "move through items"), ("n / p", "next / previous item"), ("e", "only errors (again: all)"),
        ("w", "only wrong answers (again: all)"), ("escape", "back"),
    ]),
    ("Compare", [("y", "log-Y"), ("escape", "back")]),
    ("Everywhere", [("?", "this help"), ("ctrl+p", "command palette: every action by name"),
                    ("q / ctrl+c", "quit")]),
]


def help_table(readonly: bool) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    for section, keys in KEYS:
        t.add_row(f"[bold underline]{section}[/]", "")
        for key, what in keys:
            t.add_row(key, what)
        t.add_row("", "")
    if readonly:
        t.add_row("read-only", "archive, promote, stop, pause, relaunch and restore are off")
    return t


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: thick $accent;
        background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_table(self.app.readonly))

    def action_close(self) -> None:
        self.dismiss()
