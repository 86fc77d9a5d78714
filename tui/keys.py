"""Every key of every screen, from the screens' own ``BINDINGS`` (the help page ``?`` and the
command palette are generated from them, so they never drift from what the keys do)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

KEY_NAMES = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc", "enter": "enter",
             "plus": "+", "equals_sign": "=", "minus": "-", "pageup": "PgUp", "pagedown": "PgDn", "home": "Home",
             "end": "End", "up": "↑", "down": "↓", "left": "←", "right": "→", "tab": "Tab",
             "shift+tab": "Shift+Tab", "left_square_bracket": "[", "right_square_bracket": "]",
             "ctrl+home": "Ctrl+Home", "ctrl+end": "Ctrl+End", "ctrl+p": "Ctrl+P", "ctrl+c": "Ctrl+C",
             "less_than_sign": "<", "greater_than_sign": ">", "shift+left": "Shift+←", "shift+right": "Shift+→"}


@dataclass(frozen=True)
class KeyHelp:
    keys: str  # as typed: "enter", "/", "+ / =", "PgUp"
    action: str
    title: str  # the short name (the footer's)
    text: str  # what it does (the binding's tooltip, else its name)


def key_text(key: str) -> str:
    return " / ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in key.split(","))


# the keys of Textual's own widgets that the help lists (moving in a list); the rest are trainmon's
NAV = {"cursor_up": "a row up", "cursor_down": "a row down", "page_up": "a page up", "page_down": "a page down",
       "scroll_top": "the first row", "scroll_bottom": "the last row"}


def bindings_of(cls) -> list[Binding]:
    """The class's BINDINGS, then those of its bases (a subclass's key wins), as :class:`Binding`;
    of Textual's own classes only the keys that move in a list (:data:`NAV`)."""
    seen: set[str] = set()
    out: list[Binding] = []
    for klass in cls.__mro__:
        ours = klass.__module__.startswith("tui.")
        for b in klass.__dict__.get("BINDINGS", []):
            b = b if isinstance(b, Binding) else Binding(*b)
            if b.key in seen or not ours and b.action not in NAV:
                continue
            seen.add(b.key)
            out.append(b)
    return out


def keys_of(*classes) -> list[KeyHelp]:
    """The keys of a screen and of the widgets it holds, in the order they declare them; keys that
    only move within a widget the base classes declare are included (↑ ↓ PgUp PgDn)."""
    out: list[KeyHelp] = []
    seen: set[str] = set()
    for cls in classes:
        for b in bindings_of(cls):
            if b.key in seen or not b.description:
                continue
            seen.add(b.key)
            text = b.tooltip or NAV.get(b.action) or b.description
            out.append(KeyHelp(key_text(b.key), b.action, b.description, text))
    return out


def sections(app_class) -> list[tuple[str, list[KeyHelp]]]:
    """The help page: each screen's keys (with the lists' own), then the keys that work everywhere
    (``app_class``'s)."""
    from tui.screens.compare import CompareScreen
    from tui.screens.confirm import ConfirmScreen
    from tui.screens.detail import DetailScreen
    from tui.screens.inspector import InspectorScreen
    from tui.screens.promote import PromoteScreen
    from tui.screens.records import RecordsScreen
    from tui.screens.samples import SamplesScreen
    from tui.screens.side_by_side import SideBySideScreen
    from tui.screens.workspace import WorkspaceScreen
    from tui.widgets.list_table import ListTable
    from tui.widgets.runs_table import RunsTable

    return [
        ("Runs workspace", keys_of(WorkspaceScreen, RunsTable)),
        ("Run detail", keys_of(DetailScreen, ListTable)),
        ("Conversation inspector", keys_of(InspectorScreen, ListTable)),
        ("Side by side (c in the inspector)", keys_of(SideBySideScreen)),
        ("All samples", keys_of(SamplesScreen, ListTable)),
        ("Raw records", keys_of(RecordsScreen)),
        ("Compare", keys_of(CompareScreen)),
        ("Confirmation", keys_of(ConfirmScreen)),
        ("Promote form", keys_of(PromoteScreen)),
        ("Everywhere", keys_of(app_class) + [KeyHelp("Tab / Shift+Tab", "focus_next", "Focus",
                                                       "move the focus to the next / previous list or input"),
                                               KeyHelp("Ctrl+P", "command_palette", "Palette",
                                                       "the command palette: every action of the screen by name")]),
    ]


def palette_entries(screen) -> list[KeyHelp]:
    """The command palette's entries on ``screen``: the keys of the help page's section for it
    that can act now (``check_action``), each runnable by name."""
    from tui.widgets.list_table import ListTable

    widgets = [type(w) for w in screen.query(ListTable)][:1]
    out = []
    for k in keys_of(type(screen), *widgets):
        action = k.action.split("(")[0]
        if action.startswith("app.") or action in ("select_cursor", "cursor_up", "cursor_down", "page_up",
                                                    "page_down", "scroll_top", "scroll_bottom"):
            continue
        if screen.check_action(action, ()) is False:
            continue
        out.append(k)
    return out
