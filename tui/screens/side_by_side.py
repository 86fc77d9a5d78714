"""The same item in two evaluations (two runs, or two checkpoints of one run): ``c`` in the
inspector opens :class:`ChooseEvalScreen`, the other evaluations under the roots that hold the item
(found by a thread worker), and Enter opens :class:`SideBySideScreen`, both conversations of the
item in two panes, ``n``/``p`` moving through the items the two evaluations share."""

from __future__ import annotations

import os

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from tui.model.eval_pairs import Other, others_holding, shared_items
from tui.model.evals import EvalItems, Item, item_key
from tui.widgets.conversation import conversation_view
from tui.widgets.list_table import ListTable


class ChooseEvalScreen(ModalScreen):
    """The other evaluations that hold ``item``: Enter opens the two side by side."""

    AUTO_FOCUS = "#others"
    BINDINGS = [Binding("escape", "close", "Cancel", tooltip="back to the inspector")]
    DEFAULT_CSS = """
    ChooseEvalScreen { align: center middle; }
    ChooseEvalScreen > Vertical { width: 90%; max-width: 110; height: auto; max-height: 80%;
        border: thick $accent; background: $surface; padding: 0 1; }
    ChooseEvalScreen #choose-head { padding-bottom: 1; }
    ChooseEvalScreen #others { height: auto; max-height: 20; }
    """

    class Found(Message):
        def __init__(self, others: list[Other]) -> None:
            super().__init__()
            self.others = others

    def __init__(self, items: EvalItems, item: Item, run_dirs: list[str]) -> None:
        super().__init__()
        self.items, self.item, self.run_dirs = items, item, run_dirs
        self.others: list[Other] | None = None  # None: still looking

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="choose-head")
            yield ListTable(id="others")

    def on_mount(self) -> None:
        table = self.query_one("#others", DataTable)
        for label, key, width in (("run", "run", 34), ("evaluation", "eval", 18), ("this item", "result", 10),
                                  ("shared", "shared", 7)):
            table.add_column(label, key=key, width=width)
        self.draw_head()
        self.look(list(self.run_dirs), [item_key(it) for it in self.items.items])

    def draw_head(self) -> None:
        t = Text()
        t.append(f"item {self.item.question_id}/{self.item.sample}", style="bold")
        t.append(f" of {self.items.paths.name}, side by side with: ")
        if self.others is None:
            t.append("looking for the evaluations that hold it…", style="dim")
        elif not self.others:
            t.append("no other evaluation holds it (Escape: back)", style="yellow")
        else:
            t.append(f"{len(self.others)} evaluation(s) hold it; Enter opens one", style="dim")
        self.query_one("#choose-head", Static).update(t)

    @work(thread=True, exclusive=True, group="side-by-side")
    def look(self, run_dirs: list[str], keys: list[tuple[str, int]]) -> None:
        worker = get_current_worker()
        found = others_holding(self.item, str(self.items.paths.root), run_dirs, keys, lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(self.Found(found))

    def on_choose_eval_screen_found(self, message: Found) -> None:
        self.others = message.others
        table = self.query_one("#others", DataTable)
        for o in self.others:
            res = o.item.result_text()
            table.add_row(o.run, o.name, Text(res, style="green" if res == "correct" else
                                              "red" if res in ("wrong", "error") else ""), str(o.shared))
        self.draw_head()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if not self.others:
            return
        other = self.others[event.cursor_row]
        self.dismiss()
        self.app.push_screen(SideBySideScreen(self.items, other.items, item_key(self.item),
                                              os.path.basename(os.path.dirname(os.path.dirname(
                                                  str(self.items.paths.root)))) + " / " + self.items.paths.name,
                                              other.label))

    def action_close(self) -> None:
        self.dismiss()


class SideBySideScreen(Screen):
    """One item of two evaluations, each pane its conversation (the inspector's view of it)."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="back to the inspector"),
        Binding("n", "next", "Next shared", tooltip="the next item that both evaluations hold"),
        Binding("p", "previous", "Previous shared", tooltip="the previous item that both evaluations hold"),
    ]
    DEFAULT_CSS = """
    SideBySideScreen #pair-head { height: auto; padding: 0 1; background: $boost; }
    SideBySideScreen Horizontal { height: 1fr; }
    SideBySideScreen .pane { width: 1fr; }
    SideBySideScreen .pane-title { height: 1; padding: 0 1; background: $primary-darken-2; text-style: bold; }
    SideBySideScreen VerticalScroll { padding: 0 1; }
    SideBySideScreen #pane-b { border-left: solid $primary-darken-2; }
    """

    def __init__(self, a: EvalItems, b: EvalItems, key: tuple[str, int], a_label: str, b_label: str) -> None:
        super().__init__()
        self.a, self.b, self.a_label, self.b_label = a, b, a_label, b_label
        self.shared = shared_items(a.items, b)
        self.at = self.shared.index(key) if key in self.shared else 0
        self.rendered: tuple = ()

    def compose(self) -> ComposeResult:
        yield Static(id="pair-head")
        with Horizontal():
            with Vertical(classes="pane", id="pane-a"):
                yield Static(self.a_label, classes="pane-title")
                with VerticalScroll():
                    yield Static(id="conv-a")
            with Vertical(classes="pane", id="pane-b"):
                yield Static(self.b_label, classes="pane-title")
                with VerticalScroll():
                    yield Static(id="conv-b")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def key(self) -> tuple[str, int] | None:
        return self.shared[self.at] if self.shared else None

    def show(self) -> None:
        key = self.key()
        head = Text()
        if key is None:
            head.append("the two evaluations share no item", style="yellow")
            self.query_one("#pair-head", Static).update(head)
            return
        head.append(f"question {key[0]}  sample {key[1]}", style="bold")
        head.append(f"  ·  shared item {self.at + 1} of {len(self.shared)}  ·  n / p: next / previous")
        self.query_one("#pair-head", Static).update(head)
        views = []
        for items, box in ((self.a, "#conv-a"), (self.b, "#conv-b")):
            item = items.items[items.index_of(key)]
            rec, why = items.conversation(item)
            view = conversation_view(item, rec, why)
            self.query_one(box, Static).update(view)
            views.append(view)
        self.rendered = tuple(views)

    def _move(self, by: int) -> None:
        if self.shared:
            self.at = min(max(self.at + by, 0), len(self.shared) - 1)
            self.show()

    def action_next(self) -> None:
        self._move(1)

    def action_previous(self) -> None:
        self._move(-1)

    def action_back(self) -> None:
        self.app.pop_screen()
