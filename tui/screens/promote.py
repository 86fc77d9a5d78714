"""Promote from trainmon with the options of ``trainkit experiments promote``: the report, the
metric and its direction, the threshold, the minimum improvement over the current holder, the
production config's name, force (the existing target backed up first) and the leaderboard row.
Enter checks (it writes nothing): the checks then show in the confirmation, where only ``y``
promotes."""

from __future__ import annotations

import math
import os

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from trainkit.runfolder import REPORTS_DIR
from tui.model.views import RunView

FIELDS = (  # id, label, placeholder
    ("report", "report", "the run's report (reports/default.json, else the latest)"),
    ("metric", "metric", "the report's own metric"),
    ("mode", "mode", "min or max (known metrics: by name)"),
    ("threshold", "threshold", "none: the report's gates decide"),
    ("min_improvement", "min improvement", "0: at least as good as the current holder"),
    ("config_name", "config name", "configs/train_<slug>.<ext>"),
)


def parse_options(values: dict[str, str], force: bool, leaderboard: bool) -> dict | str:
    """The form's text as :class:`~trainkit.lifecycle.PromoteRequest` options, or what is wrong
    (one line)."""
    out: dict = {"force": force, "update_leaderboard": leaderboard}
    for key in ("report", "metric", "config_name"):
        text = values.get(key, "").strip()
        if text:
            out[key] = text.removesuffix(".json") if key == "report" else text
    mode = values.get("mode", "").strip()
    if mode:
        if mode not in ("min", "max"):
            return f"mode {mode!r}: min or max"
        out["mode"] = mode
    for key, label in (("threshold", "threshold"), ("min_improvement", "min improvement")):
        text = values.get(key, "").strip()
        if not text:
            continue
        try:
            number = float(text)
        except ValueError:
            return f"{label} {text!r}: not a number"
        if not math.isfinite(number):
            return f"{label} {text!r}: not a finite number"
        out[key] = number
    return out


class PromoteScreen(ModalScreen[dict | None]):
    DEFAULT_CSS = """
    PromoteScreen { align: center middle; }
    PromoteScreen > Vertical { width: 90%; max-width: 100; height: auto; max-height: 95%;
        border: thick $accent; background: $surface; padding: 0 1; }
    PromoteScreen #ptitle { text-style: bold; }
    PromoteScreen .row { height: auto; }
    PromoteScreen .row Label { width: 18; padding: 1 1 0 0; }
    PromoteScreen .row Input { width: 1fr; }
    PromoteScreen #perror { color: $error; height: auto; }
    PromoteScreen #pbuttons { height: auto; align: right middle; }
    PromoteScreen Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="close the form; nothing is written"),
                Binding("enter", "check", "Check", priority=True,
                        tooltip="run every check (writes nothing); the confirmation shows them, y promotes")]

    def __init__(self, root: str, view: RunView) -> None:
        super().__init__()
        self.root = root
        self.view = view

    def compose(self) -> ComposeResult:
        reports = sorted(n[:-5] for n in _list(os.path.join(self.view.path, REPORTS_DIR)) if n.endswith(".json"))
        with Vertical():
            yield Static(f"Promote {self.view.name}: the options of trainkit experiments promote", id="ptitle")
            yield Static(f"reports: {', '.join(reports) or 'none yet (trainkit eval, then a report)'}", classes="dim")
            for key, label, placeholder in FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(placeholder=placeholder, id=key)
            yield Checkbox("force: replace an existing production config (it is backed up first)", id="force")
            yield Checkbox("add a row to reports/leaderboard.csv", id="leaderboard")
            yield Static("", id="perror")
            with Horizontal(id="pbuttons"):
                yield Button("Check (enter)", variant="primary", id="check")
                yield Button("Cancel (escape)", id="cancel")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#report", Input))

    def action_check(self) -> None:
        values = {key: self.query_one(f"#{key}", Input).value for key, _, _ in FIELDS}
        parsed = parse_options(values, self.query_one("#force", Checkbox).value,
                               self.query_one("#leaderboard", Checkbox).value)
        if isinstance(parsed, str):
            self.query_one("#perror", Static).update(parsed)
            return
        self.dismiss({**parsed, "view": self.view})

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "check":
            self.action_check()
        else:
            self.dismiss(None)


def _list(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
