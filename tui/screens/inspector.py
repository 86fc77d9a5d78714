"""Conversation inspector: the items of an evaluation's ``responses.jsonl`` (live), filters to
errors (``e``) or wrong answers (``w``), a jump to an item by its id (``g``), and the selected
item's conversation by role, with the expected answer beside the model's and the error and
traceback of a failed item."""

from __future__ import annotations

import json

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from trainkit.formatting import fmt_fit, fmt_sig
from tui.model.evals import ALL, ERRORS, WRONG, EvalItems, Item, item_key, latest, shown_in
from tui.model.runs import EVALS, RunChange
from tui.widgets.list_table import ListTable

ROLE_STYLES = {"system": "dim italic", "user": "bold cyan", "assistant": "bold green", "tool": "magenta"}


def latency_text(seconds: float | None, width: int = 8) -> str:
    """An item's latency in its column, never cut: ``0.243ms``, ``265ms``, ``1.52s``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{fmt_fit(seconds * 1000, width - 2)}ms"
    return f"{fmt_fit(seconds, width - 1)}s"


def _text(v) -> str:
    if v is None:
        return "—"
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def conversation_view(line: Item, rec: dict | None, why: str | None):
    """The renderable of one item, from its latest record only (its line or its conversation file,
    whichever is newer): header, messages by role, expected vs answer, error."""
    item, which = latest(line, rec)
    if which == "line":  # the file is from an earlier attempt: none of it is shown
        why, rec = "from an earlier attempt than the line (its rewrite failed; a resume rebuilds it)", None
    head = Text()
    head.append(f"question {item.question_id}  sample {item.sample}  ", style="bold")
    head.append(item.result_text(), style="green" if item.result_text() == "correct" else
                "red" if item.result_text() in ("error", "wrong") else "")
    head.append(f"  latency {fmt_sig(item.latency_s, 3)} s  attempts "
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
    error = item.error if rec is None else rec.get("error")
    if error:
        parts += [Text(""), Text(f"error: {error}", style="bold red")]
        errors = (rec or {}).get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            parts.append(Text(f"{len(errors)} attempts failed: " + " | ".join(map(str, errors[:5])), style="red"))
        tb = (rec or {}).get("traceback")
        if tb:
            parts.append(Text(str(tb), style="red dim"))
    return Group(*parts)


def find_item(items: list[Item], text: str) -> Item | None:
    """The item ``text`` names: ``ID`` (its first sample) or ``ID/SAMPLE``; None when none is."""
    qid, _, sample = text.strip().partition("/")
    for it in items:
        if str(it.question_id) == qid.strip() and (not sample.strip() or str(it.sample) == sample.strip()):
            return it
    return None


class InspectorScreen(Screen):
    AUTO_FOCUS = "#items"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "errors", "Errors only", tooltip="only the items that failed with an error (again: all)"),
        Binding("w", "wrong", "Wrong only", tooltip="only the wrong answers (again: all)"),
        Binding("n", "next", "Next", tooltip="the next item"),
        Binding("p", "previous", "Previous", tooltip="the previous item"),
        Binding("g", "goto", "Go to id", show=False, tooltip="jump to an item by its question id (ID, or ID/SAMPLE)"),
    ]
    DEFAULT_CSS = """
    InspectorScreen #ihead { height: auto; padding: 0 1; background: $boost; }
    InspectorScreen Horizontal { height: 1fr; }
    InspectorScreen #items { width: 46%; }
    InspectorScreen #conv { width: 1fr; border-left: solid $primary-darken-2; padding: 0 1; }
    InspectorScreen #goto { margin: 0 1; display: none; }
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
        yield Input(placeholder="item id (ID or ID/SAMPLE), Enter: go, Escape: cancel", id="goto")
        with Horizontal():
            yield ListTable(id="items")
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
        if not any(ch.name == self.run_key and EVALS in ch.what for ch in changes):
            return
        items = self.items
        if not items.update():
            return
        if items.reset or (items.replaced and self.which != ALL):
            self.rebuild()  # a replaced item may enter or leave the filter
            return
        if items.replaced:
            self._redraw_rows(items.replaced)
        self._append([i for i in items.appended if shown_in(i, self.which)])

    # ---------------------------------------------------------------- drawing
    def _row(self, it: Item) -> list:
        res = it.result_text() if it.score is None or not it.ok or it.correct is not None else fmt_fit(it.score, 9)
        return [str(it.question_id), str(it.sample), Text(it.status, style="green" if it.ok else "bold red"),
                Text(res, style="green" if res == "correct" else "red" if res in ("wrong", "error") else ""),
                latency_text(it.latency_s), "-" if it.attempts is None else str(it.attempts)]

    def current(self) -> Item | None:
        if not self.shown:
            return None
        return self.shown[min(max(self.query_one("#items", DataTable).cursor_row, 0), len(self.shown) - 1)]

    def rebuild(self) -> None:
        """Every row again; the cursor stays on the same item while it is listed."""
        table = self.query_one("#items", DataTable)
        row, was = table.cursor_row, self.current()
        table.clear()
        self.shown = self.items.filtered(self.which)
        table.add_rows([self._row(it) for it in self.shown])
        if self.shown:
            keys = [item_key(it) for it in self.shown]
            if was is not None and item_key(was) in keys:
                row = keys.index(item_key(was))
            table.move_cursor(row=min(max(row, 0), len(self.shown) - 1), animate=False)
        self.draw_head()
        self.show_current()

    def _redraw_rows(self, keys: set[tuple[str, int]]) -> None:
        """Rewrite the rows of items replaced in place (all items listed: row i is item i)."""
        table = self.query_one("#items", DataTable)
        for key in keys:
            index = self.items.index_of(key)
            if index is None or index >= len(self.shown):
                continue
            self.shown[index] = self.items.items[index]
            for col, value in enumerate(self._row(self.shown[index])):
                table.update_cell_at(Coordinate(index, col), value)
        self.draw_head()
        cur = self.current()
        if cur is not None and item_key(cur) in keys:
            self.show_current()

    def _append(self, new: list[Item]) -> None:
        table = self.query_one("#items", DataTable)
        first = not self.shown
        self.shown.extend(new)
        table.add_rows([self._row(it) for it in new])
        self.draw_head()
        if first and new:
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
        item = self.current()
        if item is None:
            self.rendered = Text("no item matches" if self.items.items else "no finished item yet", style="dim")
            box.update(self.rendered)
            return
        rec, why = self.items.conversation(item)
        self.rendered = conversation_view(item, rec, why)
        box.update(self.rendered)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_current()

    # ---------------------------------------------------------------- keys
    def action_back(self) -> None:
        box = self.query_one("#goto", Input)
        if box.display:
            box.display = False
            self.query_one("#items").focus()
            return
        self.app.pop_screen()

    def action_goto(self) -> None:
        box = self.query_one("#goto", Input)
        box.value = ""
        box.display = True
        self.set_focus(box)  # now: the keys typed right after g land in it

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one("#items").focus()
        wanted = find_item(self.items.items, event.value)
        if wanted is None:
            self.notify(f"no item {event.value.strip()!r} in this evaluation", severity="warning")
            return
        if item_key(wanted) not in {item_key(it) for it in self.shown}:
            self.which = ALL  # filtered out: show every item
            self.rebuild()
        keys = [item_key(it) for it in self.shown]
        self.query_one("#items", DataTable).move_cursor(row=keys.index(item_key(wanted)), animate=False)
        self.show_current()

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
