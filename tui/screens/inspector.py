"""Conversation inspector: the items of an evaluation's ``responses.jsonl`` (live, with done/planned
while it runs; the cursor on the last row follows new items), filters to errors (``e``), wrong
answers (``w``) or a score range (``f``), a search of every conversation's text (``/``: a thread
worker, hits stream into the list), the orders of :data:`~tui.model.eval_search.SORTS` (``s``), a
jump to an item by its id (``g``), the same item in another evaluation side by side (``c``), and the
selected item's conversation by role, with the expected answer beside the model's and the error and
traceback of a failed item."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from trainkit.formatting import fmt_fit
from tui.model.eval_search import (
    SORTS,
    WRITTEN,
    RangeError,
    ScoreRange,
    TextCache,
    higher_is_better,
    listed,
    matches,
    parse_query,
    parse_range,
    scan,
)
from tui.model.evals import ALL, ERRORS, RUNNING, WRONG, EvalItems, Item, item_key
from tui.model.runs import EVALS, RunChange
from tui.widgets.conversation import conversation_view
from tui.widgets.list_table import ListTable


def latency_text(seconds: float | None, width: int = 8) -> str:
    """An item's latency in its column, never cut: ``0.243ms``, ``265ms``, ``1.52s``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{fmt_fit(seconds * 1000, width - 2)}ms"
    return f"{fmt_fit(seconds, width - 1)}s"


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
        Binding("escape", "back", "Back", tooltip="clear the search, else back to the run"),
        Binding("e", "errors", "Errors only", tooltip="only the items that failed with an error (again: all)"),
        Binding("w", "wrong", "Wrong only", tooltip="only the wrong answers (again: all)"),
        Binding("n", "next", "Next", tooltip="the next item"),
        Binding("p", "previous", "Previous", tooltip="the previous item"),
        Binding("g", "goto", "Go to id", show=False, tooltip="jump to an item by its question id (ID, or ID/SAMPLE)"),
        Binding("slash", "search", "Search", show=False,
                tooltip="search the conversations (prompt, answer, expected, error) as you type; Escape clears"),
        Binding("s", "sort", "Sort", show=False, tooltip="cycle the order: " + ", ".join(SORTS)),
        Binding("f", "score_range", "Score range", show=False,
                tooltip="only scores in a range: 0.2-0.8, <0.5, >=0.9 (correct is 1, wrong 0; empty: all)"),
        Binding("c", "side_by_side", "Side by side", show=False,
                tooltip="this item beside itself in another evaluation (this run's or another run's)"),
    ]
    DEFAULT_CSS = """
    InspectorScreen #ihead { height: auto; padding: 0 1; background: $boost; }
    InspectorScreen Horizontal { height: 1fr; }
    InspectorScreen #items { width: 46%; }
    InspectorScreen #conv { width: 1fr; border-left: solid $primary-darken-2; padding: 0 1; }
    InspectorScreen #ask { margin: 0 1; display: none; }
    """

    class Found(Message):
        """Hits of a search (posted from its worker): ``checked`` are the items it looked at when
        it searched only some (new or replaced ones), None for the whole search's progress."""

        def __init__(self, generation: int, hits: list[Item], searched: int, total: int,
                     checked: list[Item] | None = None) -> None:
            super().__init__()
            self.generation, self.hits, self.searched, self.total = generation, hits, searched, total
            self.checked = checked

    def __init__(self, eval_dir: str, run_key: str) -> None:
        super().__init__()
        self.batch_s, self.batch_n = 0.05, None  # a search posts its hits this often (or every n items)
        self.debounce_s = 0.12  # typing in the search: it starts once the keys pause this long
        self._search_timer = None
        self.resort_s = 0.5  # in a sorted list, new items (or hits) are put in place at most this often
        self._resort = None
        self.eval_dir = eval_dir
        self.run_key = run_key
        self.items = EvalItems(eval_dir)
        self.which = ALL
        self.order = WRITTEN
        self.range: ScoreRange | None = None
        self.shown: list[Item] = []
        self.state, self.planned = "", None
        self.cache = TextCache(self.items.conversation)
        self.query_text = ""
        self.terms: tuple[str, ...] = ()
        self.hits: set[tuple[str, int]] | None = None  # None: no search
        self.searched = self.search_total = 0
        self.generation = 0
        self._waiting: list[Item] = []  # written or replaced while the whole search runs: searched after it
        self._pending = 0  # items handed to a search of new or replaced items, not yet answered
        self._asking: str | None = None  # what the input line asks for: goto, search, range

    def compose(self) -> ComposeResult:
        yield Static(id="ihead")
        yield Input(id="ask")
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
        self.state, self.planned = self.items.progress()
        self.rebuild()
        table.focus()

    def on_unmount(self) -> None:
        self.app.model.unwatch_extra(str(self.items.paths.responses))

    def runs_changed(self, changes: list[RunChange]) -> None:
        if not any(ch.name == self.run_key and EVALS in ch.what for ch in changes):
            return
        items = self.items
        self.state, self.planned = items.progress()
        if not items.update():
            self.draw_head()
            return
        if self.hits is not None:  # a search: the new and replaced items are searched (after the whole search)
            if items.reset:
                self.start_search()
                return
            fresh = [items.items[i] for k in items.replaced if (i := items.index_of(k)) is not None]
            self._search_some(fresh + list(items.appended))
            if items.replaced:
                self.rebuild()
            return
        if items.reset or (items.replaced and self.filtered()):
            self.rebuild()  # a replaced item may enter or leave the filter, or move in the order
            return
        if items.replaced:
            self._redraw_rows(items.replaced)
        self._add(items.appended)

    # ---------------------------------------------------------------- what is listed
    def filtered(self) -> bool:
        """Whether anything but every item in the written order is listed."""
        return self.which != ALL or self.range is not None or self.hits is not None or self.order != WRITTEN

    def listed(self, items: list[Item]) -> list[Item]:
        return listed(items, which=self.which, score_range=self.range, hits=self.hits, order=self.order,
                      higher_better=higher_is_better(self.items.metric, self.items.items))

    def _add(self, new: list[Item]) -> None:
        """New items (or new hits) of the written order at the end; in another order, in place: at
        once into an empty list, else by one rebuild for all that come within :attr:`resort_s`."""
        if self.order != WRITTEN:
            if self.listed(new):
                if not self.shown:
                    self.rebuild()
                elif self._resort is None:
                    self._resort = self.set_timer(self.resort_s, self._resorted)
            self.draw_head()
            return
        self._append(self.listed(new))

    def _resorted(self) -> None:
        self._resort = None
        self.rebuild()

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
        if self._resort is not None:
            self._resort.stop()
            self._resort = None
        table = self.query_one("#items", DataTable)
        row, was = table.cursor_row, self.current()
        table.clear()
        self.shown = self.listed(self.items.items)
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
        """Rows at the end; a cursor on the last row (of two or more) follows them."""
        table = self.query_one("#items", DataTable)
        first = not self.shown
        following = table.row_count > 1 and table.cursor_row == table.row_count - 1
        self.shown.extend(new)
        table.add_rows([self._row(it) for it in new])
        self.draw_head()
        if new and following:
            table.move_cursor(row=table.row_count - 1, animate=False)
        elif first and new:
            self.show_current()

    def head_text(self) -> Text:
        items = self.items.items
        errors = sum(1 for i in items if not i.ok)
        wrong = sum(1 for i in items if i.wrong)
        t = Text()
        t.append(f"{self.items.paths.name}", style="bold")
        t.append(f"  {len(items)} items, {errors} error(s), {wrong} wrong")
        if self.planned is not None:
            t.append(f"  ·  {'running, ' if self.state == RUNNING else ''}{len(items)}/{self.planned} done",
                     style="bold yellow" if self.state == RUNNING else "")
        t.append(f"  ·  showing: {self.which} ({len(self.shown)})")
        if self.range is not None:
            t.append(f"  ·  score {self.range.text()}", style="cyan")
        if self.order != WRITTEN:
            t.append(f"  ·  sorted: {self.order}", style="cyan")
        if self.hits is not None:
            t.append(f"  ·  search {self.query_text.strip()!r}: ", style="bold")
            t.append(f"{len(self.hits)} hits of {self.searched} searched",
                     style="bold" if self.searched >= self.search_total else "yellow")
            if self.searched < self.search_total:
                t.append(f" (of {self.search_total}…)", style="dim")
        if self.items.bad_lines:
            t.append(f"  ·  ⚠ {self.items.bad_lines} unreadable line(s) skipped", style="yellow")
        return t

    def draw_head(self) -> None:
        self.query_one("#ihead", Static).update(self.head_text())

    def show_current(self) -> None:
        box = self.query_one("#conversation", Static)
        item = self.current()
        if item is None:
            why = "searching…" if self.hits is not None and self.searched < self.search_total else \
                "no item matches" if self.items.items else "no finished item yet"
            self.rendered = Text(why, style="dim")
            box.update(self.rendered)
            return
        rec, why = self.items.conversation(item)
        self.rendered = conversation_view(item, rec, why, self.terms if self.hits is not None else ())
        box.update(self.rendered)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_current()

    # ---------------------------------------------------------------- search
    def start_search(self) -> None:
        """Search every item for :attr:`terms` again, from the first; the hits replace the list as
        they are found."""
        self.generation += 1
        self._waiting, self._pending = [], 0
        if not self.terms:
            self.hits = None
            self.workers.cancel_group(self, "inspector-search")
            self.rebuild()
            return
        items = list(self.items.items)
        self.hits, self.searched, self.search_total = set(), 0, len(items)
        self._search_all(self.generation, items, self.terms)  # first: it starts while the list is redrawn
        self.rebuild()

    @work(thread=True, exclusive=True, group="inspector-search", description="the search of every item")
    def _search_all(self, generation: int, items: list[Item], terms: tuple[str, ...]) -> None:
        worker = get_current_worker()
        for hits, searched in scan(items, terms, self.cache.text, lambda: worker.is_cancelled, every_s=self.batch_s,
                                   every_n=self.batch_n):
            self.post_message(self.Found(generation, hits, searched, len(items)))

    def _search_some(self, items: list[Item]) -> None:
        """Search new or replaced items (after the whole search: until then they wait)."""
        if not items:
            return
        if self.searched < self.search_total:
            self._waiting.extend(items)
            return
        self._pending += len(items)
        self.searched = len(self.items.items) - self._pending
        self.draw_head()
        self._search_these(self.generation, items, self.terms)

    @work(thread=True, group="inspector-search-new", description="the search of new or replaced items")
    def _search_these(self, generation: int, items: list[Item], terms: tuple[str, ...]) -> None:
        hits = [it for it in items if matches(terms, self.cache.text(it))]
        self.post_message(self.Found(generation, hits, len(items), len(items), checked=items))

    def on_inspector_screen_found(self, message: Found) -> None:
        if message.generation != self.generation or self.hits is None:
            return  # an earlier search's
        keys = [item_key(it) for it in message.hits]
        if message.checked is not None:  # new or replaced items, searched after the whole search
            checked = {item_key(it) for it in message.checked}
            listed_before = bool(checked & self.hits)
            self.hits -= checked
            self.hits.update(keys)
            self._pending -= len(message.checked)
            self.search_total = len(self.items.items)
            self.searched = self.search_total - self._pending
            found = sorted(i for k in keys if (i := self.items.index_of(k)) is not None)
            last = self.items.index_of(item_key(self.shown[-1])) if self.shown else None
            if listed_before or (found and last is not None and found[0] <= last):
                self.rebuild()  # a listed item was replaced (its row changes, or it goes), or a hit goes above
            else:  # hits after the last listed item (new ones): added as new items are
                self._add([self.items.items[i] for i in found])
            return
        self.hits.update(keys)
        self.searched = message.searched
        self._add([self.items.items[i] for k in keys if (i := self.items.index_of(k)) is not None])
        if self.searched >= self.search_total:
            if self._resort is not None:
                self.rebuild()  # the last hits in place now
            self.draw_head()
            if not self.shown:
                self.show_current()
            waiting, self._waiting = self._waiting, []
            self._search_some(waiting)

    # ---------------------------------------------------------------- keys
    def _ask(self, what: str, value: str, placeholder: str) -> None:
        """Open the input line and focus it now (``focus()`` would wait a turn of the loop), so
        that the keys typed right after this one land in it."""
        box = self.query_one("#ask", Input)
        self._asking = what
        box.placeholder = placeholder
        box.border_subtitle = ""
        box.value = value
        box.cursor_position = len(value)
        box.display = True
        self.set_focus(box)

    def _close_ask(self) -> None:
        self.query_one("#ask", Input).display = False
        self._asking = None
        self.query_one("#items").focus()

    def action_back(self) -> None:
        asking = self._asking
        if asking is not None:
            self._close_ask()
        if asking == "search" or (asking is None and self.hits is not None):
            if self._search_timer is not None:
                self._search_timer.stop()
                self._search_timer = None
            self.query_text, self.terms = "", ()
            self.start_search()  # no terms: the search is cleared
            return
        if asking is None:
            self.app.pop_screen()

    def action_goto(self) -> None:
        self._ask("goto", "", "item id (ID or ID/SAMPLE), Enter: go, Escape: cancel")

    def action_search(self) -> None:
        self._ask("search", self.query_text, "search the conversations: words, or \"a phrase\" "
                                             "(Enter: keep, Escape: clear)")

    def action_score_range(self) -> None:
        self._ask("range", self.range.text().replace(" ", "") if self.range else "",
                  "score range: 0.2-0.8, <0.5, >=0.9 (a correct answer is 1, a wrong one 0); empty: all")

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._asking != "search":
            return
        self.query_text = event.value
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(self.debounce_s, self._typed)

    def _typed(self) -> None:
        """The query as typed so far: searched, unless its terms are those searched already."""
        self._search_timer = None
        terms = parse_query(self.query_text)
        if terms != self.terms or (terms and self.hits is None):
            self.terms = terms
            self.start_search()
        else:
            self.draw_head()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        asking = self._asking
        if asking == "range":
            try:
                self.range = parse_range(event.value)
            except RangeError as e:
                event.input.border_subtitle = str(e)
                return
            self._close_ask()
            self.rebuild()
            return
        self._close_ask()
        if asking == "goto":
            self._go_to(event.value)
        elif asking == "search" and self._search_timer is not None:  # Enter before the pause: now
            self._search_timer.stop()
            self._typed()

    def _go_to(self, text: str) -> None:
        wanted = find_item(self.items.items, text)
        if wanted is None:
            self.notify(f"no item {text.strip()!r} in this evaluation", severity="warning")
            return
        if item_key(wanted) not in {item_key(it) for it in self.shown}:
            self.which, self.range = ALL, None  # filtered out: show every item
            if self.hits is not None:
                self.query_text, self.terms = "", ()
                self.start_search()
            else:
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

    def action_sort(self) -> None:
        self.order = SORTS[(SORTS.index(self.order) + 1) % len(SORTS)]
        self.rebuild()
        self.notify(f"sorted: {self.order}", timeout=1.5)

    def action_next(self) -> None:
        self.query_one("#items", DataTable).action_cursor_down()

    def action_previous(self) -> None:
        self.query_one("#items", DataTable).action_cursor_up()

    def action_side_by_side(self) -> None:
        from tui.screens.side_by_side import ChooseEvalScreen

        item = self.current()
        if item is None:
            self.notify("no item to compare", severity="warning")
            return
        self.app.push_screen(ChooseEvalScreen(self.items, item, [v.path for v in self.app.model.runs.values()]))
