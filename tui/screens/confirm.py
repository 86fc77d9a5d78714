"""The confirmation modal of an action: names every target and what will happen to it. Only ``y``
(or the Yes button itself) accepts; the focused button is Cancel, so Enter alone never confirms
anything; ``n`` and Escape cancel."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.actions import ActionPlan


def past(verb: str) -> str:
    """``stop`` -> ``stopped``: the verb of an action as the modal's title says it."""
    return verb + ("ped" if verb == "stop" else "d" if verb.endswith("e") else "ed")


def plan_text(plan: ActionPlan) -> Text:
    t = Text()
    for line in plan.lines:
        t.append("✓ " if line.ok else "✗ ", style="green" if line.ok else "red")
        t.append(line.name, style="bold")
        t.append(f": {line.what}\n")
    if plan.details:
        t.append("\nchecks:\n", style="dim")
        for d in plan.details:
            t.append(d + "\n", style="dim")
    if not plan.doable:
        t.append("\nNothing can be done: press n or Escape.", style="yellow")
    else:
        t.append(f"\ny: {plan.verb}   n, Escape or Enter: cancel", style="dim")
    return t


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: thick $warning; background: $surface; padding: 0 1; }
    ConfirmScreen #title { text-style: bold; padding-bottom: 1; }
    ConfirmScreen VerticalScroll { height: auto; max-height: 20; }
    ConfirmScreen Horizontal { height: auto; align: right middle; padding-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """
    BINDINGS = [Binding("y", "accept", "Yes", tooltip="do it (the only key that confirms)"),
                Binding("n", "reject", "Cancel", tooltip="cancel: nothing is written (Enter on Cancel too)"),
                Binding("escape", "reject", "Cancel", show=False, tooltip="cancel: nothing is written")]

    def __init__(self, plan: ActionPlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        n = self.plan.doable
        with Vertical():
            yield Static(f"{self.plan.title}? ({n} of {len(self.plan.lines)} can be {past(self.plan.verb)})"
                         if n else f"{self.plan.title}: refused", id="title")
            with VerticalScroll():
                yield Static(plan_text(self.plan), id="targets")
            with Horizontal():
                if n:
                    yield Button(f"Yes, {self.plan.verb} (y)", variant="warning", id="yes")
                yield Button("Cancel (n)" if n else "Close (n)", variant="default", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter alone cancels; y confirms

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_accept(self) -> None:
        if self.plan.doable:
            self.dismiss(True)

    def action_reject(self) -> None:
        self.dismiss(False)
