"""A row-cursor table whose Home and End go to the first and last row (DataTable's own Home/End
scroll sideways, which a list of rows never needs); every list of trainmon is one."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class ListTable(DataTable):
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(cursor_type="row", name=name, id=id, classes=classes, disabled=disabled)
