"""The runs table: one row per run; a one-run update repaints only that run's row.

A :class:`~textual.widgets.DataTable` with fixed-width columns chosen by priority to fit the
width (80 columns upward). :meth:`RunsTable.show` rebuilds the rows (filter, sort, group changed);
:meth:`RunsTable.update_run` rewrites one row's cells in place and refreshes that row's region only
(``DataTable.update_cell`` would repaint the whole widget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist, RowKey

from trainkit.formatting import fmt_duration, fmt_sig
from trainkit.runfolder import style_of
from tui.model.views import RunView
from tui.widgets.glyphs import bar, sparkline


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int
    priority: int  # lower drops first when the width is short


COLUMNS = (
    Col("mark", " ", 1, 100),
    Col("name", "RUN", 0, 99),  # width 0: takes what is left
    Col("state", "STATE", 12, 98),
    Col("progress", "PROGRESS", 24, 97),
    Col("spark", "LOSS TREND", 16, 60),
    Col("loss", "LOSS", 8, 90),
    Col("best", "BEST", 16, 50),
    Col("thr", "THRPT", 7, 30),
    Col("eta", "ETA", 7, 70),
    Col("hb", "BEAT", 6, 40),
    Col("warn", "⚠", 1, 95),
)
NAME_MIN, NAME_MAX = 14, 40


def choose_columns(width: int) -> tuple[list[Col], int]:
    """The columns that fit ``width`` (each takes 2 cells of padding) and the name column's width."""
    cols = list(COLUMNS)
    while True:
        fixed = sum(c.width + 2 for c in cols if c.key != "name") + 2
        name_w = width - fixed - 2
        if name_w >= NAME_MIN or len(cols) <= 4:
            return cols, max(NAME_MIN, min(NAME_MAX, name_w))
        cols.remove(min((c for c in cols), key=lambda c: c.priority))


class Cell:
    """One cell's text, made into Rich text only when its row is drawn: a table of 10,000 runs
    builds 100,000 cells, of which a screen shows a few hundred (``Text`` objects for all of them
    took most of the first paint). ``tail`` follows ``text`` unstyled."""

    __slots__ = ("text", "style", "justify", "tail")

    def __init__(self, text: str, style: str = "", justify: str | None = None, tail: str = "") -> None:
        self.text, self.style, self.justify, self.tail = text, style, justify, tail

    def body(self) -> str:
        """The styled part of the cell's text."""
        return self.text

    @property
    def plain(self) -> str:
        return self.body() + self.tail

    def __str__(self) -> str:
        return self.plain

    def __rich__(self) -> Text:
        t = Text(self.body(), style=self.style, justify=self.justify)
        if self.tail:
            t.append(self.tail)
        return t


class SparkCell(Cell):
    """A sparkline drawn when its row is drawn, from the values it was given."""

    __slots__ = ("values", "width")

    def __init__(self, values: tuple[float, ...], width: int, style: str) -> None:
        super().__init__("", style)
        self.values, self.width = values, width

    def body(self) -> str:
        return sparkline(self.values, self.width)


def cells(view: RunView, cols: list[Col], name_w: int, now: float, marked: bool) -> list[Cell]:
    """The cells of one run's row (readable without colour)."""
    out = []
    for c in cols:
        k = c.key
        if k == "mark":
            out.append(Cell("•" if marked else " ", "bold yellow"))
        elif k == "name":
            name = view.name if len(view.name) <= name_w else view.name[:name_w - 1] + "…"
            out.append(Cell(name, "dim" if view.archived else ""))
        elif k == "state":
            out.append(Cell(f"{view.symbol} {view.label}", style_of(view.state)))
        elif k == "progress":
            label = f" {view.epochs_text()} {view.percent_text()}"
            width = max(4, c.width - len(label))
            out.append(Cell(bar(view.fraction, width), "green" if view.live else "cyan" if view.complete else "dim",
                            tail=label))
        elif k == "spark":
            out.append(SparkCell(tuple(view.losses), c.width, "#5fafff"))
        elif k == "loss":
            out.append(Cell(fmt_sig(view.last_loss), justify="right"))
        elif k == "best":
            if view.best_value is None:
                out.append(Cell("-"))
            else:
                label = f"{view.best_metric or 'best'} {fmt_sig(view.best_value)}"
                out.append(Cell(label[:c.width]))
        elif k == "thr":
            out.append(Cell(view.throughput_text()[:c.width], justify="right"))
        elif k == "eta":
            out.append(Cell(fmt_duration(view.eta_s) if view.state == "running" else "-", justify="right"))
        elif k == "hb":
            out.append(Cell(view.age_text(now), justify="right"))
        elif k == "warn":
            out.append(Cell("⚠" if view.warned else " ", "bold yellow"))
    return out


class RunsTable(DataTable):
    """The workspace's table of runs (row keys are the runs' folder paths)."""

    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    """

    def __init__(self, *, clock: Callable[[], float], name: str | None = None, id: str | None = None,
                 classes: str | None = None, disabled: bool = False) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, name=name, id=id, classes=classes,
                         disabled=disabled)
        self.clock = clock
        self.marked: set[str] = set()  # the runs marked with space (folder paths), set by the screen
        self._views: list[RunView] = []
        self._groups: dict[int, str] = {}
        self._cols: list[Col] = []
        self._name_w = NAME_MIN
        self._width = 0

    def show(self, views: list[RunView], group_label: Callable[[RunView], str] | None = None) -> None:
        """Rebuild every row (keeps the cursor on the same run when it is still shown)."""
        current = self.current_key()
        self._views = views
        self._build(group_label)
        if current is not None:
            self.select_key(current)

    def _build(self, group_label=None) -> None:
        width = self.size.width or self.app.size.width
        self._width = width
        self._cols, self._name_w = choose_columns(width)
        self.clear(columns=True)
        for c in self._cols:
            self.add_column(c.label, key=c.key, width=self._name_w if c.key == "name" else c.width)
        now = self.clock()
        rows, last_group = [], None
        for v in self._views:
            if group_label is not None:
                g = group_label(v)
                if g != last_group:
                    last_group = g
                    header = [Text("")] * len(self._cols)
                    header[1] = Text(f"▼ {g}", style="bold underline")
                    rows.append((header, f"\0group:{g}"))
            rows.append((cells(v, self._cols, self._name_w, now, v.path in self.marked), v.path))
        for row, key in rows:
            self.add_row(*row, key=key)
        self._group_label = group_label

    def _update_dimensions(self, new_rows) -> None:
        """Every column has a fixed width and every row is one line, so no cell is measured (the
        base class measures each new cell: 10,000 runs took seconds). Textual is pinned exactly."""
        width = sum(c.get_render_width(self) for c in self.columns.values()) + self._row_label_column_width
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self._total_row_height + header)

    def on_resize(self) -> None:
        if self.size.width != self._width and self._views is not None:
            current = self.current_key()
            self._build(getattr(self, "_group_label", None))
            if current:
                self.select_key(current)

    def update_run(self, view: RunView) -> bool:
        """Rewrite one run's row in place; repaint only that row. False when it is not shown."""
        key = RowKey(view.path)
        try:
            index = self.get_row_index(key)
        except RowDoesNotExist:
            return False
        row = self._data[key]
        for c, value in zip(self._cols, cells(view, self._cols, self._name_w, self.clock(), view.path in self.marked),
                            strict=True):
            row[c.key] = value
        self._update_count += 1  # the row render cache is keyed on it
        self.refresh_row(index)
        if self.cursor_row == index:
            self._tooltip_for(view.path)
        return True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._tooltip_for(event.row_key.value)

    def _tooltip_for(self, key: str | None) -> None:
        """The warning mark's meaning (the monitor's latest alert, the warnings) as the tooltip."""
        view = next((v for v in self._views if v.path == key), None) if key else None
        problems = view.problems() if view is not None else []
        self.tooltip = "\n".join(problems) if problems else None

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None
        return None if key is None or key.startswith("\0group:") else key

    def select_key(self, key: str) -> bool:
        try:
            index = self.get_row_index(RowKey(key))
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index, animate=False)
        return True

    def visible_views(self) -> list[RunView]:
        return list(self._views)
