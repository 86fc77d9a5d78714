"""Conversation inspector: the items of an evaluation's ``responses.jsonl`` (live), filters to
errors (``e``) or wrong answers (``w``), and the selected item's conversation by role, with the
expected answer beside the model's and the error and traceback of a failed item."""

from __future__ import annotations

import json

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui.model.evals import ALL, ERRORS, WRONG, EvalItems, Item
from tui.model.runs import EVALS, RunChange

ROLE_STYLES = {"system": "dim italic", "user": "bold cyan", "assistant": "bold green", "tool": "magenta"}


def _text(v) -> str:
    if v is None:
        return "—"
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def conversation_view(item: Item, rec: dict | None, why: str | None):
    """The renderable of one item: header, messages by role, expected vs answer, error."""
    head = Text()
    head.append(f"question {item.question_id}  sample {item.sample}  ", style="bold")
    head.append(item.result_text(), style="green" if item.result_text() == "correct" else
                "red" if item.result_text() in ("error", "wrong") else "")
    head.append(f"  latency {item.latency_s if item.latency_s is not None else '-'} s  attempts "
                f"{item.attempts if item.attempts is not None else '-'}", style="dim")
    if rec and rec.get("model"):
        head.append(f"  model {rec.get('model')}", style="dim")
    parts: list = [head, Text("")]
    if rec is None:
        parts.append(Text(f"conversation file: {why}", style="yellow"))
    else:
        for m in rec.get("messages") or []:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role", "?"))
            t = Text(f"{role}: ", style=ROLE_STYLES.get(role, "bold"))
            t.append(_text(m.get("content")))
            parts.append(t)
    cmp = Table(expand=True, show_edge=False, box=None, padding=(0, 1))
    cmp.add_column("expected", style="cyan", ratio=1)
    cmp.add_column("model's answer", style="green" if item.correct is not False else "red", ratio=1)
    cmp.add_row(_text(item.expected), _text(item.response))
    parts += [Text(""), cmp]
    error = (rec or {}).get("error") or item.error
    if error:
        parts += [Text(""), Text(f"error: {error}", style="bold red")]
        errors = (rec or {}).get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            parts.append(Text(f"{len(errors)} attempts failed: " + " | ".join(map(str, errors[:5])), style="red"))
        tb = (rec or {}).get("traceback")
        if tb:
            parts.append(Text(str(tb), style="red dim"))
    return Group(*parts)


class InspectorScreen(Screen):
    AUTO_FOCUS = "#items"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "errors", "Errors only"),
        Binding("w", "wrong", "Wrong only"),
        Binding("n", "next", "Next"),
        Binding("p", "previous", "Previous"),
    ]
    DEFAULT_CSS = """
    InspectorScreen #ihead { height: auto; padding: 0 1; background: $boost; }
    InspectorScreen Horizontal { height: 1fr; }
    InspectorScreen #items { width: 46%; }
    InspectorScreen #conv { width: 1fr; border-left: solid $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, eval_dir: str, run_key: str) -> None:
        super().__init__()
        self.eval_dir = eval_dir
        self.run_key = run_key
        self.items = EvalItems(eval_dir)
        self.which = ALL
        self.shown: list[Item] = []

    def compose(self) -> ComposeResult:
        yield Static(id="ihead")
        with Horizontal():
            yield DataTable(id="items", cursor_type="row")
            with VerticalScroll(id="conv"):
                yield Static(id="conversation")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#items", DataTable)
        for label, key, width in (("id", "id", 8), ("s", "s", 3), ("status", "status", 6), ("result", "result", 9),
                                  ("latency", "lat", 8), ("tries", "tries", 5)):
            table.add_column(label, key=key, width=width)
        self.app.model.watch_extra(str(self.items.paths.responses))
        self.items.update()
        self.rebuild()
        table.focus()

    def on_unmount(self) -> None:
        self.app.model.unwatch_extra(str(self.items.paths.responses))

    def runs_changed(self, changes: list[RunChange]) -> None:
        if any(ch.name == self.run_key and EVALS in ch.what for ch in changes):
            before = len(self.items.items)
            reset = self.items.tail.offset == 0
            if self.items.update():
                if self.which == ALL and not reset and len(self.items.items) >= before:
                    self._append(self.items.items[before:])
                else:
                    self.rebuild()

    # ---------------------------------------------------------------- drawing
    def _row(self, it: Item) -> list:
        res = it.result_text()
        return [str(it.question_id), str(it.sample), Text(it.status, style="green" if it.ok else "bold red"),
                Text(res, style="green" if res == "correct" else "red" if res in ("wrong", "error") else ""),
                "-" if it.latency_s is None else f"{it.latency_s:.3g}s",
                "-" if it.attempts is None else str(it.attempts)]

    def rebuild(self) -> None:
        table = self.query_one("#items", DataTable)
        row = table.cursor_row
        table.clear()
        self.shown = self.items.filtered(self.which)
        table.add_rows([self._row(it) for it in self.shown])
        if self.shown:
            table.move_cursor(row=min(max(row, 0), len(self.shown) - 1), animate=False)
        self.draw_head()
        self.show_current()

    def _append(self, new: list[Item]) -> None:
        table = self.query_one("#items", DataTable)
        self.shown.extend(new)
        table.add_rows([self._row(it) for it in new])
        self.draw_head()
        if len(self.shown) == len(new):
            self.show_current()

    def draw_head(self) -> None:
        items = self.items.items
        errors = sum(1 for i in items if not i.ok)
        wrong = sum(1 for i in items if i.wrong)
        t = Text()
        t.append(f"{self.items.paths.name}", style="bold")
        t.append(f"  {len(items)} items, {errors} error(s), {wrong} wrong  ·  "
                 f"showing: {self.which} ({len(self.shown)})")
        if self.items.bad_lines:
            t.append(f"  ·  ⚠ {self.items.bad_lines} unreadable line(s) skipped", style="yellow")
        self.query_one("#ihead", Static).update(t)

    def show_current(self) -> None:
        box = self.query_one("#conversation", Static)
        table = self.query_one("#items", DataTable)
        if not self.shown:
            self.rendered = Text("no item matches" if self.items.items else "no finished item yet", style="dim")
            box.update(self.rendered)
            return
        item = self.shown[min(max(table.cursor_row, 0), len(self.shown) - 1)]
        rec, why = self.items.conversation(item)
        self.rendered = conversation_view(item, rec, why)
        box.update(self.rendered)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_current()

    # ---------------------------------------------------------------- keys
    def action_back(self) -> None:
        self.app.pop_screen()

    def _toggle(self, which: str) -> None:
        self.which = ALL if self.which == which else which
        self.rebuild()

    def action_errors(self) -> None:
        self._toggle(ERRORS)

    def action_wrong(self) -> None:
        self._toggle(WRONG)

    def action_next(self) -> None:
        self.query_one("#items", DataTable).action_cursor_down()

    def action_previous(self) -> None:
        self.query_one("#items", DataTable).action_cursor_up()
