"""The runs table: one row per run; a one-run update repaints only that run's row.

A :class:`~textual.widgets.DataTable` with fixed-width columns chosen to fit the width, the name
first (:mod:`tui.widgets.run_row`). :meth:`RunsTable.show` rebuilds the rows (filter, sort, group
changed); :meth:`RunsTable.update_run` rewrites one row's cells in place and refreshes that row's
region only (``DataTable.update_cell`` would repaint the whole widget). A group's header row spans
the table (``▼ model.width = 256``).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist, RowKey

from tui.model.views import RunView
from tui.widgets.list_table import ListTable
from tui.widgets.run_row import Layout, cells, choose_columns, shared_prefix

GROUP = "\0group:"  # the row key prefix of a group's header row


class RunsTable(ListTable):
    """The workspace's table of runs (row keys are the runs' folder paths)."""

    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("enter", "open_run", "Open", tooltip="open the run's detail"),
    ]

    def __init__(self, *, clock: Callable[[], float], name: str | None = None, id: str | None = None,
                 classes: str | None = None, disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.clock = clock
        self.marked: set[str] = set()  # the runs marked with space (folder paths), set by the screen
        self._views: list[RunView] = []
        self._groups: dict[str, str] = {}  # header row key -> its label
        self._layout = Layout([], {})
        self._width = 0
        self._group_label: Callable[[RunView], str] | None = None

    def show(self, views: list[RunView], group_label: Callable[[RunView], str] | None = None) -> None:
        """Rebuild every row (keeps the cursor on the same run when it is still shown)."""
        current = self.current_key()
        self._views = views
        self._group_label = group_label
        self._build()
        if current is not None:
            self.select_key(current)

    def _build(self) -> None:
        width = self.size.width or self.app.size.width
        self._width = width
        views = self._views
        longest = max((len(v.name) for v in views), default=0)
        cols, widths = choose_columns(width, longest)
        prefix = 0
        if longest + 1 > widths["name"]:  # the names do not fit: without the prefix they all share
            prefix = shared_prefix([v.name for v in views])
            if prefix:
                cols, widths = choose_columns(width, longest - prefix + 1)
        self._layout = Layout(cols, widths, prefix, mono=self.app.no_color)
        self.clear(columns=True)
        for c in cols:
            self.add_column(c.label, key=c.key, width=widths[c.key])
        now = self.clock()
        self._groups = {}
        last_group, layout, marked, group_label = None, self._layout, self.marked, self._group_label
        blank = [Text("")] * len(cols)
        for v in views:
            if group_label is not None:
                g = group_label(v)
                if g != last_group:
                    last_group = g
                    self._groups[GROUP + g] = f"▼ {g}"
                    self.add_row(*blank, key=GROUP + g)
            self.add_row(*cells(v, layout, now, v.path in marked), key=v.path)

    def _update_dimensions(self, new_rows) -> None:
        """Every column has a fixed width and every row is one line, so no cell is measured (the
        base class measures each new cell: 10,000 runs took seconds). Textual is pinned exactly."""
        width = sum(c.get_render_width(self) for c in self.columns.values()) + self._row_label_column_width
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self._total_row_height + header)

    def _render_line_in_row(self, row_key, line_no, base_style, cursor_location, hover_location):
        """A group's header row is one text across the whole row (a cell would cut its value)."""
        fixed, scrollable = super()._render_line_in_row(row_key, line_no, base_style, cursor_location,
                                                        hover_location)
        label = self._groups.get(row_key.value) if row_key.value else None
        if label is None:
            return fixed, scrollable
        segments = [seg for cell in scrollable for seg in cell]
        total = sum(len(seg.text) for seg in segments)
        style = (segments[0].style or Style()) + Style(bold=True, underline=True) if segments else Style(bold=True)
        text = f" {label}"
        text = text[:total] if len(text) > total else text
        return fixed, [[Segment(text, style), Segment(" " * (total - len(text)), segments[0].style if segments
                                                      else None)]]

    def on_resize(self) -> None:
        if self.size.width != self._width and self._views is not None:
            current = self.current_key()
            self._build()
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
        new = list(zip(self._layout.cols, cells(view, self._layout, self.clock(), view.path in self.marked),
                       strict=True))
        if any(row.get(c.key) != value for c, value in new):  # else (an idle run's heartbeat): no repaint
            for c, value in new:
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

    def action_open_run(self) -> None:
        """Open the run's detail now (a key typed right after goes to the detail, or nowhere)."""
        open_run = getattr(self.screen, "action_open", None)
        if open_run is not None:
            open_run()

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None
        return None if key is None or key.startswith(GROUP) else key

    def select_key(self, key: str) -> bool:
        try:
            index = self.get_row_index(RowKey(key))
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index, animate=False)
        return True

    def visible_views(self) -> list[RunView]:
        return list(self._views)
