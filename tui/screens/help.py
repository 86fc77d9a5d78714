"""Help (``?``): every key of every screen, generated from the screens' own bindings
(:mod:`tui.keys`), so that it never drifts from what the keys do."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.keys import sections

WRITE_ACTIONS = {"archive", "promote", "stop", "pause", "relaunch", "restore"}


def help_table(readonly: bool, app_class) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    for section, keys in sections(app_class):
        t.add_row(f"[bold underline]{section}[/]", "")
        for k in keys:
            off = readonly and k.action in WRITE_ACTIONS
            t.add_row(k.keys, f"{k.text}{' (off: read-only)' if off else ''}", style="dim" if off else "")
        t.add_row("", "")
    if readonly:
        t.add_row("read-only", "archive, promote, stop, pause, relaunch and restore are off")
    return t


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 110; height: 90%; border: thick $accent;
        background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_table(self.app.readonly, type(self.app)))

    def on_mount(self) -> None:
        self.set_focus(self.query_one(VerticalScroll))

    def action_close(self) -> None:
        self.dismiss()
